"""Test-side handle on a node_worker.py process, plus invariant checks."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque

from . import procs
from .waiting import WaitTimeout, boottime

WORKER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node_worker.py")


class Worker:
    def __init__(self, cfg: dict, env: dict | None = None, name: str = "worker"):
        self.cfg = dict(cfg)
        self.name = name
        self.events: list[dict] = []
        self._cond = threading.Condition()
        self.stderr_tail: deque[str] = deque(maxlen=200)
        self.proc = procs.spawn([sys.executable, "-u", WORKER_SCRIPT, json.dumps(cfg)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env)
        self.pid = self.proc.pid
        self._readers = [
            threading.Thread(target=self._read_stdout, name=f"{name}-out", daemon=True),
            threading.Thread(target=self._read_stderr, name=f"{name}-err", daemon=True),
        ]
        for t in self._readers:
            t.start()
        self.stopped_by_signal = False

    # -- readers -----------------------------------------------------------
    def _read_stdout(self):
        for raw in self.proc.stdout:
            try:
                ev = json.loads(raw)
            except ValueError:
                ev = {"ev": "garbage", "line": raw.decode(errors="replace"), "t": boottime()}
            with self._cond:
                self.events.append(ev)
                self._cond.notify_all()
        with self._cond:
            self.events.append({"ev": "eof", "t": boottime()})
            self._cond.notify_all()

    def _read_stderr(self):
        for raw in self.proc.stderr:
            self.stderr_tail.append(raw.decode(errors="replace"))

    # -- events --------------------------------------------------------------
    def snapshot(self) -> list[dict]:
        with self._cond:
            return list(self.events)

    def of(self, kind: str) -> list[dict]:
        return [e for e in self.snapshot() if e.get("ev") == kind]

    def wait_event(self, pred, timeout: float = 10.0, start: int = 0, desc: str = ""):
        """Wait for an event (index >= start) matching pred; return it."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for ev in self.events[start:]:
                    if pred(ev):
                        return ev
                    if ev.get("ev") == "eof":
                        self._cond.release()
                        try:  # let the stderr reader drain so the report shows why
                            self._readers[1].join(3)
                            self.proc.poll()
                        finally:
                            self._cond.acquire()
                        raise AssertionError(
                            f"{self.name} exited (rc={self.proc.poll()}) while waiting for "
                            f"{desc or pred}; stderr:\n{self.stderr()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise WaitTimeout(f"{self.name}: no event {desc or pred} within {timeout}s; "
                                      f"last events: {self.events[-5:]}\nstderr:\n{self.stderr()}")
                self._cond.wait(min(left, 0.2))

    def wait_ev(self, kind: str, timeout: float = 10.0, start: int = 0, **match):
        return self.wait_event(lambda e: e.get("ev") == kind and
                               all(e.get(k) == v for k, v in match.items()),
                               timeout, start, desc=f"{kind} {match or ''}")

    def mark(self) -> int:
        with self._cond:
            return len(self.events)

    def stderr(self) -> str:
        return "".join(self.stderr_tail)[-6000:]

    # -- commands --------------------------------------------------------------
    def send(self, line: str):
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()

    def command(self, line: str, timeout: float = 15.0):
        """Send a command and wait for its ack (or error)."""
        m = self.mark()
        cmd = line.split()[0]
        self.send(line)
        ev = self.wait_event(lambda e: e.get("ev") in ("ack", "error") and e.get("cmd") == cmd,
                             timeout, m, desc=f"ack of {line!r}")
        if ev["ev"] == "error":
            raise AssertionError(f"{self.name}: command {line!r} failed: {ev['error']}")
        return ev

    def status(self, timeout: float = 10.0) -> dict:
        m = self.mark()
        self.send("status")
        return self.wait_ev("status", timeout, m)

    def hello(self, timeout: float = 20.0) -> dict:
        return self.wait_ev("hello", timeout)

    @property
    def node_id(self) -> str:
        return self.hello()["node_id"]

    def is_leading_now(self) -> bool:
        """Last sampler transition says leading (no I/O)."""
        state = False
        for e in self.snapshot():
            if e.get("ev") == "lead_start":
                state = True
            elif e.get("ev") == "lead_end":
                state = False
        return state

    def elected_tokens(self) -> list[int]:
        return [e["token"] for e in self.of("elected")]

    # -- signals ---------------------------------------------------------------
    def sigstop(self):
        os.kill(self.pid, signal.SIGSTOP)

    def sigcont(self):
        os.kill(self.pid, signal.SIGCONT)

    def sigkill(self):
        try:
            os.kill(self.pid, signal.SIGCONT)
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)

    def exit(self, timeout: float = 15.0) -> int:
        """Ask for a clean exit (node.stop()); return the exit code."""
        try:
            self.send("exit")
            self.proc.stdin.close()
        except (BrokenPipeError, OSError, ValueError):
            pass
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} did not exit within {timeout}s")

    def kill(self):
        procs.kill(self.proc)
        for t in self._readers:
            t.join(5)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except (OSError, ValueError):
                pass

    # -- intervals ---------------------------------------------------------------
    def intervals(self) -> list[tuple]:
        """Leadership intervals seen by the sampler: (pid, token, start, end).

        An interval still open (or cut short by SIGKILL) ends at the last
        heartbeat, i.e. the last True sample that was reported.
        """
        out = []
        cur = None  # [tok, start, last]
        for e in self.snapshot():
            kind = e.get("ev")
            if kind == "lead_start":
                if cur is not None:
                    out.append((self.pid, cur[0], cur[1], cur[2]))
                cur = [e["tok"], e["t"], None]
            elif kind == "hb" and cur is not None and e["tok"] == cur[0]:
                cur[2] = e["last"]
            elif kind == "lead_end" and cur is not None:
                cur[2] = e["last"]
                out.append((self.pid, cur[0], cur[1], cur[2]))
                cur = None
        if cur is not None:
            out.append((self.pid, cur[0], cur[1], cur[2]))
        return [(pid, tok, s, e if e is not None else s) for pid, tok, s, e in out]


