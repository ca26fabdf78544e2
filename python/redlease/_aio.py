"""asyncio support without a thread per waiter.

Each event loop gets one eventfd (a pipe before Python 3.10) registered with
the engine, which writes to it whenever a lease's published state changes;
the loop's reader callback re-checks the waiters of that loop.  Works with
any loop that implements add_reader (the default loop and uvloop).
"""
import os
import weakref

from . import _redlease as _c

_wakers = weakref.WeakKeyDictionary()   # loop -> _Waker


def _close_fds(rfd, wfd):
    for fd in {rfd, wfd}:
        try:
            os.close(fd)
        except OSError:
            pass


def _release_fds(rfd, wfd):
    _c._remove_waker(wfd)
    _close_fds(rfd, wfd)


class _Waker:
    def __init__(self, loop):
        self.loop_ref = weakref.ref(loop)     # the loop owns us, not the reverse
        if hasattr(os, "eventfd"):
            self.rfd = self.wfd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        else:  # Python 3.9
            self.rfd, self.wfd = os.pipe()
            os.set_blocking(self.rfd, False)
            os.set_blocking(self.wfd, False)
        self.waiters = set()
        try:
            _c._add_waker(self.wfd)
        except BaseException:
            _close_fds(self.rfd, self.wfd)
            raise
        try:
            loop.add_reader(self.rfd, self._ready)
        except BaseException:
            _release_fds(self.rfd, self.wfd)
            raise
        # When the loop goes away, so do our fd and its registration.
        self._finalizer = weakref.finalize(loop, _release_fds, self.rfd, self.wfd)

    def _ready(self):
        try:
            os.read(self.rfd, 4096)
        except (BlockingIOError, InterruptedError):
            pass
        for w in list(self.waiters):
            w.check()

    def close(self):
        loop = self.loop_ref()
        if loop is not None and not loop.is_closed():
            try:
                loop.remove_reader(self.rfd)
            except Exception:
                pass
        self._finalizer()     # runs _release_fds once


def _waker(loop):
    w = _wakers.get(loop)
    if w is None:
        # Closed loops that are still referenced somewhere keep their entry:
        # drop them now, so that their fds are not kept (and written to).
        for old_loop, old in list(_wakers.items()):
            if old_loop.is_closed():
                old.close()
                _wakers.pop(old_loop, None)
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
    import asyncio
    rc = obj._poll(what)
    if rc:
        return rc
    loop = asyncio.get_running_loop()
    waker = _waker(loop)
    fut = loop.create_future()
    w = _Waiter(obj, what, fut)
    waker.waiters.add(w)
    timer = None
    try:
        w.check()     # the state may have changed before we registered
        if timeout is not None and not fut.done():
            # Not asyncio.wait_for: on 3.11 it can return the result and
            # swallow a cancel() that lands in the same loop turn.  A timer
            # that resolves the future with 0 leaves cancellation to the task.
            timer = loop.call_later(timeout, lambda: fut.done() or fut.set_result(0))
        rc = await fut
        if rc == 0:                   # the time is up: one last look
            rc = obj._poll(what)
        return rc
    finally:
        if timer is not None:
            timer.cancel()
        waker.waiters.discard(w)
