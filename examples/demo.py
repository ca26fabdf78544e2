#!/usr/bin/env python3
"""redlease demo: leader election between node processes.

    python examples/demo.py [URL] [--nodes N] [--ttl SECONDS] [--once]

Without URL a throwaway redis-server is started on a free loopback port
(--save '' --appendonly no) and removed on exit, Ctrl-C included.

The show (runs once and exits 0; bounded, well under 30 s):
  1. N node processes (default 3) start on one key; one is elected.
  2. Graceful handover: the leader gets SIGTERM and calls node.stop(); its
     release publishes to the followers, one takes over in about one round
     trip.  The stopped node is replaced by a fresh one.
  3. Crash failover: the leader gets SIGKILL and cannot release; the
     followers retry at the key's PTTL and take over as soon as it expires.
Every change of leader is printed with a timestamp; measured times are
printed per phase and in a summary.

Each node is this same file run as
    python examples/demo.py --worker URL KEY NAME [--ttl SECONDS]
which prints its state changes as JSON lines on stdout.
"""

import argparse
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

DEFAULT_TTL = 2.0


def now():
    # CLOCK_MONOTONIC is system-wide on Linux: comparable across processes.
    return time.monotonic()


# ============================================================== node process
def run_worker(url, key, name, ttl):
    """One node.  Reports state changes as JSON lines; SIGTERM/SIGINT (or the
    parent closing our stdin) -> node.stop(), which releases a held lease."""
    import redlease

    out_lock = threading.Lock()

    def emit(ev, t=None, **kw):
        kw.update(ev=ev, node=name, t=now() if t is None else t)
        with out_lock:
            try:
                sys.stdout.write(json.dumps(kw) + "\n")
                sys.stdout.flush()
            except (OSError, ValueError):
                pass  # the parent is gone

    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def watch_parent():
        try:
            while os.read(0, 4096):  # b"" at EOF: the parent is gone
                pass
        except OSError:
            pass
        stop.set()

    threading.Thread(target=watch_parent, daemon=True).start()

    node = redlease.DistributionNode(url, key, node_id=name, ttl=ttl)
    node.start()
    emit("started", pid=os.getpid())

    leading, seen_leader, seen_error = False, None, None
    try:
        while not stop.is_set():
            if leading:
                stop.wait(0.001)        # is_leader is a memory read: poll it
            else:
                node.wait_for_leadership(timeout=0.05)  # returns when elected
            t = now()
            is_leader = node.is_leader
            if is_leader != leading:
                leading = is_leader
                if leading:
                    emit("elected", t=t, token=node.token,
                         remaining=node.lease_remaining)
                else:
                    emit("revoked", t=t, error=_err(node.last_error))
            holder = node.leader
            if holder != seen_leader:
                seen_leader = holder
                emit("sees", t=t, leader=holder)
            err = _err(node.last_error)
            if err != seen_error:
                seen_error = err
                if err:
                    emit("error", t=t, error=err)
    finally:
        emit("stopping", leader=node.is_leader)
        t = now()
        node.stop()
        emit("stopped", took=now() - t)
        # Leave at once: nothing left to clean up, and no daemon thread
        # (the stdin watcher) can trip interpreter shutdown.
        os._exit(0)


def _version(v):
    return ".".join(map(str, v)) if isinstance(v, tuple) else str(v)


def _err(e):
    return None if e is None else "%s" % (e,)


