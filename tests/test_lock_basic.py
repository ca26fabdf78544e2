"""redlease.Lock in one process: acquire/release rules, threading.Lock
timeout semantics, ownership by the object, lease loss, locked()/status(),
bad input.

Everything runs against a real redis-server; waits are bounded and only
very generous upper bounds on durations are asserted.
"""
from __future__ import annotations

import math
import pickle
import threading
import time

import pytest

from helpers.lock_procs import AcquireThread, make_lock  # noqa: F401 - fixture
from helpers.redis_server import free_port
from helpers.waiting import boottime, run_bounded, stays_true, wait_until
from helpers.terms import term_of


class OwnerThread(AcquireThread):
    """AcquireThread that stays alive as the owner: ``release()`` makes the
    thread that acquired release (a Lock belongs to its acquiring thread)."""

    def __init__(self, lock, **kwargs):
        super().__init__(lock, **kwargs)
        self._go = threading.Event()
        self._released = threading.Event()
        self.release_error = None

    def run(self):
        super().run()
        if self.result:
            self._go.wait(120)
            try:
                self.lock.release()
            except BaseException as exc:  # noqa: BLE001 - reported to the test
                self.release_error = exc
        self._released.set()

    def outcome(self, timeout: float):
        assert self._acquired_within(timeout), f"acquire({self.kwargs}) did not return within {timeout}s"
        if self.error is not None:
            raise AssertionError(f"acquire raised {self.error!r}") from self.error
        return self.result

    def _acquired_within(self, timeout):
        deadline = time.monotonic() + timeout
        while self.t_done is None and self.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.t_done is not None

    def release(self, timeout: float = 30):
        self._go.set()
        self.join(timeout)
        assert not self.is_alive(), "release() did not return"
        if self.release_error is not None:
            raise self.release_error


# ---------------------------------------------------------------------------
# basics
# ---------------------------------------------------------------------------
def test_acquire_release_round_trip(rl, redis_server, make_lock, key):
    lock = make_lock(redis_server.url(), key, ttl=2.0)
    assert lock.owned is False and lock.token is None
    assert lock.acquire() is True
    assert lock.owned is True
    assert isinstance(lock.token, int)
    assert term_of(redis_server.cmd("GET", key)) == lock.node_id.encode()
    assert 0.0 < lock.lease_remaining <= 2.0
    assert lock.stats()["acquisitions"] == 1
    lock.release()
    assert lock.owned is False
    assert lock.token is None
    assert lock.lease_remaining == 0.0
    assert redis_server.cmd("EXISTS", key) == 0


def test_attributes_and_stats(rl, redis_server, make_lock, key):
    lock = make_lock(redis_server.url(), key, ttl=1.5, node_id="attr-node")
    assert lock.key == key
    assert lock.ttl == 1.5
    assert lock.node_id == "attr-node"
    bkey = key.encode() + b":bytes"
    assert make_lock(redis_server.url(), bkey, ttl=1.0).key == bkey
    st = lock.stats()
    for name in ("acquisitions", "renewals", "renew_failures", "losses", "last_renew_rtt_ms"):
        assert name in st, st
    assert st["acquisitions"] == 0 and st["losses"] == 0
    with lock:
        assert term_of(redis_server.cmd("GET", key)) == b"attr-node"
    assert lock.stats()["acquisitions"] == 1


def test_context_manager_returns_the_lock_and_releases(rl, redis_server, make_lock, key):
    lock = make_lock(redis_server.url(), key, ttl=2.0)
    with lock as entered:
        assert entered is lock
        assert lock.owned
    assert not lock.owned
    assert redis_server.cmd("EXISTS", key) == 0
    with pytest.raises(ZeroDivisionError):
        with lock:
            assert lock.owned
            1 / 0  # noqa: B018
    assert not lock.owned
    assert redis_server.cmd("EXISTS", key) == 0


