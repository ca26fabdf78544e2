"""DistributionNode: leader election on one Redis key."""
import logging
import signal
import threading

from . import _aio
from . import _dispatch
from . import _redlease as _c
from ._redlease import LeadershipLost

log = logging.getLogger("redlease")

_PHASE_NAMES = {
    _c.PHASE_IDLE: "stopped",
    _c.PHASE_RUNNING: "running",
    _c.PHASE_STOPPING: "stopping",
    _c.PHASE_STOPPED: "stopped",
}


class Lease:
    """The leadership of one term, as yielded by ``node.leadership()``."""

    __slots__ = ("_owner", "token")

    def __init__(self, owner, token):
        self._owner = owner
        self.token = token

    @property
    def valid(self):
        """True while the owner still leads in this same term (no I/O)."""
        return self._owner.token == self.token

    @property
    def remaining(self):
        """Seconds left of this term's local deadline (0.0 once it is over):
        code that blocks should not start what cannot finish in it."""
        left = self._owner.lease_remaining
        return left if self._owner.token == self.token else 0.0

    def check(self):
        """Raise LeadershipLost unless the lease is still valid."""
        if self._owner.token != self.token:
            raise LeadershipLost(
                "leadership of %r (token %d) was lost" % (self._owner.key, self.token))

    def __repr__(self):
        return "<redlease.Lease token=%d valid=%s>" % (self.token, self.valid)


class _Block:
    """A running ``with node.leadership(interrupt=True)`` block."""

    __slots__ = ("thread_id", "token", "sent", "reason", "main")

    def __init__(self, thread_id, token, main):
        self.thread_id = thread_id
        self.token = token
        self.sent = False
        self.reason = None
        self.main = main           # runs in the main thread: a signal wakes it


# A block in the main thread that sits in time.sleep() or a blocking socket
# call sees the LeadershipLost sent to it only when that call returns; a
# signal makes the call return (EINTR), its Python handler runs, and the
# pending exception is raised there.  Taken only if nobody else uses it.
_WAKE_SIG = getattr(signal, "SIGRTMIN", None)
if _WAKE_SIG is not None:
    _WAKE_SIG += 7
_wake_sig_ready = []


def _wake_handler(signum, frame):   # the pending LeadershipLost raises here
    pass


def _ensure_wake_signal():
    """Main thread only: install the no-op handler of the wake signal once,
    if the signal is unused.  True if it can be sent."""
    if _wake_sig_ready:
        return _wake_sig_ready[0]
    ok = False
    if _WAKE_SIG is not None:
        try:
            if signal.getsignal(_WAKE_SIG) in (signal.SIG_DFL, None):
                signal.signal(_WAKE_SIG, _wake_handler)
            ok = signal.getsignal(_WAKE_SIG) is _wake_handler
        except (ValueError, OSError, RuntimeError):
            ok = False
    _wake_sig_ready.append(ok)
    return ok


# The message of the cancellation that interrupts an async block after a
# loss, on Pythons without Task.uncancel() (3.10 and older): there it is how
# __aexit__ tells our cancellation from someone else's.
_LOSS_CANCEL_MSG = "redlease: leadership lost inside the block"


def _cancel_pending(task):
    """Python < 3.11: True if someone already asked ``task`` to cancel and it
    has not run since (3.11+ has Task.cancelling() and uncancel() instead).
    Reads the Task's private state (the same in the C and Python Task)."""
    if getattr(task, "_must_cancel", False):
        return True
    waiter = getattr(task, "_fut_waiter", None)
    return waiter is not None and waiter.cancelled()


