"""Lock: a distributed mutex on the same engine as DistributionNode."""
import collections
import math
import os
import threading
import time

from . import _aio
from . import _dispatch
from . import _redlease as _c
from ._redlease import ConnectionError as _ConnectionError
from ._redlease import LockNotOwnedError, RedleaseError

_MISSING = object()
_FORK_MSG = ("this object was created before os.fork() and belongs to the parent process; "
             "create a new one in the child")
_CONN_PREFIXES = ("cannot connect", "cannot resolve host", "connection lost", "connection closed", "no reply from")

# Waiters of one process are served in arrival order per (url, key): only the
# head of a key's queue campaigns in Redis, the others wait here.  Without it
# the thread that just released re-acquires before its peers in the same
# process even hear of the release.  _qmu also guards every Lock's _owner and
# _busy (short sections, never held across a wait).
_qmu = threading.Lock()
_queues = {}       # (url, key bytes) -> deque of _Ticket


def _after_fork_in_child():
    global _qmu, _queues
    _qmu = threading.Lock()
    _queues = {}


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class _Ticket:
    """One waiter in a key's queue: woken (a hint to look again) when the
    head or the holder changes."""
    __slots__ = ("ev", "loop", "fut")

    def __init__(self, loop=None):
        self.loop = loop
        self.ev = None if loop is not None else threading.Event()
        self.fut = None

    def wake(self):
        if self.loop is None:
            self.ev.set()
            return
        try:
            self.loop.call_soon_threadsafe(self._resolve)
        except RuntimeError:   # the loop is closed: its waiter is gone too
            pass

    def _resolve(self):
        fut = self.fut
        if fut is not None and not fut.done():
            fut.set_result(None)


def _kick_locked(q):
    if q:
        q[0].wake()


