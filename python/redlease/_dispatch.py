"""The dispatcher: one Python thread that takes events from the C engine's
queue and runs callbacks and logging, so a slow callback never delays a
renewal (the engine thread never calls into Python)."""
import atexit
import logging
import os
import threading
import weakref

from . import _redlease as _c

log = logging.getLogger("redlease")

_lock = threading.Lock()
_registry = {}           # lease id -> weakref to the Python object
_thread = None
_stopping = False


def register(obj):
    """Route the events of obj's lease to obj._on_event (weakly held)."""
    lease_id = obj._id
    with _lock:
        if lease_id not in _registry:
            _registry[lease_id] = weakref.ref(obj, lambda _r, i=lease_id: _registry.pop(i, None))
        _ensure_thread()


def _ensure_thread():
    global _thread
    if _stopping or (_thread is not None and _thread.is_alive()):
        return
    _thread = threading.Thread(target=_run, name="redlease-dispatcher", daemon=True)
    _thread.start()


def _run():
    while True:
        ev = _c._next_event(0.2)
        if ev is None:
            if _stopping:
                return
            continue
        lease_id, kind, token, text = ev
        ref = _registry.get(lease_id)
        obj = ref() if ref is not None else None
        if obj is None:
            continue
        try:
            obj._on_event(kind, token, text)
        except Exception:  # never let one bad event stop the dispatcher
            log.exception("redlease: error while handling an event")
        del obj


def engine_stats():
    """Engine-wide counters: threads (the engine's and the dispatcher's),
    connections opened, leases active, commands sent, reconnects, endpoints."""
    stats = _c.engine_stats()
    t = _thread
    stats["threads"] += 1 if (t is not None and t.is_alive()) else 0
    return stats


def _shutdown():
    """At interpreter exit: release every held lease, stop the engine thread,
    deliver the last events, then stop the dispatcher."""
    global _stopping
    try:
        _c._shutdown(3.0)
    finally:
        _stopping = True
        t = _thread
        if t is not None and t.is_alive() and t is not threading.current_thread():
            t.join(1.0)


def _after_fork_in_child():
    # Only the forking thread exists in the child: the dispatcher is gone and
    # the parent's leases are stale (the C side marks them).
    global _thread, _lock, _stopping
    _lock = threading.Lock()
    _thread = None
    _stopping = False
    _registry.clear()


atexit.register(_shutdown)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