class _AsyncBlock:
    """A running ``async with node.leadership(interrupt=True)`` block."""

    __slots__ = ("task", "loop", "token", "active", "fired", "outside")

    def __init__(self, task, loop, token):
        self.task = task
        self.loop = loop
        self.token = token
        self.active = True
        self.fired = False
        self.outside = False   # < 3.11: another cancel() followed ours

    def cancel(self):          # runs in the block's event loop
        if not self.active or self.fired:
            return
        task = self.task
        if hasattr(task, "uncancel"):          # 3.11+: cancellations are counted
            self.fired = True
            task.cancel()
            return
        # Python 3.10: no count.  A cancellation already on its way (from
        # outside) ends the block as CancelledError by itself: leave it.
        if _cancel_pending(task):
            return
        self.fired = True
        if getattr(task, "_fut_waiter", None) is not None:
            # Ours cancels the future the task waits on, which queues the
            # task's wake-up; a cancel() from outside before that wake-up
            # leaves no trace in the exception, only in _must_cancel.  A
            # probe queued just before the wake-up sees it.
            self.loop.call_soon(self._probe)
        # Otherwise a later cancel() replaces our message, which __aexit__ checks.
        task.cancel(_LOSS_CANCEL_MSG)

    def _probe(self):
        if getattr(self.task, "_must_cancel", False):
            self.outside = True


class _Leadership:
    """Context manager returned by DistributionNode.leadership() (sync and async)."""

    def __init__(self, node, timeout, interrupt):
        self._node = node
        self._timeout = timeout
        self._interrupt = interrupt
        self._started_here = False
        self._block = None

    def __enter__(self):
        node = self._node
        if node._phase != _c.PHASE_RUNNING:
            node.start()
            self._started_here = True
        try:
            lease = self._wait()
        except BaseException:
            if self._started_here:
                node.stop()
            raise
        if self._interrupt:
            main = threading.current_thread() is threading.main_thread() and _ensure_wake_signal()
            blk = _Block(threading.get_ident(), lease.token, main)
            with node._block_lock:
                node._blocks.append(blk)
            self._block = blk
            if not lease.valid:        # lost before the block was registered
                self._end_block()
                self._cleanup()
                raise LeadershipLost("leadership of %r was lost on entry" % (node.key,))
        return lease

    def _wait(self):
        node = self._node
        timeout = self._timeout
        while True:
            if not node.wait_for_leadership(timeout):
                raise TimeoutError("not elected leader of %r within %s s" % (node.key, timeout))
            token = node.token
            if token is not None:
                return Lease(node, token)

    def _end_block(self):
        blk = self._block
        if blk is None:
            return
        node = self._node
        with node._block_lock:
            if blk in node._blocks:
                node._blocks.remove(blk)
            if blk.sent:
                # Drop an interrupt that was sent but not yet raised.
                _c._set_async_exc(blk.thread_id, None)
        self._block = None

    def _cleanup(self):
        node = self._node
        if self._started_here:
            node.stop()
        elif node.is_leader:
            node.resign()

    def __exit__(self, exc_type, exc, tb):
        blk = self._block
        self._end_block()
        self._cleanup()
        if (blk is not None and blk.sent and exc_type is LeadershipLost
                and exc is not None and not exc.args):
            # The interrupt arrives as the bare class: say what was lost and why.
            raise LeadershipLost("leadership of %r (token %d) was lost inside the block: %s"
                                 % (self._node.key, blk.token, blk.reason or "lost")
                                 ).with_traceback(tb) from None
        return False

    # ---- async with ----

    async def __aenter__(self):
        import asyncio
        node = self._node
        if node._phase != _c.PHASE_RUNNING:
            node.start()
            self._started_here = True
        try:
            while True:
                if not await node.wait_for_leadership_async(self._timeout):
                    raise TimeoutError("not elected leader of %r within %s s" % (node.key, self._timeout))
                token = node.token
                if token is not None:
                    break
        except BaseException:
            if self._started_here:
                await node.stop_async()
            raise
        lease = Lease(node, token)
        if self._interrupt:
            blk = _AsyncBlock(asyncio.current_task(), asyncio.get_running_loop(), token)
            with node._block_lock:
                node._ablocks.append(blk)
            self._block = blk
            if not lease.valid:
                await self._aexit_cleanup()
                raise LeadershipLost("leadership of %r was lost on entry" % (node.key,))
        return lease

    async def _aexit_cleanup(self):
        node = self._node
        blk = self._block
        if blk is not None:
            blk.active = False
            with node._block_lock:
                if blk in node._ablocks:
                    node._ablocks.remove(blk)
            self._block = None
        if self._started_here:
            await node.stop_async()
        elif node.is_leader:
            await node.resign_async()
        return blk

    async def __aexit__(self, exc_type, exc, tb):
        import asyncio
        blk = await self._aexit_cleanup()
        if blk is not None and blk.fired and exc_type is asyncio.CancelledError:
            # Our cancellation turns into LeadershipLost (as asyncio.timeout
            # turns its own into TimeoutError) -- unless someone else cancelled
            # the task too: then the CancelledError goes on.
            if hasattr(blk.task, "uncancel"):
                if blk.task.uncancel() > 0:
                    return False
            elif blk.outside or not (exc is not None and exc.args == (_LOSS_CANCEL_MSG,)):
                # Python 3.10: another cancel() came after ours (seen by the
                # probe, or it replaced our message) before the task ran.
                return False
            raise LeadershipLost("leadership of %r (token %d) was lost inside the block"
                                 % (self._node.key, blk.token)) from exc
        return False


