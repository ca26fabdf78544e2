"""asyncio support without a thread per waiter.

Each event loop gets one eventfd (a pipe before Python 3.10) registered with
the engine, which writes to it whenever a lease's published state changes;
the loop's reader callback re-checks the waiters of that loop.  Works with
any loop that implements add_reader (the default loop and uvloop).
"""
import asyncio
import os
import weakref

from . import _redlease as _c

_wakers = weakref.WeakKeyDictionary()   # loop -> _Waker


class _Waker:
    def __init__(self, loop):
        self.loop = loop
        if hasattr(os, "eventfd"):
            self.rfd = self.wfd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        else:  # Python 3.9
            self.rfd, self.wfd = os.pipe()
            os.set_blocking(self.rfd, False)
            os.set_blocking(self.wfd, False)
        self.waiters = set()
        _c._add_waker(self.wfd)
        loop.add_reader(self.rfd, self._ready)

    def _ready(self):
        try:
            os.read(self.rfd, 4096)
        except (BlockingIOError, InterruptedError):
            pass
        for w in list(self.waiters):
            w.check()

    def close(self):
        _c._remove_waker(self.wfd)
        try:
            self.loop.remove_reader(self.rfd)
        except Exception:
            pass
        os.close(self.rfd)
        if self.wfd != self.rfd:
            os.close(self.wfd)


def _waker(loop):
    w = _wakers.get(loop)
    if w is None:
        w = _wakers[loop] = _Waker(loop)
    return w


def _forget_after_fork():
    _wakers.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


class _Waiter:
    """Resolves a future when obj._poll(what) stops returning 0."""

    def __init__(self, obj, what, fut):
        self.obj = obj
        self.what = what
        self.fut = fut

    def check(self):
        if self.fut.done():
            return
        try:
            rc = self.obj._poll(self.what)
        except BaseException as e:  # a permanent error: raise it in the awaiting task
            self.fut.set_exception(e)
            return
        if rc:
            self.fut.set_result(rc)


async def wait_state(obj, what, timeout=None):
    """Wait until obj._poll(what) is non-zero: returns that value, or 0 on timeout."""
    rc = obj._poll(what)
    if rc:
        return rc
    loop = asyncio.get_running_loop()
    waker = _waker(loop)
    fut = loop.create_future()
    w = _Waiter(obj, what, fut)
    waker.waiters.add(w)
    try:
        w.check()     # the state may have changed before we registered
        if timeout is None:
            return await fut
        try:
            return await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            return obj._poll(what)
    finally:
        waker.waiters.discard(w)