def test_tokens_strictly_increase_across_acquisitions(rl, redis_server, make_lock, key):
    a = make_lock(redis_server.url(), key, ttl=2.0)
    b = make_lock(redis_server.url(), key, ttl=2.0)
    tokens = []
    for i in range(6):
        lock = a if i % 2 == 0 else b
        assert lock.acquire(timeout=10)
        tokens.append(lock.token)
        assert lock.status()[2] == lock.token
        lock.release()
    assert all(isinstance(t, int) for t in tokens)
    assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens), tokens


def test_auto_renew_keeps_the_lease_beyond_ttl(rl, redis_server, make_lock, key):
    lock = make_lock(redis_server.url(), key, ttl=1.0)
    assert lock.acquire(timeout=10)
    tok = lock.token
    assert stays_true(lambda: lock.owned and lock.token == tok, 2.2, interval=0.02), \
        "an auto-renewed lock lost its lease while held"
    assert term_of(redis_server.cmd("GET", key)) == lock.node_id.encode()
    assert lock.stats()["renewals"] >= 1
    lock.release()
    assert redis_server.cmd("EXISTS", key) == 0


def test_repr_has_no_password(rl, redis_factory, make_lock, key):
    secret = "s3cret-pw-xyz"
    srv = redis_factory(password=secret)
    lock = make_lock(srv.url(), key, ttl=1.0)
    assert lock.acquire(timeout=10)
    text = repr(lock)
    assert secret not in text
    assert lock.node_id in text
    lock.release()
    assert secret not in repr(lock)


# ---------------------------------------------------------------------------
# locked() / status()
# ---------------------------------------------------------------------------
def test_locked_and_status_seen_from_another_object(rl, redis_server, make_lock, key):
    holder = make_lock(redis_server.url(), key, ttl=2.0, node_id="holder-node")
    other = make_lock(redis_server.url(), key, ttl=2.0)
    assert other.locked() is False
    who, pttl, last = other.status()
    assert who is None and pttl <= 0
    assert holder.acquire(timeout=10)
    assert other.locked() is True
    assert holder.locked() is True
    who, pttl, last = other.status()
    assert who == holder.node_id == "holder-node"
    assert 0 < pttl <= 2000
    assert last == holder.token
    tok = holder.token
    holder.release()
    assert other.locked() is False
    assert holder.locked() is False
    who, pttl, last = other.status()
    assert who is None and pttl <= 0
    assert last == tok   # the last token survives the release
    assert other.owned is False


# ---------------------------------------------------------------------------
# ownership belongs to the object; release rules
# ---------------------------------------------------------------------------
def test_release_by_another_thread_is_refused(rl, redis_server, make_lock, key):
    # the thread that acquired owns the lock: another thread's release()
    # raises (a RuntimeError, as threading.RLock's) and changes nothing
    lock = make_lock(redis_server.url(), key, ttl=2.0)
    assert lock.acquire(timeout=10)
    outcome, value = run_bounded(lock.release, 20)
    assert outcome == "raised" and isinstance(value, rl.LockNotOwnedError), (outcome, value)
    assert isinstance(value, RuntimeError)
    assert lock.owned is True
    assert term_of(redis_server.cmd("GET", key)) == lock.node_id.encode()
    lock.release()
    assert lock.owned is False
    assert redis_server.cmd("EXISTS", key) == 0
    # and the other way round: acquired in a thread, not releasable here
    t = AcquireThread(lock, timeout=10)
    t.start()
    assert t.outcome(20) is True
    assert lock.owned
    with pytest.raises(rl.LockNotOwnedError):
        lock.release()
    assert lock.owned
    peer = make_lock(redis_server.url(), key, ttl=2.0)
    assert peer.acquire(blocking=False) is False


def test_release_when_not_held_raises(rl, redis_server, make_lock, key):
    assert issubclass(rl.LockNotOwnedError, rl.RedleaseError)
    lock = make_lock(redis_server.url(), key, ttl=1.0)
    with pytest.raises(rl.LockNotOwnedError):
        lock.release()
    assert lock.acquire(timeout=10)
    lock.release()
    with pytest.raises(rl.LockNotOwnedError):
        lock.release()
    # held by another object: this one still does not own it
    other = make_lock(redis_server.url(), key, ttl=1.0)
    assert other.acquire(timeout=10)
    with pytest.raises(rl.LockNotOwnedError):
        lock.release()
    assert other.owned
    assert term_of(redis_server.cmd("GET", key)) == other.node_id.encode()
    other.release()