class DistributionNode(_c.LeaseBase):
    """Campaigns for a Redis key and holds it as a renewable lease.

    ``is_leader`` is a memory read: it is True only while the lease's local
    deadline (send time of the last successful acquire/renew + ttl - drift)
    has not passed, so a node that cannot renew steps down on its own.
    """

    def __init__(self, url, key, *, node_id=None, ttl=10.0, renew_interval=None,
                 retry_interval=None, connect_timeout=1.0, command_timeout=1.0,
                 on_elected=None, on_revoked=None, on_leader_change=None, min_replicas=0):
        for name, cb in (("on_elected", on_elected), ("on_revoked", on_revoked),
                         ("on_leader_change", on_leader_change)):
            if cb is not None and not callable(cb):
                raise TypeError("%s must be callable or None, not %s" % (name, type(cb).__name__))
        super().__init__(url, key, node_id=node_id, ttl=ttl, renew_interval=renew_interval,
                         retry_interval=retry_interval, connect_timeout=connect_timeout,
                         command_timeout=command_timeout, min_replicas=min_replicas)
        self.on_elected = on_elected
        self.on_revoked = on_revoked
        self.on_leader_change = on_leader_change
        self._block_lock = threading.Lock()
        self._blocks = []
        self._ablocks = []

    def start(self):
        """Begin campaigning in the background; returns at once."""
        _dispatch.register(self)
        super().start()

    def leadership(self, timeout=None, *, interrupt=True):
        """Context manager: lead for the duration of a ``with`` block.

        Starts the node if needed, waits until it leads (TimeoutError after
        ``timeout`` seconds) and yields a Lease.  With ``interrupt=True``, a
        loss of leadership raises LeadershipLost in the thread that entered
        the block; otherwise the block only sees ``lease.valid`` go False.
        On exit the node resigns, and stops if this block started it.
        """
        return _Leadership(self, timeout, interrupt)

    def run_as_leader(self, work, *args, **kwargs):
        """Run ``work(lease, *args, **kwargs)`` each time this node leads, until
        it returns; return its value.

        Starts the node if needed and waits to lead.  If leadership is lost
        while ``work`` runs (``LeadershipLost``), it campaigns again and runs
        ``work`` again in the next term.  If ``work`` raises anything else, the
        node resigns at once (a healthy peer takes over) and the exception
        propagates.  When it returns or raises, a node it started is stopped
        (its lease released), so a dead worker never keeps the key."""
        started_here = self._phase != _c.PHASE_RUNNING
        if started_here:
            self.start()
        try:
            while True:
                try:
                    with self.leadership() as lease:
                        return work(lease, *args, **kwargs)
                except LeadershipLost:
                    continue
        finally:
            if started_here:
                self.stop()

    async def run_as_leader_async(self, work, *args, **kwargs):
        """``await work(lease, *args, **kwargs)`` each time this node leads:
        the asyncio form of run_as_leader (same rules).  Cancelling the task
        that runs it stops the node it started, releasing the lease."""
        started_here = self._phase != _c.PHASE_RUNNING
        if started_here:
            self.start()
        try:
            while True:
                try:
                    async with self.leadership() as lease:
                        return await work(lease, *args, **kwargs)
                except LeadershipLost:
                    continue
        finally:
            if started_here:
                await self.stop_async()

    async def wait_for_leadership_async(self, timeout=None):
        """Like wait_for_leadership, without blocking the event loop."""
        if timeout is not None and not timeout >= 0:
            raise ValueError("timeout must be None or >= 0, got %r" % (timeout,))
        return await _aio.wait_state(self, _c.WAIT_LEADER, timeout) == 1

    async def stop_async(self):
        """Like stop(), without blocking the event loop."""
        self._stop_nowait()
        await _aio.wait_state(self, _c.WAIT_STOPPED)

    async def resign_async(self):
        """Like resign(), without blocking the event loop."""
        if self.is_leader:
            self._resign_nowait()
            await _aio.wait_state(self, _c.WAIT_RELEASED)

    async def __aenter__(self):
        self.start()
        return self

    async def __aexit__(self, exc_type, exc, tb):
        await self.stop_async()
        return False

    def stats(self):
        """Counters of this node's lease: acquisitions, renewals, ..."""
        info = self._info()
        info.pop("phase", None)
        return info

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        self.stop()
        return False

    def __repr__(self):
        try:
            phase = self._phase
        except Exception:
            return "<%s (not initialised)>" % type(self).__name__
        state = "leader" if self.is_leader else (
            "follower" if phase == _c.PHASE_RUNNING else _PHASE_NAMES.get(phase, "?"))
        return "<%s key=%r node_id=%r state=%s url=%r>" % (
            type(self).__name__, self.key, self.node_id, state, self.url)

    # ---- events from the dispatcher thread ----

    def _on_event(self, kind, token, text):
        if kind == _c.EV_ELECTED:
            log.info("elected: key=%r node=%s token=%d", self.key, self.node_id, token)
            self._call(self.on_elected, token)
        elif kind == _c.EV_REVOKED:
            log.info("leadership ended: key=%r node=%s token=%d reason=%s",
                     self.key, self.node_id, token, text)
            self._interrupt_blocks(token, text)
            self._call(self.on_revoked, text)
        elif kind == _c.EV_LEADER:
            self._call(self.on_leader_change, text)
        elif kind == _c.EV_ERROR:
            log.warning("key=%r node=%s: %s", self.key, self.node_id, text)
        elif kind == _c.EV_RECOVERED:
            log.info("key=%r node=%s: recovered", self.key, self.node_id)

    def _interrupt_blocks(self, token, reason=None):
        # A loss event may stand for several terms that ended while the
        # dispatcher was busy (it carries the latest one's token): every
        # block of a term up to that one is over.
        with self._block_lock:
            for blk in self._blocks:
                if blk.token <= token and not blk.sent:
                    blk.sent = True
                    blk.reason = reason
                    _c._set_async_exc(blk.thread_id, LeadershipLost)
                    if blk.main:
                        try:
                            signal.pthread_kill(blk.thread_id, _WAKE_SIG)
                        except (OSError, ValueError):
                            pass
            for ablk in self._ablocks:
                if ablk.token <= token:
                    try:
                        ablk.loop.call_soon_threadsafe(ablk.cancel)
                    except RuntimeError:   # the loop is closed
                        pass

    def _call(self, cb, arg):
        if cb is None:
            return
        try:
            cb(arg)
        except Exception:
            log.exception("callback %r of key=%r node=%s raised", cb, self.key, self.node_id)
