#!/usr/bin/env python3
"""redlease against its peers on PyPI (a benchmark, not a test).

Measured side by side in one run, on a throwaway redis-server on a free
loopback port:

  P1  uncontended acquire+release cycle (us, median of rounds): redlease.Lock,
      the bare hiredis C loop (bench/hiredis_loop.c, the same Lua scripts by
      EVALSHA), redis-py Lock, python-redis-lock, pottery Redlock (1 master).
  P2  "do I still hold it?": redlease ``lock.owned`` vs redis-py ``owned()``.
  P3  graceful handover latency, waiter in another process (p50/p99).
  P4  crash failover: holder SIGKILLed, key expiry -> waiter holds it.
  P5  GIL hog: holder stuck in a 3 s regex, another process tries to steal.
  P6  10,000 held auto-renewed locks in one process: threads, RSS, CPU.
  P7  8 threads acquiring/releasing distinct keys: aggregate cycles/s.

Usage (normally through scripts/bench_peers.sh, which makes the venv):
    python bench/bench_peers.py [--quick] [--no-readme] [--out DIR]

Writes bench/results/peers.md and bench/results/peers.png and refreshes the
table in README.md's "Benchmarks" section (between the peers-table markers).
Every process it starts (the server, the workers) is killed at the end, also
on Ctrl-C or SIGTERM.
"""
import argparse
import datetime
import json
import math
import os
import platform
import random
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import bench_core  # noqa: E402  (reused: redis-server, hiredis loop, scripts)
from peers import report  # noqa: E402

WORKER = os.path.join(HERE, "peers", "worker.py")


class BenchError(RuntimeError):
    pass


def log(msg):
    print("[bench] %s" % msg, flush=True)


def _die_with_parent():
    """preexec_fn: the child gets SIGKILL when the bench process dies."""
    try:
        import ctypes
        ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)   # PR_SET_PDEATHSIG
    except Exception:
        pass


