#!/usr/bin/env python3
"""A worker process of bench/bench_peers.py.

Reads one JSON command per line on stdin and answers with one JSON line per
reply on stdout (``acquire_async`` answers twice: when it starts waiting and
when it holds the lock).  Times are ``time.monotonic()``, which is
CLOCK_MONOTONIC and so comparable between processes on the same Linux host.

The worker dies with its parent (PR_SET_PDEATHSIG), so a killed bench never
leaves lock holders behind.
"""
import ctypes
import gc
import json
import math
import os
import re
import resource
import select
import signal
import sys
import threading
import time
import timeit
import traceback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from peers import impls  # noqa: E402


def die_with_parent(parent_pid):
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)          # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:                       # parent already gone
        os._exit(1)


def proc_status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def rss_bytes():
    return proc_status("VmRSS") * 1024


def os_threads():
    return proc_status("Threads")


class Worker:
    def __init__(self):
        self.lock = None        # the lock of the lock-agent ops
        self.micro = {}         # impl -> adapter, for "cycles"/"reads"
        self.many = []          # P6
        self.out = sys.stdout

    def reply(self, **kw):
        self.out.write(json.dumps(kw) + "\n")
        self.out.flush()

    # ------------------------------------------------------- lock agent
    def op_init_lock(self, impl, url, key, ttl=10.0, auto_renew=False):
        self.lock = impls.make(impl, url, key, ttl=ttl, auto_renew=auto_renew)
        self.reply(ok=True, pid=os.getpid())

    def op_acquire(self, blocking=True):
        t0 = time.monotonic()
        ok = self.lock.acquire(blocking)
        self.reply(ok=bool(ok), t_call=t0, t_got=time.monotonic())

    def op_acquire_async(self):
        # First reply: about to block.  Second: holding it (or failed).
        self.reply(going=time.monotonic())
        ok = self.lock.acquire(True)
        t_got = time.monotonic()
        self.reply(ok=bool(ok), t_got=t_got)

    def op_release(self):
        t0 = time.monotonic()
        err = None
        try:
            self.lock.release()
        except Exception as exc:        # lost lease: the libraries raise here
            err = "%s: %s" % (type(exc).__name__, exc)
        self.reply(t_rel=t0, t_done=time.monotonic(), error=err)

    def op_owned(self):
        self.reply(owned=bool(self.lock.owned()))

    def op_calibrate(self, seconds):
        """N for which the hog regex takes about `seconds` in this process
        (each extra 'a' doubles the time): time it at growing N until one
        run takes >= 0.1 s, then extrapolate; best of two at that N."""
        n = 12
        while True:
            ts = []
            for _ in range(2 if n > 16 else 1):
                t0 = time.perf_counter()
                re.match(r"(a+)+$", "a" * n + "b")
                ts.append(time.perf_counter() - t0)
            t = min(ts)
            if t >= 0.1 or n >= 40:
                break
            n += 1
        self.reply(n=n + max(0, round(math.log2(seconds / t))), n_cal=n, t_cal=t)

    def op_hog(self, n):
        """Hold the GIL for a while: a backtracking regex is one C call that
        never releases it (CPython's re module does not)."""
        owned_before = bool(self.lock.owned())
        self.reply(going=time.monotonic())
        t0 = time.monotonic()
        re.match(r"(a+)+$", "a" * n + "b")
        t1 = time.monotonic()
        self.reply(t0=t0, t1=t1, owned_before=owned_before, owned_after=bool(self.lock.owned()))

    @staticmethod
    def stop_requested():
        """A "stop" line waiting on stdin ends a running op_thief."""
        r, _, _ = select.select([sys.stdin], [], [], 0)
        if r:
            sys.stdin.readline()
            return True
        return False

    def op_thief(self, duration, interval=0.05):
        """Non-blocking attempts every `interval` s until a "stop" line comes
        (or `duration` s pass).  After the first success it keeps the lock
        (that is the theft) and only waits for "stop"."""
        start = time.monotonic()
        end = start + duration
        attempts, stolen_at = 0, None
        self.reply(going=start)
        nxt = start
        while True:
            now = time.monotonic()
            if now >= end or self.stop_requested():
                break
            if now < nxt:
                time.sleep(nxt - now)
            nxt += interval
            if stolen_at is not None:
                continue               # keep it; wait for "stop"
            attempts += 1
            if self.lock.acquire(False):
                stolen_at = time.monotonic()
        self.reply(thefts=0 if stolen_at is None else 1, t_stolen=stolen_at, attempts=attempts)

    # --------------------------------------------------- P1 / P2 micro
    def _micro(self, impl, url, prefix):
        if impl not in self.micro:
            self.micro[impl] = impls.make(impl, url, "%s:%s" % (prefix, impl), ttl=10.0,
                                          auto_renew=False)
        return self.micro[impl]

    def op_cycles(self, impl, url, n, warmup=20, prefix="p1"):
        lk = self._micro(impl, url, prefix)
        acq, rel = lk.lock.acquire, lk.lock.release
        for _ in range(warmup):
            acq()
            rel()
        gc.collect()
        refused = 0
        t0 = time.perf_counter()
        for _ in range(n):
            if not acq():
                refused += 1
            rel()
        t1 = time.perf_counter()
        self.reply(us=(t1 - t0) / n * 1e6, refused=refused)

    def op_reads(self, url, n_fast, n_slow, repeat=5):
        rl = impls.make("redlease", url, "p2:redlease", ttl=10.0, auto_renew=True)
        py = impls.make("redispy", url, "p2:redispy", ttl=30.0)
        rl.acquire()
        py.acquire()
        try:
            lock, pylock = rl.lock, py.lock
            def best(stmt, glb, number):
                t = timeit.Timer(stmt, globals=glb)
                return min(t.repeat(repeat=repeat, number=number)) / number * 1e9
            res = dict(
                empty_ns=best("pass", {}, n_fast),
                redlease_ns=best("lock.owned", {"lock": lock}, n_fast),
                redlease_value=bool(lock.owned),
                redispy_ns=best("lock.owned()", {"lock": pylock}, n_slow),
                redispy_value=bool(pylock.owned()),
            )
        finally:
            rl.release()
            py.release()
        self.reply(**res)

    # ------------------------------------------------------------ P6
    def op_many(self, impl, url, count, ttl=10.0):
        # Warm up first so the baseline already has the library's fixed
        # costs (engine thread, connections, imported modules).
        warm = impls.make(impl, url, "p6:%s:warm" % impl, ttl=ttl, auto_renew=True)
        warm.acquire()
        warm.release()
        del warm
        gc.collect()
        time.sleep(0.2)
        rss0, thr0_py, thr0_os = rss_bytes(), threading.active_count(), os_threads()
        # One client for all the locks; a blocking pool so that renewal
        # threads queue for a connection rather than fail.
        client = impls.redis_client(url, blocking_pool=50) if impl != "redlease" else None
        t0 = time.monotonic()
        for i in range(count):
            lk = impls.make(impl, url, "p6:%s:%d" % (impl, i), ttl=ttl, auto_renew=True,
                            client=client)
            if not lk.acquire(False):
                raise RuntimeError("lock %d was refused" % i)
            self.many.append(lk)
        t1 = time.monotonic()
        time.sleep(0.5)
        gc.collect()
        info = dict(rss0=rss0, rss1=rss_bytes(), threads_py0=thr0_py, threads_os0=thr0_os,
                    threads_py=threading.active_count(), threads_os=os_threads(),
                    acquire_s=t1 - t0, count=count)
        if impl == "redlease":
            import redlease
            info["engine"] = redlease.engine_stats()
        self.reply(**info)

    def op_idle_cpu(self, seconds):
        """CPU used by the process while the main thread only sleeps."""
        extra = {}
        if self.many and self.many[0].impl == "redlease":
            import redlease
            c0 = redlease.engine_stats()["commands"]
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        p0, w0 = time.process_time(), time.monotonic()
        time.sleep(seconds)
        p1, w1 = time.process_time(), time.monotonic()
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        if self.many and self.many[0].impl == "redlease":
            extra["commands_per_s"] = (redlease.engine_stats()["commands"] - c0) / (w1 - w0)
            stats = [lk.lock.stats() for lk in self.many]
            extra["renewals"] = sum(s["renewals"] for s in stats)
            extra["renew_failures"] = sum(s["renew_failures"] for s in stats)
            extra["losses"] = sum(s["losses"] for s in stats)
        extra["owned"] = sum(1 for lk in self.many if self.owned_fast(lk))
        self.reply(cpu_s=p1 - p0, wall_s=w1 - w0, pct=100.0 * (p1 - p0) / (w1 - w0),
                   user_s=ru1.ru_utime - ru0.ru_utime, sys_s=ru1.ru_stime - ru0.ru_stime,
                   threads_os=os_threads(), **extra)

    @staticmethod
    def owned_fast(lk):
        if lk.impl == "redlease":
            return lk.lock.owned
        return lk.owned()

    # ------------------------------------------------------------ P7
    def op_mt(self, impl, url, threads, seconds, prefix="p7"):
        # redis-py: one client, so one shared connection pool for all threads.
        client = impls.redis_client(url) if impl != "redlease" else None
        locks = [impls.make(impl, url, "%s:%s:%d" % (prefix, impl, i), ttl=10.0,
                            auto_renew=False, client=client) for i in range(threads)]
        for lk in locks:                      # warm: connections, scripts
            for _ in range(5):
                lk.acquire()
                lk.release()
        counts = [0] * threads
        errors = []
        barrier = threading.Barrier(threads + 1)
        stop = threading.Event()

        def run(i):
            acq, rel = locks[i].lock.acquire, locks[i].lock.release
            n = 0
            barrier.wait()
            try:
                while not stop.is_set():
                    acq()
                    rel()
                    n += 1
            except Exception as exc:
                errors.append(repr(exc))
            counts[i] = n

        ts = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(threads)]
        for t in ts:
            t.start()
        barrier.wait()
        t0 = time.monotonic()
        time.sleep(seconds)
        stop.set()
        for t in ts:
            t.join(30)
        t1 = time.monotonic()
        total = sum(counts)
        self.reply(cycles=total, elapsed=t1 - t0, per_s=total / (t1 - t0), per_thread=counts,
                   errors=errors[:3])

    # --------------------------------------------------------------- loop
    def serve(self):
        for line in sys.stdin:
            line = line.strip()
            if not line:
                continue
            cmd = json.loads(line)
            op = cmd.pop("op")
            if op == "quit":
                self.reply(ok=True)
                break
            try:
                getattr(self, "op_" + op)(**cmd)
            except Exception:
                self.reply(error=traceback.format_exc())
        sys.stdout.flush()
        # Skip interpreter teardown: thousands of renewal threads (P6) or
        # held leases would only slow the exit; the server is thrown away.
        os._exit(0)


def main():
    parent = int(os.environ.get("BENCH_PARENT_PID", os.getppid()))
    die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the bench stops us itself
    # Ensure stdout is line-oriented text
    Worker().serve()


if __name__ == "__main__":
    main()
