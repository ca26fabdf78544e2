#!/usr/bin/env python3
"""What min_replicas (Redis WAIT after each acquire and renew) costs (a
benchmark, not a test).

Starts a throwaway master and one replica (``--replicaof``) on free
loopback ports and measures, in the same run with rounds interleaved so
that both see the same machine drift:

(a) acquire+release cycle of a DistributionNode (``start();
    wait_for_leadership(); stop()``, one node reused) with ``min_replicas=1``
    against ``min_replicas=0``;
(b) renew round trip (send of the renew script to its counted reply, the
    node's own ``stats()["renew_rtt_p50_ms"]``) of a leading node with
    ``min_replicas=1`` against ``min_replicas=0``.

Prints the medians and the ratios synced / plain.  Only ratios of one run
mean anything on a shared machine.

Usage:  python bench/bench_min_replicas.py [--cycles N] [--rounds R] [--renew-seconds S]
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


def command(port, *args, timeout=2.0):
    """One RESP command on a fresh connection; returns the raw reply text."""
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a.encode() if isinstance(a, str) else a
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(out)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            if data[:1] in b"+-:" and data.endswith(b"\r\n"):
                break
            if data[:1] == b"$":
                head, _, rest = data.partition(b"\r\n")
                n = int(head[1:])
                if n < 0 or len(rest) >= n + 2:
                    break
    return data.decode(errors="replace")


class Server:
    def __init__(self, extra=()):
        self.dir = tempfile.mkdtemp(prefix="redlease-bench-mr-")
        self.port = free_port()
        exe = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir, "--logfile", os.path.join(self.dir, "log"),
             *extra], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        end = time.monotonic() + 10
        while time.monotonic() < end:
            try:
                if command(self.port, "PING").startswith("+PONG"):
                    return
            except OSError:
                pass
            time.sleep(0.02)
        self.close()
        raise RuntimeError("redis-server did not start")

    def info(self, field):
        for line in command(self.port, "INFO", "replication").splitlines():
            if line.startswith(field + ":"):
                return line.split(":", 1)[1].strip()
        return None

    def close(self):
        if self.proc:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)


def cycles(node, n):
    t0 = time.perf_counter()
    for _ in range(n):
        node.start()
        if not node.wait_for_leadership(timeout=5.0):
            raise RuntimeError("no leadership: %s" % node.last_error)
        node.stop()
    return (time.perf_counter() - t0) / n * 1e6


def renew_p50(node, seconds):
    node.start()
    try:
        if not node.wait_for_leadership(timeout=5.0):
            raise RuntimeError("no leadership: %s" % node.last_error)
        before = node.stats()["renewals"]
        time.sleep(seconds)
        st = node.stats()
        if st["renewals"] - before < 5 or st["losses"]:
            raise RuntimeError("renewals failing: %s %s" % (st, node.last_error))
        return st["renew_rtt_p50_ms"] * 1000.0
    finally:
        node.stop()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cycles", type=int, default=300, help="cycles per round (300)")
    ap.add_argument("--rounds", type=int, default=5, help="rounds; medians reported (5)")
    ap.add_argument("--renew-seconds", type=float, default=1.5,
                    help="seconds of renewals (every 30 ms) per round (1.5)")
    args = ap.parse_args(argv)
    import redlease

    master = Server()
    replica = None
    try:
        run_id = [line.split(":", 1)[1].strip() for line in
                  command(master.port, "INFO", "server").splitlines() if line.startswith("run_id:")][0]
        command(master.port, "SET", "redlease:marker", "0:" + run_id)   # a database in service
        replica = Server(["--replicaof", "127.0.0.1", str(master.port)])
        end = time.monotonic() + 20
        while replica.info("master_link_status") != "up" and time.monotonic() < end:
            time.sleep(0.05)
        if replica.info("master_link_status") != "up":
            raise RuntimeError("the replica did not sync")
        url = "redis://127.0.0.1:%d/0" % master.port
        print("redlease %s, master %s, one replica, python %s"
              % (redlease.__version__, url, sys.version.split()[0]))
        pid = os.getpid()
        plain = redlease.DistributionNode(url, "bench:mr0:%d" % pid, ttl=10.0)
        synced = redlease.DistributionNode(url, "bench:mr1:%d" % pid, ttl=10.0, min_replicas=1)
        # renew every 30 ms: ttl 0.3 s, WAIT timeout min(0.5, 0.047) s
        rplain = redlease.DistributionNode(url, "bench:mr0r:%d" % pid, ttl=0.3, renew_interval=0.03)
        rsynced = redlease.DistributionNode(url, "bench:mr1r:%d" % pid, ttl=0.3, renew_interval=0.03,
                                            min_replicas=1)
        cycles(plain, 20)
        cycles(synced, 20)
        c0, c1, r0, r1 = [], [], [], []
        for r in range(args.rounds):
            c0.append(cycles(plain, args.cycles))
            c1.append(cycles(synced, args.cycles))
            r0.append(renew_p50(rplain, args.renew_seconds))
            r1.append(renew_p50(rsynced, args.renew_seconds))
            print("round %d/%d: cycle %.1f / %.1f us, renew p50 %.1f / %.1f us (min_replicas 0 / 1)"
                  % (r + 1, args.rounds, c0[-1], c1[-1], r0[-1], r1[-1]))
        m = [statistics.median(x) for x in (c0, c1, r0, r1)]
        print()
        print("| measurement | min_replicas=0 | min_replicas=1 (one replica) | ratio |")
        print("| --- | ---: | ---: | ---: |")
        print("| acquire+release cycle (start/wait/stop) | %.1f us | %.1f us | %.2f |"
              % (m[0], m[1], m[1] / m[0]))
        print("| renew round trip, p50 | %.1f us | %.1f us | %.2f |" % (m[2], m[3], m[3] / m[2]))
        print("medians of %d rounds; ratio of the per-round medians: cycle %.2f, renew %.2f"
              % (args.rounds, statistics.median(b / a for a, b in zip(c0, c1)),
                 statistics.median(b / a for a, b in zip(r0, r1))))
    finally:
        if replica:
            replica.close()
        master.close()


if __name__ == "__main__":
    main()