# ---------------------------------------------------------------- processes
class Server(bench_core.ThrowawayRedis):
    """bench_core's throwaway redis-server, started in its own session (so a
    Ctrl-C reaches only the bench, which then stops it) and tied to the
    bench's life; room for the many connections of P6."""

    def start(self):
        exe = shutil.which("redis-server")
        if not exe:
            raise BenchError("redis-server not found (run scripts/setup.sh)")
        for _ in range(5):
            self.port = bench_core.free_port()
            self.proc = subprocess.Popen(
                [exe, "--port", str(self.port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--dir", self.dir,
                 "--maxclients", "4000",
                 "--logfile", os.path.join(self.dir, "redis.log")],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                start_new_session=True, preexec_fn=_die_with_parent)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and self.proc.poll() is None:
                if bench_core.ping("127.0.0.1", self.port):
                    return self
                time.sleep(0.02)
            self.stop()
        raise BenchError("could not start redis-server (log in %s)" % self.dir)

    def stop(self):
        # Nothing to save (no persistence): SIGKILL, no shutdown sequence.
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def cpu_seconds(self):
        """utime+stime of the server process, from /proc."""
        with open("/proc/%d/stat" % self.proc.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Worker:
    """A bench/peers/worker.py process: JSON lines in, JSON lines out."""

    live = set()

    def __init__(self, name, logdir):
        self.name = name
        self.log_path = os.path.join(logdir, "%s.%d.log" % (name, len(Worker.live)))
        self.err = open(self.log_path, "ab")
        env = dict(os.environ, BENCH_PARENT_PID=str(os.getpid()), PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self.err, env=env, start_new_session=True, preexec_fn=_die_with_parent)
        self.buf = b""
        Worker.live.add(self)

    @property
    def pid(self):
        return self.proc.pid

    def send(self, op, **kw):
        kw["op"] = op
        try:
            self.proc.stdin.write((json.dumps(kw) + "\n").encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise BenchError("worker %s died (log: %s)%s" % (self.name, self.log_path,
                                                             self.tail()))

    def read(self, timeout=30.0):
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError("worker %s: no answer within %.0f s%s"
                                 % (self.name, timeout, self.tail()))
            r, _, _ = select.select([fd], [], [], left)
            if r:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise BenchError("worker %s exited (log: %s)%s"
                                     % (self.name, self.log_path, self.tail()))
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        msg = json.loads(line)
        if "error" in msg and len(msg) == 1:
            raise BenchError("worker %s failed:\n%s" % (self.name, msg["error"]))
        return msg

    def call(self, op, timeout=30.0, **kw):
        self.send(op, **kw)
        return self.read(timeout)

    def tail(self, n=1500):
        try:
            self.err.flush()
            with open(self.log_path, "rb") as f:
                data = f.read()[-n:].decode("utf-8", "replace").strip()
            return ("\n--- its stderr (end) ---\n" + data) if data else ""
        except OSError:
            return ""

    def kill(self):
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except Exception:
                pass
        self.err.close()
        Worker.live.discard(self)

    def close(self):
        """Ask it to leave; kill it if it does not answer quickly."""
        if self.proc.poll() is None:
            try:
                self.call("quit", timeout=3)
                self.proc.wait(3)
            except Exception:
                pass
        self.kill()

    @classmethod
    def kill_all(cls):
        for w in list(cls.live):
            w.kill()


# ------------------------------------------------------------------ helpers
def pct(values, q):
    """q-th percentile (0..100), linear interpolation between closest ranks."""
    v = sorted(values)
    if not v:
        return float("nan")
    k = (len(v) - 1) * q / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def machine_info(load_at_start):
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        redis_v = subprocess.check_output(["redis-server", "--version"], text=True).split()
        redis_v = next(x[2:] for x in redis_v if x.startswith("v="))
    except Exception:
        redis_v = "?"
    from importlib import metadata
    vers = {}
    for dist in ("redlease", "redis", "python-redis-lock", "pottery", "matplotlib"):
        try:
            vers[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            vers[dist] = "-"
    try:
        import redlease
        hv = ".".join(map(str, redlease.hiredis_version))
    except Exception:
        hv = "?"
    return dict(
        date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        nproc=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        cpu=model, load=load_at_start, kernel=platform.release(),
        python=platform.python_version(), redis_server=redis_v, hiredis=hv, versions=vers)


# --------------------------------------------------------------- the bench
class Bench:
    def __init__(self, args, server, work):
        self.a = args
        self.server = server
        self.url = server.url
        self.work = work
        import redis
        self.r = redis.Redis.from_url(self.url)
        self.res = {}

    def worker(self, name):
        return Worker(name, self.work)

    # ---------------------------------------------------------------- P1+P2
    def p1_p2(self):
        a = self.a
        import redlease
        scripts, origin = bench_core.get_scripts(redlease)
        if "FALLBACK" in origin:
            log("warning: " + origin)
        exe = bench_core.build_loop(self.work)
        files = {}
        for name, text in scripts.items():
            files[name] = os.path.join(self.work, name + ".lua")
            with open(files[name], "w") as f:
                f.write(text)
        conn = bench_core.parse_url(self.url)

        w = self.worker("micro")
        try:
            cycles = {"redlease": a.cycles, "hiredis": a.cycles, "redispy": a.cycles,
                      "prl": a.cycles, "pottery": max(20, a.cycles // 8)}
            order = list(cycles)
            samples = {k: [] for k in order}
            refused = 0
            log("P1: %d rounds of acquire+release cycles (%s)"
                % (a.rounds, ", ".join("%s %d" % (k, n) for k, n in cycles.items())))
            for rnd in range(a.rounds):
                rot = order[rnd % len(order):] + order[:rnd % len(order)]   # share drift
                for impl in rot:
                    if impl == "hiredis":
                        us = bench_core.loop_round(exe, conn, files, "p1:hiredis", cycles[impl],
                                                   50, 10000)
                    else:
                        rep = w.call("cycles", timeout=120, impl=impl, url=self.url,
                                     n=cycles[impl], warmup=20 if impl != "pottery" else 5)
                        us = rep["us"]
                        refused += rep["refused"]
                    samples[impl].append(us)
                log("  round %2d: %s" % (rnd + 1, ", ".join(
                    "%s %.0f" % (k, samples[k][-1]) for k in order)))
            paired = [x / y for x, y in zip(samples["redlease"], samples["hiredis"])]
            self.res["p1"] = dict(median={k: statistics.median(v) for k, v in samples.items()},
                                  paired_ratio=statistics.median(paired),
                                  samples=samples, cycles=cycles, rounds=a.rounds,
                                  refused=refused)

            log("P2: lock.owned vs redis-py Lock.owned()")
            rep = w.call("reads", timeout=120, url=self.url, n_fast=a.reads, n_slow=a.slow_reads)
            self.res["p2"] = rep
        finally:
            w.close()

    # -------------------------------------------------------------------- P3
    def p3(self):
        a = self.a
        runs = {"redlease": a.handovers, "prl": a.handovers, "redispy": a.handovers_py}
        out = {}
        for impl, n in runs.items():
            key = "p3:" + impl
            holder, waiter = self.worker("p3-holder-" + impl), self.worker("p3-waiter-" + impl)
            try:
                for w in (holder, waiter):
                    w.call("init_lock", impl=impl, url=self.url, key=key, ttl=10.0)
                lat = []
                log("P3: %d handovers, %s" % (n, impl))
                for _ in range(n):
                    if not holder.call("acquire", timeout=15)["ok"]:
                        raise BenchError("P3 holder could not acquire")
                    waiter.send("acquire_async")
                    waiter.read(10)                        # "going": it is about to block
                    time.sleep(a.handover_gap)             # let it really block
                    rel = holder.call("release", timeout=10)
                    got = waiter.read(15)
                    if not got["ok"]:
                        raise BenchError("P3 waiter did not get the lock")
                    lat.append((got["t_got"] - rel["t_rel"]) * 1e3)
                    waiter.call("release", timeout=10)
                out[impl] = dict(n=len(lat), p50=pct(lat, 50), p99=pct(lat, 99),
                                 max=max(lat), min=min(lat), mean=statistics.fmean(lat))
                log("  %s: p50 %.3f ms, p99 %.3f ms, max %.3f ms"
                    % (impl, out[impl]["p50"], out[impl]["p99"], out[impl]["max"]))
            finally:
                holder.close()
                waiter.close()
        self.res["p3"] = out

    # -------------------------------------------------------------------- P4
    def p4(self):
        a = self.a
        out = {}
        redis_key = {"redlease": "p4:redlease", "prl": "lock:p4:prl"}
        for impl in ("redlease", "prl"):
            key = "p4:" + impl
            waiter = self.worker("p4-waiter-" + impl)
            lat, from_kill, pttls = [], [], []
            try:
                waiter.call("init_lock", impl=impl, url=self.url, key=key, ttl=1.0,
                            auto_renew=True)
                log("P4: %d crash failovers, %s (ttl 1 s)" % (a.crashes, impl))
                for _ in range(a.crashes):
                    holder = self.worker("p4-holder-" + impl)
                    try:
                        holder.call("init_lock", impl=impl, url=self.url, key=key, ttl=1.0,
                                    auto_renew=True)
                        if not holder.call("acquire", timeout=15)["ok"]:
                            raise BenchError("P4 holder could not acquire")
                        waiter.send("acquire_async")
                        waiter.read(10)
                        # Kill at a random point of the renewal cycle.
                        time.sleep(random.uniform(0.15, 0.75))
                        t_kill = time.monotonic()
                        os.kill(holder.pid, signal.SIGKILL)
                        t_a = time.monotonic()
                        pttl = self.r.pttl(redis_key[impl])
                        t_b = time.monotonic()
                        if pttl is None or pttl < 0:
                            raise BenchError("P4: key %s has no ttl after the kill (%r)"
                                             % (redis_key[impl], pttl))
                        # The server read the ttl between t_a and t_b.
                        expiry = (t_a + t_b) / 2 + pttl / 1e3
                        got = waiter.read(10)
                        if not got["ok"]:
                            raise BenchError("P4 waiter did not get the lock")
                        lat.append((got["t_got"] - expiry) * 1e3)
                        from_kill.append((got["t_got"] - t_kill) * 1e3)
                        pttls.append(pttl)
                        waiter.call("release", timeout=10)
                    finally:
                        holder.kill()
                out[impl] = dict(n=len(lat), median=statistics.median(lat), all=lat,
                                 from_kill=statistics.median(from_kill), pttl=pttls)
                log("  %s: after expiry %s ms (median %.1f)"
                    % (impl, ", ".join("%.1f" % x for x in lat), out[impl]["median"]))
            finally:
                waiter.close()
        self.res["p4"] = out

    # -------------------------------------------------------------------- P5
    def p5(self):
        a = self.a
        log("P5: GIL hog of ~%.0f s, %d trial(s) per library" % (a.hog, a.hog_trials))
        out = {}
        ns = []
        for impl in ("redlease", "prl"):
            key = "p5:" + impl
            holder, thief = self.worker("p5-holder-" + impl), self.worker("p5-thief-" + impl)
            thefts, hogs, lost, stolen_at, attempts = 0, [], 0, [], 0
            try:
                for _ in range(a.hog_trials):
                    # Fresh lock objects per trial: a python-redis-lock Lock
                    # whose renewal thread died (after a theft) cannot be
                    # acquired again (AlreadyStarted).
                    for w in (holder, thief):
                        w.call("init_lock", impl=impl, url=self.url, key=key, ttl=1.0,
                               auto_renew=True)
                    # Calibrated in the holder itself, right before the trial.
                    n = holder.call("calibrate", timeout=60, seconds=a.hog)["n"]
                    ns.append(n)
                    if not holder.call("acquire", timeout=15)["ok"]:
                        raise BenchError("P5 holder could not acquire")
                    time.sleep(0.1)
                    # The thief tries until told to stop, half a second after
                    # the hog ends; the holder releases only after that, so
                    # any success of the thief is a theft.
                    thief.send("thief", duration=a.hog * 6 + 30, interval=0.05)
                    thief.read(10)
                    holder.send("hog", n=n)
                    holder.read(10)
                    hog = holder.read(a.hog * 6 + 30)
                    time.sleep(0.5)
                    thief.proc.stdin.write(b"stop\n")
                    thief.proc.stdin.flush()
                    th = thief.read(15)
                    hogs.append(hog["t1"] - hog["t0"])
                    attempts += th["attempts"]
                    if th["thefts"]:
                        thefts += th["thefts"]
                        stolen_at.append(th["t_stolen"] - hog["t0"])
                    rel = holder.call("release", timeout=15)
                    if rel["error"] or not hog["owned_after"]:
                        lost += 1
                    if th["thefts"]:
                        thief.call("release", timeout=15)
                    time.sleep(0.2)
                out[impl] = dict(thefts=thefts, trials=a.hog_trials, hog_s=hogs, lost=lost,
                                 stolen_at=stolen_at, attempts=attempts)
                log("  %s: thefts %d in %d trial(s), hog %s s, holder lost it %d time(s)"
                    % (impl, thefts, a.hog_trials, "/".join("%.1f" % h for h in hogs), lost))
            finally:
                holder.close()
                thief.close()
        self.res["p5"] = dict(n=ns, **out)

    # -------------------------------------------------------------------- P6
    def p6(self):
        a = self.a
        out = {}
        # CPU windows are whole numbers of renewal periods (redlease renews
        # every ttl/3, python-redis-lock every expire*2/3), so the count of
        # renewal bursts inside does not depend on where the window starts.
        for impl, count, secs in (("redlease", a.many, a.cpu_periods * 10.0 / 3),
                                  ("prl", a.many_prl, a.cpu_periods_prl * 10.0 * 2 / 3)):
            w = self.worker("p6-" + impl)
            try:
                log("P6: %d held auto-renewed %s locks (ttl 10 s), CPU over %.0f s"
                    % (count, impl, secs))
                info = w.call("many", timeout=300, impl=impl, url=self.url, count=count,
                              ttl=10.0)
                s0 = self.server.cpu_seconds()
                cpu = w.call("idle_cpu", timeout=secs + 120, seconds=secs)
                s1 = self.server.cpu_seconds()
                info["cpu"] = cpu
                info["server_pct"] = 100.0 * (s1 - s0) / cpu["wall_s"]
                info["rss_per_lease"] = (info["rss1"] - info["rss0"]) / count
                out[impl] = info
                log("  %s: threads %d (OS %d), RSS +%.0f B/lock, CPU %.2f %% of a core, "
                    "redis-server %.2f %%, still owned %d/%d"
                    % (impl, info["threads_py"], info["threads_os"], info["rss_per_lease"],
                       cpu["pct"], info["server_pct"], cpu["owned"], count))
            finally:
                w.kill()       # thousands of leases: no need to release them one by one
            self.r.flushdb()
        self.res["p6"] = out

    # -------------------------------------------------------------------- P7
    def p7(self):
        a = self.a
        samples = {"redlease": [], "redispy": []}
        log("P7: %d threads x distinct keys, %.0f s, %d round(s)"
            % (a.threads, a.mt_seconds, a.mt_rounds))
        for rnd in range(a.mt_rounds):
            order = ["redlease", "redispy"] if rnd % 2 == 0 else ["redispy", "redlease"]
            for impl in order:
                w = self.worker("p7-" + impl)
                try:
                    rep = w.call("mt", timeout=a.mt_seconds + 60, impl=impl, url=self.url,
                                 threads=a.threads, seconds=a.mt_seconds,
                                 prefix="p7r%d" % rnd)
                    if rep["errors"]:
                        raise BenchError("P7 %s: %s" % (impl, rep["errors"]))
                    samples[impl].append(rep["per_s"])
                finally:
                    w.close()
            log("  round %d: redlease %.0f/s, redis-py %.0f/s"
                % (rnd + 1, samples["redlease"][-1], samples["redispy"][-1]))
        self.res["p7"] = dict(median={k: statistics.median(v) for k, v in samples.items()},
                              samples=samples, threads=a.threads, seconds=a.mt_seconds)


# -------------------------------------------------------------------- main
PHASES = ("p1", "p3", "p4", "p5", "p6", "p7")


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="a short smoke run (fewer rounds and samples; not for the README)")
    ap.add_argument("--only", default="", help="comma list of phases, e.g. p1,p3 (P2 runs with P1)")
    ap.add_argument("--out", default=None,
                    help="results directory (default bench/results; --quick and --only "
                         "runs write files only when --out is given, and never README.md)")
    ap.add_argument("--no-readme", action="store_true", help="leave README.md alone")
    ap.add_argument("--raw", help="also write the raw results as JSON to this file")
    ap.add_argument("--rounds", type=int, default=15,
                    help="P1 rounds (short, interleaved, so all share the machine's drift)")
    ap.add_argument("--cycles", type=int, default=400, help="P1 cycles per round")
    ap.add_argument("--reads", type=int, default=1_000_000)
    ap.add_argument("--slow-reads", type=int, default=2000)
    ap.add_argument("--handovers", type=int, default=200)
    ap.add_argument("--handovers-py", type=int, default=50)
    ap.add_argument("--handover-gap", type=float, default=0.02,
                    help="seconds between the waiter starting to wait and the release")
    ap.add_argument("--crashes", type=int, default=5)
    ap.add_argument("--hog", type=float, default=3.0, help="seconds the regex holds the GIL")
    ap.add_argument("--hog-trials", type=int, default=2)
    ap.add_argument("--many", type=int, default=10_000)
    ap.add_argument("--many-prl", type=int, default=1_000,
                    help="python-redis-lock locks in P6 (one thread each)")
    ap.add_argument("--cpu-periods", type=int, default=6,
                    help="P6 CPU window for redlease, in renewal periods of 3.33 s (6 = 20 s)")
    ap.add_argument("--cpu-periods-prl", type=int, default=2,
                    help="the same for python-redis-lock, periods of 6.67 s (2 = 13.3 s)")
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--mt-seconds", type=float, default=3.0)
    ap.add_argument("--mt-rounds", type=int, default=3)
    a = ap.parse_args(argv)
    if a.quick:
        a.rounds, a.cycles, a.reads, a.slow_reads = 3, 200, 200_000, 300
        a.handovers, a.handovers_py, a.crashes, a.hog_trials = 30, 8, 2, 1
        a.many, a.many_prl, a.cpu_periods, a.cpu_periods_prl = 2000, 300, 1, 1
        a.mt_seconds, a.mt_rounds, a.hog = 1.0, 1, 2.0
    if a.quick or a.only:
        # A partial run must not overwrite the full results or the README.
        a.no_readme = True
    elif a.out is None:
        a.out = os.path.join(HERE, "results")
    a.phases = set(p.strip().lower() for p in a.only.split(",") if p.strip()) or set(PHASES)
    return a


def main(argv=None):
    a = parse_args(argv)
    t_start = time.monotonic()
    load = os.getloadavg()

    def on_term(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)

    try:
        import redlease  # noqa: F401
        import redis  # noqa: F401
        import redis_lock  # noqa: F401
        import pottery  # noqa: F401
    except ImportError as exc:
        sys.exit("missing package (%s): run bash scripts/bench_peers.sh" % exc)

    info = machine_info(load)
    log("%s, %d CPU(s) %s, load %.2f %.2f %.2f, python %s, redis %s, hiredis %s"
        % (info["date"], info["nproc"], info["cpu"], *load, info["python"],
           info["redis_server"], info["hiredis"]))
    log("versions: " + ", ".join("%s %s" % kv for kv in info["versions"].items()))

    work = tempfile.mkdtemp(prefix="redlease-peers-")
    server = None
    rc = 0
    try:
        server = Server().start()
        log("throwaway redis-server on %s (pid %d)" % (server.url, server.proc.pid))
        b = Bench(a, server, work)
        steps = [("p1", b.p1_p2), ("p3", b.p3), ("p4", b.p4), ("p5", b.p5), ("p6", b.p6),
                 ("p7", b.p7)]
        for name, fn in steps:
            if name in a.phases:
                t0 = time.monotonic()
                fn()
                log("  (%s took %.1f s)" % (name.upper(), time.monotonic() - t0))
        elapsed = time.monotonic() - t_start
        info["elapsed_s"] = elapsed
        info["quick"] = a.quick
        rows = report.build_rows(b.res, a)
        print()
        print(report.render_text(rows, info))
        if a.out is None:
            log("partial run: no files written (pass --out DIR to keep them)")
        else:
            os.makedirs(a.out, exist_ok=True)
            md_path = os.path.join(a.out, "peers.md")
            png_path = os.path.join(a.out, "peers.png")
            with open(md_path, "w") as f:
                f.write(report.render_md(rows, info))
            if a.raw:
                with open(a.raw, "w") as f:
                    json.dump(b.res, f, indent=1, default=str)
            ok_png = report.render_png(b.res, rows, info, png_path)
            log("wrote %s%s" % (os.path.relpath(md_path, ROOT),
                                (" and " + os.path.relpath(png_path, ROOT)) if ok_png else ""))
        if not a.no_readme:
            if report.update_readme(os.path.join(ROOT, "README.md"), rows, info):
                log("refreshed the table in README.md (Benchmarks section)")
            else:
                log("README.md has no peers-table markers: left alone")
        log("total %.0f s" % (time.monotonic() - t_start))
    except KeyboardInterrupt:
        print("\n[bench] interrupted: stopping workers and the server", file=sys.stderr)
        rc = 130
    except BenchError as exc:
        print("[bench] ERROR: %s" % exc, file=sys.stderr)
        rc = 1
    except Exception:
        import traceback
        traceback.print_exc()
        rc = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)     # finish the clean-up
        Worker.kill_all()
        if server is not None:
            server.close()
        shutil.rmtree(work, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