def test_release_after_expiry_without_auto_renew(rl, redis_server, make_lock, key):
    lock = make_lock(redis_server.url(), key, ttl=0.3, auto_renew=False)
    assert lock.acquire(timeout=10)
    tok = lock.token
    wait_until(lambda: not lock.owned, 5, desc="a lock without auto_renew expires")
    wait_until(lambda: redis_server.cmd("EXISTS", key) == 0, 5, desc="the key expires in Redis")
    assert lock.stats()["renewals"] == 0
    with pytest.raises(rl.LockNotOwnedError):
        lock.release()
    # the object is usable again afterwards, with a new term
    assert lock.acquire(timeout=10)
    assert lock.token > tok
    lock.release()


@pytest.mark.parametrize("how", ["overwrite", "delete"])
def test_release_after_key_taken_by_another_client(rl, redis_server, make_lock, key, how):
    ttl = 1.0
    lock = make_lock(redis_server.url(), key, ttl=ttl)
    assert lock.acquire(timeout=10)
    if how == "overwrite":
        redis_server.cmd("SET", key, "other-client", "PX", 8000)
    else:
        redis_server.cmd("DEL", key)
    # the next renewal (every ttl/3) notices the loss
    wait_until(lambda: not lock.owned, ttl + 5, desc="the renew notices the foreign change")
    st = lock.stats()
    assert st["losses"] >= 1, st
    with pytest.raises(rl.LockNotOwnedError):
        lock.release()
    assert lock.owned is False
    if how == "overwrite":
        # never deletes or overwrites a key it does not hold
        assert term_of(redis_server.cmd("GET", key)) == b"other-client"
    else:
        assert term_of(redis_server.cmd("GET", key)) != lock.node_id.encode()


def test_two_objects_in_one_process_contend(rl, redis_server, make_lock, key):
    a = make_lock(redis_server.url(), key, ttl=2.0)
    b = make_lock(redis_server.url(), key, ttl=2.0)
    assert a.acquire(timeout=10)
    assert b.acquire(blocking=False) is False
    assert a.owned and not b.owned
    a.release()
    assert b.acquire(blocking=False) is True
    assert a.acquire(blocking=False) is False
    b.release()


# ---------------------------------------------------------------------------
# threading.Lock timeout semantics
# ---------------------------------------------------------------------------
def test_nonblocking_and_timeouts_on_a_held_lock(rl, redis_server, make_lock, key):
    holder = make_lock(redis_server.url(), key, ttl=5.0)
    waiter = make_lock(redis_server.url(), key, ttl=5.0)
    assert holder.acquire(timeout=10)

    t0 = time.monotonic()
    assert waiter.acquire(blocking=False) is False
    assert waiter.acquire(False) is False
    assert waiter.acquire(timeout=0) is False
    assert time.monotonic() - t0 < 5.0, "non-blocking attempts should return at once"

    t0 = time.monotonic()
    assert waiter.acquire(timeout=0.5) is False
    elapsed = time.monotonic() - t0
    assert 0.4 <= elapsed < 10.0, elapsed
    assert waiter.owned is False
    assert holder.owned is True
    assert term_of(redis_server.cmd("GET", key)) == holder.node_id.encode()


def test_free_lock_nonblocking_and_timeout_zero_acquire(rl, redis_server, make_lock, key):
    lock = make_lock(redis_server.url(), key, ttl=2.0)
    assert lock.acquire(blocking=False) is True
    lock.release()
    assert lock.acquire(timeout=0) is True
    lock.release()
    assert lock.acquire(True, -1) is True
    lock.release()


def test_not_reentrant_like_threading_lock(rl, redis_server, make_lock, key):
    lock = make_lock(redis_server.url(), key, ttl=2.0)
    assert lock.acquire(timeout=10)
    tok = lock.token
    assert lock.acquire(blocking=False) is False
    assert lock.acquire(timeout=0.3) is False
    assert lock.owned and lock.token == tok
    lock.release()


