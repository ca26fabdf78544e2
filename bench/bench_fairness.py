"""Fairness of redlease.Lock: 6 threads, each with its own Lock on one key,
then 6 processes, each with one Lock on another key, for 5 s each, in one
run.  Prints the acquisitions per worker (min / max / all).

    python bench/bench_fairness.py [--url redis://127.0.0.1:6379/0]
                                   [--workers 6] [--seconds 5] [--ttl 5] [--hold 0.01]

Without --url a throw-away redis-server is started on a free port (needs
redis-server on PATH).
"""
import argparse
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

import redlease


def _loop(url, key, ttl, until, hold):
    lock = redlease.Lock(url, key, ttl=ttl)
    n = 0
    while time.time() < until:
        if lock.acquire(timeout=max(0.05, until - time.time())):
            n += 1
            if hold:
                time.sleep(hold)
            lock.release()
    return n


def run_threads(url, key, workers, seconds, ttl, hold):
    counts = [0] * workers
    until = time.time() + 0.5 + seconds

    def work(i):
        counts[i] = _loop(url, key, ttl, until, hold)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return counts


def _proc_main(args):
    url, key, ttl, until, hold = args
    return _loop(url, key, ttl, until, hold)


def run_processes(url, key, workers, seconds, ttl, hold):
    until = time.time() + 1.5 + seconds   # start-up of the children
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers) as pool:
        return pool.map(_proc_main, [(url, key, ttl, until, hold)] * workers)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server():
    exe = shutil.which("redis-server")
    if not exe:
        sys.exit("redis-server not found: pass --url")
    port = _free_port()
    d = tempfile.mkdtemp(prefix="redlease-fair-")
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", d],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), 0.1).close()
            break
        except OSError:
            time.sleep(0.02)
    return proc, "redis://127.0.0.1:%d/0" % port


def _line(name, counts):
    return "%-28s min %6d  max %6d  total %7d  per worker %s" % (
        name, min(counts), max(counts), sum(counts), counts)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url")
    ap.add_argument("--workers", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--ttl", type=float, default=5.0)
    ap.add_argument("--hold", type=float, default=0.01,
                    help="seconds to hold each acquisition (a short critical section)")
    a = ap.parse_args()
    server = None
    url = a.url
    if not url:
        server, url = _start_server()
    try:
        tag = "%d-%d" % (os.getpid(), int(time.time()))
        th = run_threads(url, "bench-fair-threads-" + tag, a.workers, a.seconds, a.ttl, a.hold)
        pr = run_processes(url, "bench-fair-procs-" + tag, a.workers, a.seconds, a.ttl, a.hold)
        print("redlease %s, %d workers x %.1f s, ttl %.1f, hold %.3f s"
              % (redlease.__version__, a.workers, a.seconds, a.ttl, a.hold))
        print(_line("%d threads x own Lock" % a.workers, th))
        print(_line("%d processes x one Lock" % a.workers, pr))
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    main()
