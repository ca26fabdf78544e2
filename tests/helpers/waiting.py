"""Bounded waiting helpers and clocks.

Tests never assert how long something took (machines are noisy).  They wait for
conditions with a generous upper bound and fail with a clear message when the
bound is exceeded.
"""
from __future__ import annotations

import threading
import time


def boottime() -> float:
    """CLOCK_BOOTTIME: system-wide, so comparable across processes."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


class WaitTimeout(AssertionError):
    pass


def wait_until(pred, timeout: float = 10.0, interval: float = 0.01, desc: str = None):
    """Poll ``pred()`` until it returns a truthy value; return that value.

    Raises WaitTimeout (an AssertionError) after ``timeout`` seconds.  An
    exception raised by ``pred`` propagates at once.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() >= deadline:
            what = desc or getattr(pred, "__name__", repr(pred))
            raise WaitTimeout(f"condition not met within {timeout:.1f}s: {what}")
        time.sleep(interval)


def stays_true(pred, duration: float, interval: float = 0.01) -> bool:
    """Check that ``pred()`` stays truthy for ``duration`` seconds (polling)."""
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        if not pred():
            return False
        time.sleep(interval)
    return bool(pred())


def run_bounded(fn, timeout: float, *args, **kwargs):
    """Run ``fn`` in a daemon thread; wait at most ``timeout`` seconds.

    Returns ``("ok", result)``, ``("raised", exc)`` or ``("hung", None)``.
    Used where a call into the library might hang: a hang becomes a test
    failure instead of a stuck test run.
    """
    box = {}

    def target():
        try:
            box["result"] = ("ok", fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - reported to the caller
            box["result"] = ("raised", exc)

    t = threading.Thread(target=target, name="run_bounded", daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        return ("hung", None)
    return box["result"]