ACQUIRE_ARGS = [
    ((False, 0), {}),
    ((False, 1), {}),
    ((False, 0.5), {}),
    ((), {"blocking": False, "timeout": 0}),
    ((True, -2), {}),
    ((True, -0.5), {}),
    ((), {"timeout": -3}),
    ((), {"timeout": math.nan}),
]


@pytest.mark.parametrize("args,kwargs", ACQUIRE_ARGS,
                         ids=[f"{a}{k}" for a, k in ACQUIRE_ARGS])
def test_bad_acquire_arguments_raise_value_error(rl, redis_server, make_lock, key, args, kwargs):
    # the reference behaviour
    with pytest.raises(ValueError):
        threading.Lock().acquire(*args, **kwargs)
    lock = make_lock(redis_server.url(), key, ttl=1.0)
    outcome, value = run_bounded(lambda: lock.acquire(*args, **kwargs), 20)
    assert outcome == "raised" and isinstance(value, ValueError), (outcome, value)
    assert lock.owned is False
    assert redis_server.cmd("EXISTS", key) == 0
    # nothing left half-acquired: the object still works
    assert lock.acquire(blocking=False) is True
    lock.release()


def test_timeout_of_wrong_type_raises_type_error(rl, redis_server, make_lock, key):
    lock = make_lock(redis_server.url(), key, ttl=1.0)
    with pytest.raises(TypeError):
        lock.acquire(timeout="1")
    assert lock.owned is False
    assert lock.acquire(blocking=False)
    lock.release()


def test_waiter_wakes_on_release_in_process(rl, redis_server, make_lock, key):
    # ttl 30 -> a retry interval of several seconds: a prompt wake-up can
    # only come from the release notice
    holder = make_lock(redis_server.url(), key, ttl=30.0)
    waiter = make_lock(redis_server.url(), key, ttl=30.0)
    assert holder.acquire(timeout=10)
    t = OwnerThread(waiter, timeout=25)
    t.start()
    time.sleep(0.3)
    assert t.is_alive()
    t_rel = boottime()
    holder.release()
    assert t.outcome(30) is True
    assert t.t_done - t_rel < 5.0, f"waiter woke {t.t_done - t_rel:.2f}s after the release"
    assert waiter.owned
    t.release()


# ---------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------
BAD_TYPES = [
    ("url-int", lambda u: ((123, "k"), {})),
    ("url-none", lambda u: ((None, "k"), {})),
    ("url-bytes-list", lambda u: (([u], "k"), {})),
    ("key-int", lambda u: ((u, 123), {})),
    ("key-none", lambda u: ((u, None), {})),
    ("key-float", lambda u: ((u, 1.5), {})),
    ("ttl-str", lambda u: ((u, "k"), {"ttl": "x"})),
    ("ttl-list", lambda u: ((u, "k"), {"ttl": [1.0]})),
    ("node_id-int", lambda u: ((u, "k"), {"node_id": 5})),
    ("connect_timeout-str", lambda u: ((u, "k"), {"connect_timeout": "1"})),
    ("command_timeout-str", lambda u: ((u, "k"), {"command_timeout": "1"})),
]


@pytest.mark.parametrize("case", [c[1] for c in BAD_TYPES], ids=[c[0] for c in BAD_TYPES])
def test_wrong_types_raise_type_error(rl, case):
    args, kwargs = case(f"redis://127.0.0.1:{free_port()}")
    with pytest.raises(TypeError):
        rl.Lock(*args, **kwargs)


def test_signature_misuse_raises_type_error(rl):
    url = f"redis://127.0.0.1:{free_port()}"
    with pytest.raises(TypeError):
        rl.Lock(url)
    with pytest.raises(TypeError):
        rl.Lock(url, "k", 1.0)   # ttl is keyword-only
    with pytest.raises(TypeError):
        rl.Lock(url, "k", no_such_option=1)