def _timeout_arg(timeout):
    """None, -1 and inf: no limit (returned as None); else a number >= 0."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError("timeout must be None or a number of seconds, not %s"
                        % type(timeout).__name__)
    if timeout == -1 or timeout == math.inf:
        return None
    if math.isnan(timeout) or timeout < 0:
        raise ValueError("timeout value must be a non-negative number, -1 or None, got %r"
                         % (timeout,))
    return float(timeout)


class _Hidden:
    """A LeaseBase member that a Lock does not have (start/stop/resign...)."""

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, obj, objtype=None):
        raise AttributeError("%r object has no attribute %r" % (
            (objtype or type(obj)).__name__, self.name))


class _Hold:
    __slots__ = ("lock",)

    def __init__(self, lock):
        self.lock = lock

    def locked(self):
        return self.lock._owner is not None


class Lock(_c.LeaseBase):
    """A mutex held as a renewable lease on a Redis key.

    The thread that acquired the lock owns it: release() from another thread
    raises LockNotOwnedError and changes nothing.  Two Lock objects for the
    same key contend like two processes; waiters of one process are served
    in arrival order.  ``owned`` is a memory read that follows the same
    deadline rule as ``DistributionNode.is_leader``.
    """

    start = _Hidden()
    stop = _Hidden()
    resign = _Hidden()
    wait_for_leadership = _Hidden()
    is_leader = _Hidden()

    def __init__(self, url, key, *, ttl=10.0, auto_renew=True, node_id=None,
                 connect_timeout=1.0, command_timeout=1.0, min_replicas=0):
        super().__init__(url, key, node_id=node_id, ttl=ttl, connect_timeout=connect_timeout,
                         command_timeout=command_timeout, _mode=_c.MODE_LOCK,
                         _auto_renew=bool(auto_renew), min_replicas=min_replicas)
        self.auto_renew = bool(auto_renew)
        # The effective ones: the URL's socket_connect_timeout/socket_timeout win.
        self._connect_timeout = self.connect_timeout
        self._cmd_timeout = self.command_timeout
        self._qkey = (self.url, key.encode("utf-8") if isinstance(key, str) else bytes(key))
        self._owner = None     # ident of the thread that holds (or is acquiring) it
        self._busy = False     # an acquire or release of this object is under way
        _dispatch.register(self)      # losses and errors get logged

    owned = _c.LeaseBase.is_leader

    def __dir__(self):
        hidden = {"start", "stop", "resign", "wait_for_leadership", "is_leader"}
        return [n for n in super().__dir__() if n not in hidden]

    @property
    def _local(self):
        """The object's own hold, even after its lease ended (for tests and
        tools that look at it: ``._local.locked()``)."""
        return _Hold(self)

    # ---- state of the object (under _qmu) ----

    def _check_fresh(self):
        if self._stale:
            raise RedleaseError(_FORK_MSG)

    def _free_locked(self):
        """Nobody holds the object: never taken, released, or the holder's
        lease ended (expired or lost) so the object is free again."""
        return self._owner is None or (not self._busy and not self.owned)

    def _take_locked(self, me):
        self._owner = me
        self._busy = True

    def _done(self, ok):
        """An acquire attempt ended: keep the object (ok) or give it up."""
        with _qmu:
            self._busy = False
            if not ok:
                self._owner = None
            _kick_locked(_queues.get(self._qkey))

    def _enqueue(self, ticket):
        with _qmu:
            q = _queues.get(self._qkey)
            if q is None:
                q = _queues[self._qkey] = collections.deque()
            q.append(ticket)

    def _leave(self, ticket):
        with _qmu:
            q = _queues.get(self._qkey)
            if q is None:
                return
            head = q and q[0] is ticket
            try:
                q.remove(ticket)
            except ValueError:
                pass
            if not q:
                del _queues[self._qkey]
            elif head:
                q[0].wake()

    def _try_head_locked(self, ticket, me):
        q = _queues.get(self._qkey)
        if q and q[0] is ticket and self._free_locked():
            self._take_locked(me)
            return True
        return False

    def _poll_interval(self, remaining):
        """How long a queued waiter sleeps before looking again: until woken,
        its timeout, or (object held by another thread) that holder's lease
        deadline, after which the object is free."""
        wait = 1.0 if remaining is None else remaining
        if self._owner is not None and not self._busy:
            wait = min(wait, self.lease_remaining + 0.002)
        return max(wait, 0.0)

    def _unreachable(self, start):
        if time.monotonic() - start < self._connect_timeout or self.owned:
            return None
        err = self.last_error
        if err and err.startswith(_CONN_PREFIXES):
            return err
        return None

    # ---- acquire / release ----

    def acquire(self, blocking=True, timeout=-1):
        """Acquire the lock; same arguments and rules as threading.Lock.acquire
        (and timeout=None means no limit).

        Waits with the GIL released; wakes on the holder's release notice
        and, if the holder vanished, when its key expires.  A non-blocking
        attempt takes at most connect_timeout + command_timeout; a blocking
        one without a timeout raises ConnectionError once no server could be
        reached for connect_timeout.
        """
        if not blocking and timeout is not None and timeout != -1:
            raise ValueError("can't specify a timeout for a non-blocking call")
        limit = _timeout_arg(timeout)
        self._check_fresh()
        me = threading.get_ident()
        if not blocking or limit == 0:
            with _qmu:
                if not self._free_locked():
                    return False
                self._take_locked(me)
            return self._attempt(0)
        start = time.monotonic()
        deadline = None if limit is None else start + limit
        ticket = _Ticket()
        self._enqueue(ticket)
        try:
            while True:
                ticket.ev.clear()
                with _qmu:
                    if self._try_head_locked(ticket, me):
                        break
                    remaining = None if deadline is None else deadline - time.monotonic()
                    wait = self._poll_interval(remaining)
                if remaining is not None and remaining <= 0:
                    return False
                ticket.ev.wait(wait)
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            return self._attempt(remaining)
        finally:
            self._leave(ticket)

    def _attempt(self, remaining):
        try:
            ok = self._lock_acquire(remaining)
        except BaseException:
            self._done(False)
            raise
        self._done(ok)
        return ok

    def _begin_release(self):
        self._check_fresh()
        me = threading.get_ident()
        with _qmu:
            if self._owner != me or self._busy:
                if self._owner is None:
                    why = "this Lock object does not hold it"
                else:
                    why = "it is held (or being acquired) by another thread of this Lock object"
                raise LockNotOwnedError("release of %r: %s" % (self.key, why))
            self._busy = True
        return self.owned

    def _end_release(self):
        with _qmu:
            self._owner = None
            self._busy = False
            _kick_locked(_queues.get(self._qkey))

    def _judge_release(self, answer, still_owned):
        # 1: Redis held this term and deleted it.  2: Redis no longer held it.
        # 0 (nothing sent) / 3 (no answer): only the local deadline can tell.
        # A lease past its local deadline was lost whatever Redis says (the
        # safety margin for clock drift is gone).
        if answer == 1 and still_owned:
            return
        if answer == 2:
            raise LockNotOwnedError(
                "release of %r: Redis no longer held this lock's term (it expired or was taken "
                "by another owner), so the critical section may not have been exclusive"
                % (self.key,))
        if not still_owned:
            raise LockNotOwnedError(
                "release of %r: the lock's lease was lost before release (it expired or was "
                "taken by another owner), so the critical section may not have been exclusive"
                % (self.key,))
        _dispatch.log.warning("release of %r: no answer from Redis; the key expires by itself "
                              "within ttl", self.key)

    def release(self):
        """Release the lock.  Raises LockNotOwnedError if this thread does not
        hold it, or if Redis no longer held this term (it expired or was
        taken)."""
        still_owned = self._begin_release()
        try:
            answer = self._lock_release(True)
        finally:
            self._end_release()
        self._judge_release(answer, still_owned)

    # ---- asyncio ----

    async def _wait_poll(self, what, timeout=None):
        """Wait until _poll(what) is non-zero (its value) or timeout (0).
        No asyncio.wait_for: an outside cancel() always raises here."""
        import asyncio
        rc = self._poll(what)
        if rc:
            return rc
        loop = asyncio.get_running_loop()
        waker = _aio._waker(loop)
        fut = loop.create_future()
        w = _aio._Waiter(self, what, fut)
        waker.waiters.add(w)
        handle = None
        try:
            w.check()
            if timeout is not None:
                handle = loop.call_later(timeout, lambda: fut.done() or fut.set_result(0))
            rc = await fut
            return rc if rc else self._poll(what)
        finally:
            waker.waiters.discard(w)
            if handle is not None:
                handle.cancel()

    async def _attempt_async(self, remaining):
        once = remaining == 0
        try:
            if self._phase in (_c.PHASE_RUNNING, _c.PHASE_STOPPING):
                self._stop_nowait()           # an ended lease: start afresh
                await self._wait_poll(_c.WAIT_STOPPED)
            self._lock_begin(once)
            start = time.monotonic()
            if once:
                bound = self._connect_timeout + self._cmd_timeout + 0.05
                rc = await self._wait_poll(_c.WAIT_LOCK, bound)
                if rc == 0:
                    raise _ConnectionError("no answer from Redis within %.3f s (connect_timeout"
                                           " + command_timeout)" % bound)
            elif remaining is None:
                while True:
                    rc = await self._wait_poll(_c.WAIT_LOCK, 0.25)
                    if rc:
                        break
                    err = self._unreachable(start)
                    if err:
                        raise _ConnectionError(err)
            else:
                rc = await self._wait_poll(_c.WAIT_LOCK, remaining)
            if rc == 1:
                self._done(True)
                return True
            self._stop_nowait()
            await self._wait_poll(_c.WAIT_STOPPED)
        except BaseException:
            # Also a grant that arrived together with a cancellation: stopping
            # releases it.
            self._stop_nowait()
            self._done(False)
            raise
        self._done(False)
        return False

    async def acquire_async(self, timeout=None):
        """Acquire without blocking the event loop; False after ``timeout`` s
        (None or -1: no limit, 0: one attempt).  An outside cancel() always
        raises CancelledError, and a grant that came with it is released."""
        import asyncio
        limit = _timeout_arg(timeout)
        self._check_fresh()
        me = threading.get_ident()
        if limit == 0:
            with _qmu:
                if not self._free_locked():
                    return False
                self._take_locked(me)
            return await self._attempt_async(0)
        loop = asyncio.get_running_loop()
        start = time.monotonic()
        deadline = None if limit is None else start + limit
        ticket = _Ticket(loop)
        self._enqueue(ticket)
        try:
            while True:
                fut = ticket.fut = loop.create_future()
                with _qmu:
                    if self._try_head_locked(ticket, me):
                        break
                    remaining = None if deadline is None else deadline - time.monotonic()
                    wait = self._poll_interval(remaining)
                if remaining is not None and remaining <= 0:
                    return False
                handle = loop.call_later(wait, ticket._resolve)
                try:
                    await fut
                finally:
                    handle.cancel()
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            return await self._attempt_async(remaining)
        finally:
            ticket.fut = None
            self._leave(ticket)

    async def release_async(self):
        """Like release(), without blocking the event loop."""
        still_owned = self._begin_release()
        try:
            self._lock_release(False)
            await self._wait_poll(_c.WAIT_STOPPED)
            answer = self._rel_answer
        finally:
            self._end_release()
        self._judge_release(answer, still_owned)

    async def __aenter__(self):
        await self.acquire_async()
        return self

    async def __aexit__(self, exc_type, exc, tb):
        await self.release_async()
        return False

    # ---- the key in Redis ----

    def locked(self, timeout=_MISSING):
        """True if anyone holds the lock (one round trip to Redis)."""
        return self.status(timeout)[0] is not None

    def status(self, timeout=_MISSING):
        """(holder id or None, milliseconds left on the key, last fencing token or None)."""
        self._check_fresh()
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
