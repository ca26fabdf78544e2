"""``redlease demo``: leader election between node processes.

Without --url a throwaway redis-server is started on a free loopback port
(--save '' --appendonly no) and removed on exit, Ctrl-C included.

The show (runs once and exits 0; bounded, well under 30 s):
  1. N node processes (default 3) start on one key; one is elected.
  2. Graceful handover: the leader gets SIGTERM and calls node.stop(); its
     release publishes to the followers, one takes over in about one round
     trip.  The stopped node is replaced by a fresh one.
  3. Crash failover: the leader gets SIGKILL and cannot release; the
     followers retry at the key's PTTL and take over as soon as it expires.
Every change of leader is printed with a timestamp; measured times are
printed per phase and in a summary.  Each node is a
``python -m redlease._cli_demo_node`` process.
"""
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

from . import _redlease as _c
from ._cli_demo_redis import DemoError, MiniRedis, RedisReplyError, ThrowawayRedis
from .cli import EXIT_ERROR, EXIT_INTERRUPTED, mask_url


def now():
    return time.monotonic()   # system-wide on Linux, as in the node processes


class _Terminated(Exception):
    pass


class Show:
    def __init__(self, url, key, ttl, verbose):
        self.url, self.key, self.ttl, self.verbose = url, key, ttl, verbose
        self.events = queue.Queue()
        self.procs = {}          # name -> Popen
        self.readers = []        # threads reading the nodes' stdout
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
        env = dict(os.environ, REDLEASE_DEMO_URL=self.url)
        p = subprocess.Popen(
            [sys.executable, "-m", "redlease._cli_demo_node", self.key, name, repr(self.ttl)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1, env=env)
        self.procs[name] = p
        t = threading.Thread(target=self._reader, args=(name, p), daemon=True)
        self.readers.append(t)
        t.start()
        return name

    def _reader(self, name, p):
        try:
            for line in p.stdout:
                try:
                    self.events.put(json.loads(line))
                except ValueError:
                    sys.stdout.write("[%s] %s" % (name, line))
        except (OSError, ValueError):
            pass
        self.events.put({"ev": "exit", "node": name, "t": now(), "rc": p.wait()})

    def signal(self, name, sig):
        t = now()
        self.procs[name].send_signal(sig)
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
        for t in self.readers:      # they end at EOF, now that the nodes are gone
            t.join(2.0)
        for p in self.procs.values():
            for f in (p.stdin, p.stdout):
                try:
                    f.close()
                except (OSError, ValueError):
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
        elif ev == "fatal":
            self.say("%s gave up: %s" % (name, e["error"]), t)
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
        """Pairs of terms that overlap in time (events from different pipes
        may arrive out of order, so compare the nodes' own timestamps)."""
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
                raise DemoError("timed out after %.1f s waiting for %s" % (timeout, what))
            try:
                e = self.events.get(timeout=min(left, 0.25))
            except queue.Empty:
                continue
            self.handle(e)
            if pred(e):
                return e
            if e["ev"] == "fatal":
                raise DemoError("%s: %s" % (e["node"], e["error"]))
            if e["ev"] == "exit" and e["rc"] not in (0, -signal.SIGKILL):
                raise DemoError("%s exited with code %s (see its output above)"
                                % (e["node"], e["rc"]))

    def wait_exit(self, name, timeout):
        deadline = now() + timeout
        while name not in self.exited:
            left = deadline - now()
            if left <= 0:
                raise DemoError("timed out waiting for %s to exit" % name)
            try:
                self.handle(self.events.get(timeout=min(left, 0.25)))
            except queue.Empty:
                pass

    def idle(self, seconds):
        try:
            self.wait_for(lambda e: False, seconds, "")
        except DemoError:
            pass

    def drain(self):
        while True:
            try:
                self.handle(self.events.get_nowait())
            except queue.Empty:
                return

    @staticmethod
    def elected_other_than(*names):
        return lambda e: e["ev"] == "elected" and e["node"] not in names

    def pttl(self):
        """(pttl_ms, holder, t_when_measured) of the lease key, seen directly."""
        with MiniRedis(self.url) as r:
            t1 = now()
            ms = r.call("PTTL", self.key)
            t2 = now()
            holder = r.call("GET", self.key)
        if isinstance(holder, str):      # the node_id part of the term's value
            holder = _c._term_node_id(holder.encode()).decode(errors="replace")
        elif isinstance(holder, bytes):
            holder = _c._term_node_id(holder)
        return ms, holder, (t1 + t2) / 2

    # ------------------------------------------------------------------ show
    def run(self, n):
        results = []
        self.banner("starting %d nodes on key %r, ttl %.1f s" % (n, self.key, self.ttl))
        t_start = now()
        for _ in range(n):
            self.spawn()
        first = self.wait_for(lambda e: e["ev"] == "elected", 15, "a first leader")
        results.append(("first election (from process start)", first["t"] - t_start))
        self.say("%s leads; its lease is renewed in the background (watching for %.1f s)"
                 % (first["node"], max(1.0, self.ttl)))
        self.idle(max(1.0, self.ttl))
        if self.leader is None:
            raise DemoError("no leader after the first phase")

        # -- graceful handover ---------------------------------------------
        old = self.leader
        self.banner("graceful handover: SIGTERM to %s -> node.stop() releases the lease" % old)
        t_sig = self.signal(old, signal.SIGTERM)
        new = self.wait_for(self.elected_other_than(old), self.ttl + 5,
                            "a new leader after SIGTERM")
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
            raise DemoError("no leader before the crash phase")
        self.banner("crash failover: SIGKILL to %s -- no release, the key must expire" % victim)
        t_kill = self.signal(victim, signal.SIGKILL)
        self._end_term(victim, t_kill)
        self.idle(0.02)  # let a renewal already in flight land before reading PTTL
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
        msg = "takeover %.1f ms after SIGKILL" % ((new["t"] - t_kill) * 1000)
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
        self.drain()   # what the nodes reported while stopping
        return self.summary(results)

    def summary(self, results):
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
        for a, b, t in overlaps:
            print("  OVERLAP: %s was elected at +%.3fs while %s still reported leadership"
                  % (b, t - self.t0, a))
        if not overlaps:
            print("  no two nodes reported leadership at the same time")
        sys.stdout.flush()
        return 0 if increasing and not overlaps else 1


def _version(v):
    return ".".join(map(str, v)) if isinstance(v, tuple) else str(v)


def _raise_terminated(signum, frame):
    raise _Terminated()


def cmd_demo(args):
    import redlease
    # Ctrl-C (even when started with SIGINT ignored, e.g. as a background
    # job) and SIGTERM: clean up and leave.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_terminated)
    server = show = None
    rc = EXIT_ERROR
    try:
        if args.url:
            url = args.url
        else:
            server = ThrowawayRedis().start()
            url = server.url
        key = args.key or "redlease:demo:%d:%d" % (os.getpid(), int(time.time()))
        print("redlease %s (hiredis %s); redis at %s%s"
              % (redlease.__version__, _version(getattr(redlease, "hiredis_version", "?")),
                 mask_url(url), " (throwaway, removed on exit)" if server else ""), flush=True)
        show = Show(url, key, args.ttl, args.verbose)
        rc = show.run(args.nodes)
    except KeyboardInterrupt:
        sys.stderr.write("\ninterrupted: stopping nodes and cleaning up\n")
        rc = EXIT_INTERRUPTED
    except _Terminated:
        sys.stderr.write("\nterminated: stopping nodes and cleaning up\n")
        rc = 128 + signal.SIGTERM
    except (DemoError, OSError, RedisReplyError) as exc:
        sys.stderr.write("\ndemo FAILED: %s\n" % exc)
        rc = EXIT_ERROR
    finally:
        # No more Ctrl-C / SIGTERM interruptions while cleaning up.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        sys.stderr.flush()
        if show is not None:
            show.shutdown()
            if server is None:
                try:
                    with MiniRedis(show.url) as r:
                        r.call("DEL", show.key)
                        if not args.key:   # a key of our own: its fencing counter too
                            r.call("DEL", "{%s}:redlease-token" % show.key)
                except (OSError, RedisReplyError, DemoError):
                    pass
        if server is not None:
            server.close()
    return rc
