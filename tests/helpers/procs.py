"""Subprocess bookkeeping: every child a test starts is registered here so a
fixture (or, as a last resort, the watchdog) can kill it."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading

_lock = threading.Lock()
_live: dict[int, subprocess.Popen] = {}

_SETPRIV = shutil.which("setpriv")


def pdeathsig_prefix() -> list[str]:
    """Prefix a command so the child gets SIGKILL if the test runner dies.

    Best effort: only when util-linux ``setpriv`` is available.
    """
    if _SETPRIV and os.environ.get("REDLEASE_TEST_NO_SETPRIV") != "1":
        return [_SETPRIV, "--pdeathsig", "KILL", "--"]
    return []


def spawn(argv, **kwargs) -> subprocess.Popen:
    proc = subprocess.Popen(pdeathsig_prefix() + list(argv), **kwargs)
    with _lock:
        _live[proc.pid] = proc
    return proc


def kill(proc: subprocess.Popen, wait: float = 10.0) -> None:
    """SIGCONT (in case it is stopped) + SIGKILL, then reap."""
    if proc.poll() is None:
        for sig in (signal.SIGCONT, signal.SIGKILL):
            try:
                os.kill(proc.pid, sig)
            except ProcessLookupError:
                break
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            pass
    with _lock:
        _live.pop(proc.pid, None)


def forget(proc: subprocess.Popen) -> None:
    with _lock:
        _live.pop(proc.pid, None)


def kill_all_registered() -> None:
    with _lock:
        procs = list(_live.values())
    for p in procs:
        try:
            kill(p, wait=2.0)
        except Exception:  # noqa: BLE001 - best effort in an emergency
            pass