# ============================================================ redis helpers
def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent():
    """preexec_fn: have the kernel kill the child if this process dies."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class ThrowawayRedis:
    """A redis-server on a free loopback port: no persistence, own temp dir,
    own session (Ctrl-C does not hit it; we stop it last), killed with us."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="redlease-demo-")
        self.proc = None
        self.port = None

    def start(self):
        exe = shutil.which("redis-server")
        if not exe:
            raise SystemExit("redis-server not found: apt-get install redis-server "
                             "(or run bash scripts/demo.sh), or pass a redis:// URL")
        for _ in range(5):
            self.port = free_port()
            self.proc = subprocess.Popen(
                [exe, "--port", str(self.port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--dir", self.dir,
                 "--logfile", os.path.join(self.dir, "redis.log")],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                start_new_session=True, preexec_fn=_die_with_parent)
            deadline = now() + 5
            while now() < deadline and self.proc.poll() is None:
                try:
                    with MiniRedis("redis://127.0.0.1:%d" % self.port, timeout=0.2) as r:
                        if r.call("PING") == "PONG":
                            return self
                except OSError:
                    time.sleep(0.02)
            self.stop()  # lost a port race or too slow: try another port
        raise SystemExit("could not start redis-server; log: %s"
                         % os.path.join(self.dir, "redis.log"))

    @property
    def url(self):
        return "redis://127.0.0.1:%d/0" % self.port

    def stop(self):
        p, self.proc = self.proc, None
        if p is not None and p.poll() is None:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisReplyError(Exception):
    pass


class MiniRedis:
    """Just enough RESP to PING and read a key's PTTL (the demo's own view of
    the server, independent of the package under demonstration)."""

    def __init__(self, url, timeout=2.0):
        u = urllib.parse.urlsplit(url)
        q = urllib.parse.parse_qs(u.query)
        if u.scheme in ("redis", "rediss"):
            if u.scheme == "rediss":
                raise SystemExit("rediss:// (TLS) is not supported by the demo")
            self.sock = socket.create_connection((u.hostname or "127.0.0.1", u.port or 6379),
                                                 timeout=timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        elif u.scheme == "unix":
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.settimeout(timeout)
            self.sock.connect(urllib.parse.unquote(u.path))
        else:
            raise SystemExit("unsupported URL %r (use redis://host:port/db or unix:///path)" % url)
        self.buf = self.sock.makefile("rb")
        user = urllib.parse.unquote(u.username) if u.username else None
        password = urllib.parse.unquote(u.password) if u.password else None
        password = q.get("password", [password])[0]
        if password:
            self.call(*(("AUTH", user, password) if user else ("AUTH", password)))
        db = q.get("db", [(u.path.lstrip("/") if u.scheme != "unix" else "") or "0"])[0]
        if db != "0":
            self.call("SELECT", db)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def call(self, *args):
        parts = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(parts))
        return self._read()

    def _read(self):
        line = self.buf.readline()
        if not line:
            raise ConnectionError("connection closed by redis")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisReplyError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self.buf.read(n + 2)[:-2].decode(errors="replace")
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise ConnectionError("bad reply from redis: %r" % line)


# ==================================================================== show
class Failed(Exception):
    pass


class Show:
    def __init__(self, url, key, ttl, verbose):
        self.url, self.key, self.ttl, self.verbose = url, key, ttl, verbose
        self.events = queue.Queue()
        self.procs = {}          # name -> Popen (running)
        self.pids = {}
        self.leader = None       # who last reported "elected" and has not lost it
        self.tokens = []         # (name, token) per term, in order
        self.terms = []          # [name, start, end] per term, for the overlap check
        self.stopping = {}       # name -> t it began node.stop()
        self.exited = {}         # name -> exit code
        self.serial = 0
        self.t0 = now()
        self.w0 = time.time() - self.t0  # monotonic -> wall clock offset for printing

    # ---------------------------------------------------------------- output
    def say(self, msg, t=None):
        t = now() if t is None else t
        wall = self.w0 + t
        stamp = time.strftime("%H:%M:%S", time.localtime(wall)) + ".%03d" % (wall % 1 * 1000)
        print("%s (+%6.3fs)  %s" % (stamp, t - self.t0, msg), flush=True)

    @staticmethod
    def banner(msg):
        print("\n== %s" % msg, flush=True)

    # ------------------------------------------------------------- processes
    def spawn(self):
        self.serial += 1
        name = "node-%d" % self.serial
        p = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker", self.url, self.key, name,
             "--ttl", repr(self.ttl)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.procs[name] = p
        threading.Thread(target=self._reader, args=(name, p), daemon=True).start()
        return name

    def _reader(self, name, p):
        for line in p.stdout:
            try:
                self.events.put(json.loads(line))
            except ValueError:
                sys.stdout.write("[%s] %s" % (name, line))
        self.events.put({"ev": "exit", "node": name, "t": now(), "rc": p.wait()})

    def signal(self, name, sig):
        p = self.procs[name]
        t = now()
        p.send_signal(sig)
        return t

    def shutdown(self, grace=3.0, leader_last=False):
        """Stop every node (SIGTERM -> node.stop()), SIGKILL stragglers.
        leader_last: stop the followers first so nobody takes over."""
        live = [(n, p) for n, p in self.procs.items() if p.poll() is None]
        if leader_last:
            live.sort(key=lambda np: np[0] == self.leader)
        deadline = now() + grace
        for n, p in live:
            try:
                p.send_signal(signal.SIGTERM)
            except OSError:
                pass
            if leader_last and n != self.leader:
                try:
                    p.wait(max(0.0, deadline - now()))
                except subprocess.TimeoutExpired:
                    pass
        for _, p in live:
            try:
                p.wait(max(0.0, deadline - now()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for _, p in self.procs.items():
            for f in (p.stdin, p.stdout):
                try:
                    f.close()
                except Exception:
                    pass

    # ---------------------------------------------------------------- events
    def handle(self, e):
        ev, name, t = e["ev"], e["node"], e["t"]
        if ev == "started":
            self.pids[name] = e["pid"]
            self.say("%s started (pid %d), following" % (name, e["pid"]), t)
        elif ev == "elected":
            self.terms.append([name, t, None])
            prev = self.leader
            self.leader = name
            self.tokens.append((name, e.get("token")))
            self.say("LEADER: %s  (fencing token %s%s)"
                     % (name, e.get("token"),
                        ", was %s" % prev if prev and prev != name else ""), t)
        elif ev == "revoked":
            self._end_term(name, t)
            self.say("%s is no longer leader%s"
                     % (name, " (%s)" % e["error"] if e.get("error") else ""), t)
        elif ev == "stopping":
            self.stopping[name] = t
            if e.get("leader"):
                self._end_term(name, t)  # from here it does no leader work
            self.say("%s stopping: node.stop()%s"
                     % (name, " releases the lease" if e.get("leader") else ""), t)
        elif ev == "stopped":
            self.say("%s stopped (node.stop() took %.1f ms)" % (name, e["took"] * 1000), t)
        elif ev == "sees":
            if self.verbose:
                self.say("%s sees leader %s" % (name, e.get("leader")), t)
        elif ev == "error":
            self.say("%s last_error: %s" % (name, e["error"]), t)
        elif ev == "exit":
            self._end_term(name, t)
            rc = self.exited[name] = e["rc"]
            how = "killed by %s" % signal.Signals(-rc).name if rc < 0 else "exited %d" % rc
            self.say("%s process %s" % (name, how), t)

    def _end_term(self, name, t):
        for term in self.terms:
            if term[0] == name and term[2] is None:
                term[2] = t
        if self.leader == name:
            self.leader = None

    def overlaps(self):
        """Pairs of terms that overlap in time (events may arrive out of
        order from different pipes, so compare the nodes' own timestamps)."""
        out = []
        terms = sorted(self.terms, key=lambda x: x[1])
        for i, (a, _, a_end) in enumerate(terms):
            for b, b_start, _ in terms[i + 1:]:
                if b != a and (a_end is None or b_start < a_end):
                    out.append((a, b, b_start))
        return out

    def wait_for(self, pred, timeout, what):
        """Handle events until pred(event) is true; return that event."""
        deadline = now() + timeout
        while True:
            left = deadline - now()
            if left <= 0:
                raise Failed("timed out after %.1f s waiting for %s" % (timeout, what))
            try:
                e = self.events.get(timeout=left)
            except queue.Empty:
                continue
            self.handle(e)
            if pred(e):
                return e
            if e["ev"] == "exit" and e["rc"] != 0 and e["rc"] != -signal.SIGKILL:
                raise Failed("%s exited with code %s (see its output above)" % (e["node"], e["rc"]))

    def wait_exit(self, name, timeout):
        deadline = now() + timeout
        while name not in self.exited:
            left = deadline - now()
            if left <= 0:
                raise Failed("timed out waiting for %s to exit" % name)
            try:
                self.handle(self.events.get(timeout=left))
            except queue.Empty:
                pass

    def idle(self, seconds):
        try:
            self.wait_for(lambda e: False, seconds, "")
        except Failed:
            pass

    def elected_other_than(self, *names):
        return lambda e: e["ev"] == "elected" and e["node"] not in names

    # ------------------------------------------------------------------ show
    def pttl(self):
        """(pttl_ms, holder, t_when_measured) of the lease key, seen directly."""
        with MiniRedis(self.url) as r:
            t1 = now()
            ms = r.call("PTTL", self.key)
            t2 = now()
            holder = r.call("GET", self.key)
        return ms, holder, (t1 + t2) / 2

    def run(self, n):
        results = []
        self.banner("starting %d nodes on key %r, ttl %.1f s" % (n, self.key, self.ttl))
        t_start = now()
        for _ in range(n):
            self.spawn()
        first = self.wait_for(lambda e: e["ev"] == "elected", 15, "a first leader")
        results.append(("first election (from process start)", first["t"] - t_start))
        self.say("%s leads; its lease is renewed in the background "
                 "(watching for %.1f s)" % (first["node"], max(1.0, self.ttl)))
        self.idle(max(1.0, self.ttl))
        if self.leader is None:
            raise Failed("no leader after the first phase")

        # -- graceful handover ---------------------------------------------
        old = self.leader
        self.banner("graceful handover: SIGTERM to %s -> node.stop() releases the lease" % old)
        t_sig = self.signal(old, signal.SIGTERM)
        new = self.wait_for(self.elected_other_than(old), self.ttl + 5, "a new leader after SIGTERM")
        self.wait_exit(old, 5)
        t_rel = self.stopping.get(old, t_sig)
        self.say("takeover %.1f ms after node.stop() was called (%.1f ms after SIGTERM); "
                 "without the release it would wait for the lease to expire (up to %.1f s)"
                 % ((new["t"] - t_rel) * 1000, (new["t"] - t_sig) * 1000, self.ttl))
        results.append(("graceful: node.stop() -> new leader", new["t"] - t_rel))
        results.append(("graceful: SIGTERM -> new leader", new["t"] - t_sig))
        joiner = self.spawn()
        self.wait_for(lambda e: e["ev"] == "started" and e["node"] == joiner, 10,
                      "%s to start" % joiner)
        self.idle(1.0)

        # -- crash failover ------------------------------------------------
        victim = self.leader
        if victim is None:
            raise Failed("no leader before the crash phase")
        self.banner("crash failover: SIGKILL to %s -- no release, the key must expire" % victim)
        t_kill = self.signal(victim, signal.SIGKILL)
        self._end_term(victim, t_kill)
        self.idle(0.02)  # let any renew already in flight land before reading PTTL
        ms, holder, t_ms = self.pttl()
        t_expiry = None
        if ms > 0 and holder == victim:
            t_expiry = t_ms + ms / 1000.0
            self.say("the dead leader's key expires in %d ms (PTTL); "
                     "the followers retry when it runs out" % ms)
        else:
            self.say("key state right after the kill: holder=%r pttl=%r" % (holder, ms))
        new = self.wait_for(self.elected_other_than(victim), self.ttl + 5,
                            "a new leader after SIGKILL")
        kill_ms = (new["t"] - t_kill) * 1000
        msg = "takeover %.1f ms after SIGKILL" % kill_ms
        results.append(("crash: SIGKILL -> new leader", new["t"] - t_kill))
        if t_expiry is not None:
            msg += ", %.1f ms after the key expired" % ((new["t"] - t_expiry) * 1000)
            results.append(("crash: key expiry -> new leader", new["t"] - t_expiry))
        self.say(msg)
        self.wait_exit(victim, 5)
        self.idle(0.3)

        # -- wrap up ---------------------------------------------------------
        self.banner("stopping the remaining nodes (followers first, then the leader)")
        self.shutdown(leader_last=True)
        while True:  # print what the nodes reported while stopping
            try:
                self.handle(self.events.get_nowait())
            except queue.Empty:
                break

        self.banner("summary")
        w = max(len(r[0]) for r in results)
        for label, secs in results:
            print("  %-*s  %8.1f ms" % (w, label, secs * 1000))
        toks = [t for _, t in self.tokens]
        try:
            increasing = all(int(a) < int(b) for a, b in zip(toks, toks[1:]))
        except (TypeError, ValueError):
            increasing = False
        print("  fencing tokens, in order of election: %s  (%s)"
              % (" < ".join(str(t) for t in toks),
                 "strictly increasing" if increasing else "NOT strictly increasing!"))
        overlaps = self.overlaps()
        if overlaps:
            for a, b, t in overlaps:
                print("  OVERLAP: %s was elected at +%.3fs while %s still reported leadership"
                      % (b, t - self.t0, a))
        else:
            print("  no two nodes reported leadership at the same time")
        return 0 if increasing and not overlaps else 1


# ==================================================================== main
def main(argv=None):
    ap = argparse.ArgumentParser(
        description="redlease leader-election demo (node processes, handover, failover)")
    ap.add_argument("url", nargs="?", help="redis://host:port/db (default: a throwaway "
                    "redis-server on a free loopback port)")
    ap.add_argument("--nodes", type=int, default=3, help="number of node processes (>= 2, default 3)")
    ap.add_argument("--ttl", type=float, default=DEFAULT_TTL, help="lease ttl in seconds (2)")
    ap.add_argument("--key", help="lease key (default: a fresh redlease:demo:* key)")
    ap.add_argument("--once", action="store_true",
                    help="run the show once, non-interactively, and exit (the default)")
    ap.add_argument("-v", "--verbose", action="store_true", help="also print each follower's view")
    ap.add_argument("--worker", nargs=3, metavar=("URL", "KEY", "NAME"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        run_worker(*args.worker, ttl=args.ttl)
        return 0

    if args.nodes < 2:
        ap.error("--nodes must be at least 2")
    if args.ttl <= 0 or args.ttl > 10:
        ap.error("--ttl must be in (0, 10] seconds to keep the show short")

    # Ctrl-C (even when started with SIGINT ignored, e.g. as a background
    # job) and SIGTERM: clean up and leave.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda s, f: (_ for _ in ()).throw(KeyboardInterrupt()))

    server = show = None
    rc = 1
    try:
        import redlease  # noqa: F401  (fail early, in the parent, with a clear message)
    except ImportError as exc:
        print("cannot import redlease (%s): run bash scripts/demo.sh, which installs it" % exc,
              file=sys.stderr)
        return 1
    try:
        if args.url:
            url = args.url
        else:
            server = ThrowawayRedis().start()
            url = server.url
        key = args.key or "redlease:demo:%d:%d" % (os.getpid(), int(time.time()))
        print("redlease %s (hiredis %s); redis at %s%s"
              % (redlease.__version__, _version(getattr(redlease, "hiredis_version", "?")), url,
                 " (throwaway, removed on exit)" if server else ""), flush=True)
        show = Show(url, key, args.ttl, args.verbose)
        rc = show.run(args.nodes)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping nodes and cleaning up", file=sys.stderr, flush=True)
        rc = 130
    except Failed as exc:
        print("\ndemo FAILED: %s" % exc, file=sys.stderr, flush=True)
        rc = 1
    finally:
        # No more Ctrl-C / SIGTERM interruptions while cleaning up.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if show is not None:
            show.shutdown()
            if not server:
                try:
                    with MiniRedis(show.url) as r:
                        r.call("DEL", show.key)
                except (OSError, RedisReplyError):
                    pass
        if server is not None:
            server.close()
    return rc


if __name__ == "__main__":
    sys.exit(main())
