#!/usr/bin/env python3
"""Benchmark: the acquire+release cycle over TLS against plain TCP (a benchmark, not a test).

One throwaway redis-server listens on a plain port and a TLS port (certificates
made here with the openssl command line); the same cycle
(``node.start(); node.wait_for_leadership(); node.stop()``) runs over
``redis://`` and ``rediss://`` in alternating rounds of the same run, and the
median ratio TLS/plain is printed.  The connection is set up once per node
(the engine keeps it), so the ratio is the cost of TLS records per round
trip, not of handshakes; ``--handshake`` also times first connections.

Usage:  python bench/bench_tls.py [--cycles N] [--rounds R] [--handshake N]
"""
import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_certs(d):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=bench-ca",
            "-keyout", "ca.key", "-out", "ca.crt", cwd=d)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
            "-keyout", "server.key", "-out", "server.csr", cwd=d)
    with open(os.path.join(d, "san.ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.crt", cwd=d)


class Server:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="redlease-bench-tls-")
        self.proc = None

    def start(self):
        make_certs(self.dir)
        self.port, self.tls_port = free_port(), free_port()
        self.proc = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--port", str(self.port),
             "--tls-port", str(self.tls_port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir,
             "--tls-cert-file", os.path.join(self.dir, "server.crt"),
             "--tls-key-file", os.path.join(self.dir, "server.key"),
             "--tls-ca-cert-file", os.path.join(self.dir, "ca.crt"),
             "--tls-auth-clients", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"*1\r\n$4\r\nPING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                time.sleep(0.02)
        else:
            raise SystemExit("redis-server did not start")
        # an old marker, so grants do not wait a ttl (see DESIGN.md, data loss)
        with socket.create_connection(("127.0.0.1", self.port)) as s:
            s.sendall(b"*1\r\n$4\r\nINFO\r\n")
            data = b""
            while b"run_id:" not in data or not data.split(b"run_id:", 1)[1].count(b"\r\n"):
                data += s.recv(65536)
            run_id = data.split(b"run_id:", 1)[1].split(b"\r\n", 1)[0]
            val = b"0:" + run_id
            s.sendall(b"*3\r\n$3\r\nSET\r\n$15\r\nredlease:marker\r\n$%d\r\n%s\r\n" % (len(val), val))
            s.recv(16)
        return self

    def stop(self):
        if self.proc:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def cycle_round(redlease, url, key, cycles, warmup):
    node = redlease.DistributionNode(url, key, ttl=10.0)
    times = []
    try:
        for i in range(cycles + warmup):
            t0 = time.perf_counter()
            node.start()
            if not node.wait_for_leadership(timeout=10):
                raise SystemExit(f"no leadership over {url}: {node.last_error}")
            node.stop()
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    finally:
        node.stop()
    return statistics.median(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cycles", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=30)
    a = ap.parse_args(argv)
    import redlease
    srv = Server().start()
    ca = os.path.join(srv.dir, "ca.crt")
    plain = f"redis://127.0.0.1:{srv.port}/0"
    tls = f"rediss://localhost:{srv.tls_port}/0?ssl_ca_certs={ca}"
    try:
        ratios, p_med, t_med = [], [], []
        for r in range(a.rounds):
            p = cycle_round(redlease, plain, "bench:tls:p", a.cycles, a.warmup)
            t = cycle_round(redlease, tls, "bench:tls:t", a.cycles, a.warmup)
            ratios.append(t / p)
            p_med.append(p)
            t_med.append(t)
            print(f"round {r + 1}: plain {p * 1e6:.0f} us, TLS {t * 1e6:.0f} us, ratio {t / p:.3f}")
        print(f"acquire+release cycle: plain {statistics.median(p_med) * 1e6:.0f} us, "
              f"TLS {statistics.median(t_med) * 1e6:.0f} us; median ratio TLS/plain "
              f"{statistics.median(ratios):.3f} ({a.rounds} rounds x {a.cycles} cycles)")
    finally:
        srv.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
