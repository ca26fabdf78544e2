"""Helpers and fixtures for the redlease.Lock tests.

Import the fixtures into a test module with
``from helpers.lock_procs import make_lock, lock_proc  # noqa: F401``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from . import procs
from .scripts import Output
from .waiting import boottime, run_bounded

LOCK_WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lock_worker.py")


class LockProc:
    """A lock_worker.py child process; stdout events parsed as JSON."""

    def __init__(self, cfg: dict):
        self.cfg = dict(cfg)
        self.proc = procs.spawn([sys.executable, "-u", LOCK_WORKER, json.dumps(cfg)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        self.pid = self.proc.pid
        self.out = Output(self.proc)

    def events(self, kind: str | None = None) -> list[dict]:
        with self.out._cond:
            lines = list(self.out.out)
        evs = []
        for line in lines:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if isinstance(ev, dict) and (kind is None or ev.get("ev") == kind):
                evs.append(ev)
        return evs

    def wait_ev(self, kind: str, timeout: float = 20.0) -> dict:
        """First event of this kind; fails early on an "error" event."""
        def pred(line):
            try:
                ev = json.loads(line)
            except ValueError:
                return False
            if not isinstance(ev, dict):
                return False
            if ev.get("ev") == "error" and kind != "error":
                raise AssertionError(f"lock worker {self.pid} failed: {ev.get('error')}\n"
                                     f"{ev.get('tb')}")
            return ev.get("ev") == kind
        return json.loads(self.out.wait_line(pred, timeout))

    def send(self, line: str):
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()

    def sigkill(self) -> float:
        """SIGKILL and reap; returns the boottime right after the process is gone."""
        os.kill(self.pid, 9)
        self.proc.wait(10)
        return boottime()

    def wait_exit(self, timeout: float = 20.0) -> int:
        return self.out.wait_exit(timeout)

    def stderr(self) -> str:
        return self.out.stderr()

    def kill(self):
        procs.kill(self.proc)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except (OSError, ValueError):
                pass


class AcquireThread(threading.Thread):
    """Runs ``lock.acquire(**kwargs)`` in a thread; records result and boottime."""

    def __init__(self, lock, **kwargs):
        super().__init__(name="lock-acquirer", daemon=True)
        self.lock = lock
        self.kwargs = kwargs
        self.result = None
        self.error = None
        self.t_start = None
        self.t_done = None

    def run(self):
        self.t_start = boottime()
        try:
            self.result = self.lock.acquire(**self.kwargs)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            self.error = exc
        self.t_done = boottime()

    def outcome(self, timeout: float):
        self.join(timeout)
        assert not self.is_alive(), f"acquire({self.kwargs}) did not return within {timeout}s"
        if self.error is not None:
            raise AssertionError(f"acquire raised {self.error!r}") from self.error
        return self.result


@pytest.fixture
def make_lock(rl, redis_factory):
    """``make_lock(url, key, **kwargs)`` -> redlease.Lock, released at teardown if held.

    Depends on redis_factory so the locks let go before the servers stop.
    """
    locks = []

    def make(url, key, cls=None, **kwargs):
        lock = (cls or rl.Lock)(url, key, **kwargs)
        locks.append(lock)
        return lock

    yield make
    hung = []
    for lock in locks:
        local = getattr(lock, "_local", None)   # the object's own hold, even if the lease was lost
        held = local.locked() if local is not None else lock.owned
        if held:
            outcome, _ = run_bounded(lock.release, 30)
            if outcome == "hung":
                hung.append(repr(lock))
    locks.clear()
    if hung:
        pytest.fail(f"Lock.release() hung at teardown: {hung}")


@pytest.fixture
def lock_proc():
    """``lock_proc(cfg)`` -> LockProc running lock_worker.py; SIGKILLed at teardown."""
    started = []

    def spawn(cfg: dict) -> LockProc:
        p = LockProc(cfg)
        started.append(p)
        return p

    yield spawn
    for p in started:
        p.kill()


def wait_for(pred, timeout: float, desc: str, interval: float = 0.01):
    """Like waiting.wait_until but returns the boottime at which pred became true."""
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return boottime()
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout:.1f}s: {desc}")
        time.sleep(interval)