@pytest.mark.parametrize("ttl", [0, 0.0, -1, -0.5, math.nan, math.inf, -math.inf], ids=repr)
def test_bad_ttl_raises_value_error(rl, ttl):
    with pytest.raises(ValueError):
        rl.Lock(f"redis://127.0.0.1:{free_port()}", "k", ttl=ttl)


@pytest.mark.parametrize("empty", ["", b""], ids=["str", "bytes"])
def test_empty_key_raises_value_error(rl, empty):
    with pytest.raises(ValueError):
        rl.Lock(f"redis://127.0.0.1:{free_port()}", empty)


def test_unknown_scheme_is_value_error(rl):
    for url in ("http://127.0.0.1:6379", "ftp://127.0.0.1", "tcp://127.0.0.1:6379"):
        with pytest.raises(ValueError):
            rl.Lock(url, "k")


@pytest.mark.parametrize("url", ["", "not a url", "127.0.0.1:6379", "redis://127.0.0.1:notaport",
                                 "redis://127.0.0.1:6379/notadb", "redis://[::1", "unix://",
                                 "redis://127.0.0.1:70000"])
def test_malformed_url_fails_clearly(rl, url):
    """Refused at construction, or the first acquire raises; never a hang or a silent False."""
    try:
        lock = rl.Lock(url, "bad-url-key", ttl=1.0)
    except (ValueError, TypeError, rl.RedleaseError):
        return
    outcome, value = run_bounded(lock.acquire, 30, True, 3)
    assert outcome != "hung", f"{url!r}: acquire hung"
    assert outcome == "raised", f"{url!r}: no clear error, acquire returned {value!r}"
    assert isinstance(value, (rl.RedleaseError, ValueError, OSError)), repr(value)
    assert lock.owned is False


@pytest.mark.parametrize("nkey", [b"a\x00b", b"\x00", "str\x00nul"], ids=["a-nul-b", "nul", "str"])
def test_keys_with_nul_bytes_round_trip(rl, redis_server, make_lock, nkey):
    raw = nkey if isinstance(nkey, bytes) else nkey.encode()
    lock = make_lock(redis_server.url(), nkey, ttl=1.0)
    assert lock.key == nkey
    assert lock.acquire(timeout=10)
    assert term_of(redis_server.cmd("GET", raw)) == lock.node_id.encode()
    # the part before the NUL is a different lock
    prefix = raw.split(b"\x00")[0] or b"nothing-before-nul"
    assert redis_server.cmd("EXISTS", prefix) == 0
    other = make_lock(redis_server.url(), nkey, ttl=1.0)
    assert other.locked() is True
    assert other.status()[0] == lock.node_id
    lock.release()
    assert redis_server.cmd("EXISTS", raw) == 0
    assert other.locked() is False


def test_subclassing(rl, redis_server, make_lock, key):
    class CountingLock(rl.Lock):
        def __init__(self, url, key, **kwargs):
            super().__init__(url, key, **kwargs)
            self.entered = 0

        def acquire(self, blocking=True, timeout=-1):
            ok = super().acquire(blocking, timeout)
            if ok:
                self.entered += 1
            return ok

        def describe(self):
            return f"CountingLock({self.node_id}, owned={self.owned})"

    lock = make_lock(redis_server.url(), key, cls=CountingLock, ttl=1.0, node_id="sub-1")
    assert isinstance(lock, rl.Lock)
    with lock as entered:
        assert entered is lock
        assert lock.describe() == "CountingLock(sub-1, owned=True)"
        assert term_of(redis_server.cmd("GET", key)) == b"sub-1"
    assert lock.entered == 1
    assert "CountingLock" in repr(lock)
    assert redis_server.cmd("EXISTS", key) == 0
    with pytest.raises(TypeError):
        pickle.dumps(lock)


def test_pickling_raises_type_error(rl, redis_server, make_lock, key):
    lock = make_lock(redis_server.url(), key, ttl=1.0)
    for proto in range(pickle.HIGHEST_PROTOCOL + 1):
        with pytest.raises(TypeError):
            pickle.dumps(lock, protocol=proto)
    assert lock.acquire(timeout=10)
    with pytest.raises(TypeError):
        pickle.dumps(lock)
    assert lock.owned
    lock.release()