def all_intervals(workers) -> list[tuple]:
    iv = []
    for w in workers:
        iv.extend(w.intervals())
    return sorted(iv, key=lambda x: x[2])


def assert_no_overlap(workers, check_overlap: bool = True):
    """No two leadership terms overlap, and tokens increase with time.

    ``check_overlap=False`` only checks the tokens (for scenarios where Redis
    lost its data, so an old leader's local lease legitimately outlives the key).
    """
    iv = all_intervals(workers)
    # merge repeated reports of the same (pid, token)
    terms: dict[tuple, list] = {}
    for pid, tok, s, e in iv:
        t = terms.setdefault((pid, tok), [s, e])
        t[0] = min(t[0], s)
        t[1] = max(t[1], e)
    toks_by_pid: dict = {}
    for (pid, tok) in terms:
        toks_by_pid.setdefault(tok, set()).add(pid)
    dup = {tok: pids for tok, pids in toks_by_pid.items() if len(pids) > 1}
    assert not dup, f"the same fencing token was used by several processes: {dup}"
    ordered = sorted(((s, e, pid, tok) for (pid, tok), (s, e) in terms.items()))
    for i, (s1, e1, p1, k1) in enumerate(ordered if check_overlap else ()):
        for (s2, e2, p2, k2) in ordered[i + 1:]:
            # strict: a single-sample interval (start > end) never counts as overlapping
            assert not (max(s1, s2) < min(e1, e2)), (
                f"overlapping leadership: pid {p1} token {k1} [{s1:.4f}, {e1:.4f}] and "
                f"pid {p2} token {k2} [{s2:.4f}, {e2:.4f}]")
    for (s1, e1, p1, k1), (s2, e2, p2, k2) in zip(ordered, ordered[1:]):
        assert k2 > k1, f"fencing token did not increase: {k1} (pid {p1}) then {k2} (pid {p2})"
    return ordered


def current_leaders(workers) -> list:
    return [w for w in workers if w.proc.poll() is None and w.is_leading_now()]
