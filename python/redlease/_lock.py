"""Lock: a distributed mutex on the same engine as DistributionNode."""
import threading
import time

from . import _aio
from . import _dispatch
from . import _redlease as _c
from ._redlease import LockNotOwnedError

_MISSING = object()


class Lock(_c.LeaseBase):
    """A mutex held as a renewable lease on a Redis key.

    Ownership belongs to the object, not to a thread (as with threading.Lock):
    any thread may release it.  Two Lock objects for the same key contend
    like two processes.  ``owned`` is a memory read that follows the same
    deadline rule as ``DistributionNode.is_leader``.
    """

    def __init__(self, url, key, *, ttl=10.0, auto_renew=True, node_id=None,
                 connect_timeout=1.0, command_timeout=1.0):
        super().__init__(url, key, node_id=node_id, ttl=ttl, connect_timeout=connect_timeout,
                         command_timeout=command_timeout, _mode=_c.MODE_LOCK,
                         _auto_renew=bool(auto_renew))
        self.auto_renew = bool(auto_renew)
        # Serialises acquirers of this one object, with threading.Lock's own
        # blocking, timeout and Ctrl-C behaviour; Redis serialises the rest.
        self._local = threading.Lock()
        _dispatch.register(self)      # losses and errors get logged

    owned = _c.LeaseBase.is_leader

    def acquire(self, blocking=True, timeout=-1):
        """Acquire the lock; same arguments and rules as threading.Lock.acquire.

        Waits with the GIL released; wakes on the holder's release notice
        and, if the holder vanished, when its key expires.
        """
        if not blocking and timeout != -1:
            raise ValueError("can't specify a timeout for a non-blocking call")
        if timeout < 0 and timeout != -1:
            raise ValueError("timeout value must be a non-negative number")
        start = time.monotonic()
        if not blocking:
            got = self._local.acquire(False)
        elif timeout == -1:
            got = self._local.acquire()
        else:
            got = self._local.acquire(True, timeout)
        if not got:
            return False
        try:
            if not blocking:
                remote = 0
            elif timeout == -1:
                remote = None
            else:
                remote = max(0.0, timeout - (time.monotonic() - start))
            ok = self._lock_acquire(remote)
        except BaseException:
            self._local.release()
            raise
        if not ok:
            self._local.release()
        return ok

    def release(self):
        """Release the lock.  Raises LockNotOwnedError if this object does not
        hold it, including when its lease was lost (expired or taken)."""
        if not self._local.locked():
            raise LockNotOwnedError("release of %r: this Lock object does not hold it" % (self.key,))
        still_owned = self.owned
        try:
            self.stop()
        finally:
            try:
                self._local.release()
            except RuntimeError:   # released by another thread meanwhile
                raise LockNotOwnedError("release of %r: already released" % (self.key,)) from None
        if not still_owned:
            raise LockNotOwnedError(
                "release of %r: the lock's lease was lost before release (it expired or was "
                "taken by another owner), so the critical section may not have been exclusive"
                % (self.key,))

    async def acquire_async(self, timeout=None):
        """Acquire without blocking the event loop; False after ``timeout`` s
        (None: no limit, 0: one attempt)."""
        if timeout is not None and not timeout >= 0:
            raise ValueError("timeout must be None or >= 0, got %r" % (timeout,))
        import asyncio
        start = time.monotonic()
        delay = 0.001
        # Contention on this very object (several tasks or threads sharing it)
        # is rare; it is polled.  Contention across objects and processes is
        # woken by the engine.
        while not self._local.acquire(False):
            if timeout is not None and time.monotonic() - start >= timeout:
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.02)
        try:
            remaining = None if timeout is None else max(0.0, timeout - (time.monotonic() - start))
            once = remaining == 0
            self._lock_begin(once)
            rc = await _aio.wait_state(self, _c.WAIT_LOCK, None if once else remaining)
            if rc == 1:
                return True
            self._stop_nowait()
            await _aio.wait_state(self, _c.WAIT_STOPPED)
        except BaseException:
            self._stop_nowait()
            self._local.release()
            raise
        self._local.release()
        return False

    async def release_async(self):
        """Like release(), without blocking the event loop."""
        if not self._local.locked():
            raise LockNotOwnedError("release of %r: this Lock object does not hold it" % (self.key,))
        still_owned = self.owned
        try:
            self._stop_nowait()
            await _aio.wait_state(self, _c.WAIT_STOPPED)
        finally:
            try:
                self._local.release()
            except RuntimeError:
                raise LockNotOwnedError("release of %r: already released" % (self.key,)) from None
        if not still_owned:
            raise LockNotOwnedError("release of %r: the lock's lease was lost before release"
                                    % (self.key,))

    async def __aenter__(self):
        await self.acquire_async()
        return self

    async def __aexit__(self, exc_type, exc, tb):
        await self.release_async()
        return False

    def locked(self, timeout=_MISSING):
        """True if anyone holds the lock (one round trip to Redis)."""
        return self.status(timeout)[0] is not None

    def status(self, timeout=_MISSING):
        """(holder id or None, milliseconds left on the key, last fencing token or None)."""
        if timeout is _MISSING:
            timeout = self._default_query_timeout()
        return self._query(timeout)

    def _default_query_timeout(self):
        return 5.0

    def stats(self):
        """Counters of this lock's lease: acquisitions, renewals, ..."""
        info = self._info()
        info.pop("phase", None)
        return info

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, exc_type, exc, tb):
        self.release()
        return False

    def __repr__(self):
        try:
            owned = self.owned
            return "<%s key=%r node_id=%r owned=%s url=%r>" % (
                type(self).__name__, self.key, self.node_id, owned, self.url)
        except Exception:
            return "<%s (not initialised)>" % type(self).__name__

    def _on_event(self, kind, token, text):
        log = _dispatch.log
        if kind == _c.EV_ELECTED:
            log.info("lock acquired: key=%r node=%s token=%d", self.key, self.node_id, token)
        elif kind == _c.EV_REVOKED:
            if text not in ("stopped", "resigned"):
                (log.warning if self.auto_renew else log.info)("lock lease lost: key=%r node=%s token=%d reason=%s",
                            self.key, self.node_id, token, text)
        elif kind == _c.EV_ERROR:
            log.warning("key=%r node=%s: %s", self.key, self.node_id, text)
