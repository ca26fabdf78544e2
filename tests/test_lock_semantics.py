"""redlease.Lock semantics as threading.Lock users expect (issue 7, point 4):
ownership by the acquiring thread, release() decided by Redis' answer, the
exception hierarchy, an expired lease frees the object, bounded non-blocking
attempts, fairness between threads of one process, fork, timeouts, the
public surface, unreachable servers, and asyncio cancellation.

Real redis-server processes; only wide liveness bounds on durations.
"""
from __future__ import annotations

import asyncio
import os
import random
import threading
import time

import pytest

from helpers.aio_loops import cancel_when_ready
from helpers.lock_procs import AcquireThread, make_lock  # noqa: F401 - fixture
from helpers.redis_server import free_port
from helpers.waiting import run_bounded, wait_until
from helpers.terms import term_of


class Holder(threading.Thread):
    """Acquires ``lock`` in its own thread, holds it until told, releases it."""

    def __init__(self, lock, **kwargs):
        super().__init__(name="lock-holder", daemon=True)
        self.lock, self.kwargs = lock, kwargs
        self.got = threading.Event()
        self.go = threading.Event()
        self.result = self.error = self.release_error = None

    def run(self):
        try:
            self.result = self.lock.acquire(**self.kwargs)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            self.error = exc
        self.got.set()
        if self.result:
            self.go.wait(60)
            try:
                self.lock.release()
            except BaseException as exc:  # noqa: BLE001
                self.release_error = exc

    def finish(self, timeout=30):
        self.go.set()
        self.join(timeout)
        assert not self.is_alive(), "holder thread did not finish"


# ---------------------------------------------------------------------------
# ownership: a stray release by another thread
# ---------------------------------------------------------------------------
def test_stray_release_from_another_thread_raises_and_spares_the_waiter(rl, redis_server,
                                                                         make_lock, key):
    lock = make_lock(redis_server.url(), key, ttl=5.0)
    owner = Holder(lock, timeout=10)
    owner.start()
    assert owner.got.wait(20) and owner.result is True
    waiter = Holder(lock, timeout=30)
    waiter.start()
    time.sleep(0.3)
    assert not waiter.got.is_set()
    # a third thread that never acquired: refused, nothing changes
    outcome, value = run_bounded(lock.release, 20)
    assert outcome == "raised" and isinstance(value, rl.LockNotOwnedError), (outcome, value)
    outcome, value = run_bounded(lock.release, 20)
    assert outcome == "raised" and isinstance(value, rl.LockNotOwnedError), (outcome, value)
    time.sleep(0.3)
    assert not waiter.got.is_set(), "the waiter got the lock while the owner still holds it"
    assert lock.owned and term_of(redis_server.cmd("GET", key)) == lock.node_id.encode()
    # the owner's release hands the lock to the waiter
    owner.finish()
    assert owner.release_error is None, owner.release_error
    assert waiter.got.wait(20) and waiter.result is True, waiter.error
    assert lock.owned
    # the waiter (now the owner) is not disturbed by a stray release either
    outcome, value = run_bounded(lock.release, 20)
    assert outcome == "raised" and isinstance(value, rl.LockNotOwnedError), (outcome, value)
    assert lock.owned
    waiter.finish()
    assert waiter.release_error is None, waiter.release_error
    assert redis_server.cmd("EXISTS", key) == 0


def test_stray_release_while_a_thread_campaigns_does_not_hang_it(rl, redis_server, make_lock,
                                                                  key):
    other = make_lock(redis_server.url(), key, ttl=5.0)
    assert other.acquire(timeout=10)
    lock = make_lock(redis_server.url(), key, ttl=5.0)
    t = AcquireThread(lock, timeout=30)
    t.start()
    time.sleep(0.3)
    outcome, value = run_bounded(lock.release, 20)
    assert outcome == "raised" and isinstance(value, rl.LockNotOwnedError), (outcome, value)
    other.release()
    assert t.outcome(30) is True


def test_lock_not_owned_error_is_a_runtime_error(rl):
    assert issubclass(rl.LockNotOwnedError, RuntimeError)
    assert issubclass(rl.LockNotOwnedError, rl.RedleaseError)
    with pytest.raises(RuntimeError):
        raise rl.LockNotOwnedError("x")


# ---------------------------------------------------------------------------
# release(): Redis' answer decides
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["overwrite", "delete"])
def test_release_raises_when_redis_no_longer_holds_the_term(rl, redis_server, make_lock, key,
                                                            how):
    # ttl 30: the next renewal is 10 s away, so only the release script can tell
    lock = make_lock(redis_server.url(), key, ttl=30.0)
    assert lock.acquire(timeout=10)
    if how == "overwrite":
        redis_server.cmd("SET", key, "other-client", "PX", 20000)
    else:
        redis_server.cmd("DEL", key)
    assert lock.owned   # the local deadline still holds
    with pytest.raises(rl.LockNotOwnedError):
        lock.release()
    assert lock.owned is False
    if how == "overwrite":
        assert redis_server.cmd("GET", key) == b"other-client"
    # the object works again
    redis_server.cmd("DEL", key)
    assert lock.acquire(timeout=10)
    lock.release()


# ---------------------------------------------------------------------------
# auto_renew=False: an expired lease frees the object
# ---------------------------------------------------------------------------
def test_expired_lease_without_auto_renew_frees_the_object(rl, redis_server, make_lock, key):
    lock = make_lock(redis_server.url(), key, ttl=0.3, auto_renew=False)
    assert lock.acquire(timeout=10)
    tok = lock.token
    wait_until(lambda: not lock.owned, 5, desc="the lease expires")
    wait_until(lambda: redis_server.cmd("EXISTS", key) == 0, 5, desc="the key expires")
    assert lock.locked() is False
    assert lock.acquire(blocking=False) is True
    assert lock.token > tok
    lock.release()
    # and from another thread too
    assert lock.acquire(timeout=10)
    wait_until(lambda: not lock.owned, 5, desc="the lease expires again")
    outcome, value = run_bounded(lambda: lock.acquire(timeout=10), 20)
    assert outcome == "ok" and value is True, (outcome, value)


# ---------------------------------------------------------------------------
# non-blocking attempts are bounded; refused connections raise at once
# ---------------------------------------------------------------------------
def test_nonblocking_acquire_refused_raises_at_once(rl, make_lock):
    url = f"redis://127.0.0.1:{free_port()}"
    locks = [make_lock(url, f"refused-{i}", connect_timeout=5.0, command_timeout=5.0)
             for i in range(6)]
    # keep a blocking acquirer on the endpoint so it stays in reconnect backoff
    bg = make_lock(url, "refused-bg", connect_timeout=60.0)
    t = AcquireThread(bg, timeout=4.0)
    t.start()
    time.sleep(1.0)
    for lock in locks:
        t0 = time.monotonic()
        outcome, value = run_bounded(lambda: lock.acquire(blocking=False), 20)
        elapsed = time.monotonic() - t0
        assert outcome == "raised" and isinstance(value, rl.ConnectionError), (outcome, value)
        assert elapsed < 0.8, f"a refused connection took {elapsed:.2f}s to report"
        assert lock.owned is False
    assert t.outcome(20) is False


def test_nonblocking_acquire_bounded_by_the_timeouts(rl, redis_server, proxy_factory, make_lock,
                                                     key):
    proxy = proxy_factory(redis_server.port)
    lock = make_lock(f"redis://127.0.0.1:{proxy.port}", key, ttl=2.0,
                     connect_timeout=0.5, command_timeout=0.5)
    assert lock.acquire(blocking=False) is True
    lock.release()
    proxy.blackhole()
    t0 = time.monotonic()
    outcome, value = run_bounded(lambda: lock.acquire(blocking=False), 30)
    elapsed = time.monotonic() - t0
    assert outcome != "hung"
    if outcome == "ok":
        assert value is False
    else:
        assert isinstance(value, rl.ConnectionError), value
    assert elapsed < 1.0 + 1.5, f"one attempt took {elapsed:.2f}s (connect+command = 1.0 s)"
    proxy.heal()


def test_blocking_acquire_without_timeout_raises_when_unreachable(rl, make_lock):
    lock = make_lock(f"redis://127.0.0.1:{free_port()}", "unreachable", connect_timeout=0.3)
    outcome, value = run_bounded(lock.acquire, 20)
    assert outcome == "raised" and isinstance(value, rl.ConnectionError), (outcome, value)
    outcome, value = run_bounded(lambda: lock.acquire(timeout=None), 20)
    assert outcome == "raised" and isinstance(value, rl.ConnectionError), (outcome, value)
    assert lock.owned is False


def test_acquire_async_without_timeout_raises_when_unreachable(rl, make_lock):
    lock = make_lock(f"redis://127.0.0.1:{free_port()}", "unreachable-async",
                     connect_timeout=0.3)

    async def main():
        with pytest.raises(rl.ConnectionError):
            await asyncio.wait_for(lock.acquire_async(), 20)
        with pytest.raises(rl.ConnectionError):
            await asyncio.wait_for(lock.acquire_async(timeout=0), 20)

    asyncio.run(main())
    assert lock.owned is False


# ---------------------------------------------------------------------------
# fairness between threads of one process
# ---------------------------------------------------------------------------
def test_threads_with_own_locks_on_one_key_share_fairly(rl, redis_server, key):
    n, duration = 6, 3.0   # each holds 10 ms: the releaser used to win again
    counts = [0] * n
    errors = []
    stop = time.monotonic() + duration

    def worker(i):
        lock = rl.Lock(redis_server.url(), key, ttl=5.0)
        try:
            while time.monotonic() < stop:
                if lock.acquire(timeout=10):
                    counts[i] += 1
                    time.sleep(0.01)
                    lock.release()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors
    assert min(counts) >= 1 and min(counts) * 4 >= max(counts), counts


# ---------------------------------------------------------------------------
# fork
# ---------------------------------------------------------------------------
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_child_of_fork_gets_a_clear_error_not_a_hang(rl, redis_server, make_lock, key):
    lock = make_lock(redis_server.url(), key, ttl=5.0)
    assert lock.acquire(timeout=10)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:   # child: report each call's outcome, never touch pytest
        os.close(r)
        out = []
        for call in (lambda: lock.acquire(timeout=2), lambda: lock.acquire(False), lock.release,
                     lock.locked):
            try:
                call()
                out.append("returned")
            except rl.RedleaseError as exc:
                out.append("fork" if "fork" in str(exc) else "other:" + str(exc)[:60])
            except BaseException as exc:  # noqa: BLE001
                out.append("other:" + type(exc).__name__)
        os.write(w, ",".join(out).encode())
        os._exit(0)
    os.close(w)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        done, _status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        os.close(r)
        pytest.fail("the child hung on a Lock inherited from its parent")
    text = os.read(r, 4096).decode()
    os.close(r)
    assert text == "fork,fork,fork,fork", text
    assert lock.owned
    lock.release()


# ---------------------------------------------------------------------------
# timeouts: acquire and acquire_async accept the same values
# ---------------------------------------------------------------------------
def test_acquire_and_acquire_async_accept_the_same_timeouts(rl, redis_server, make_lock, key):
    lock = make_lock(redis_server.url(), key, ttl=2.0)

    async def via_async(t):
        ok = await lock.acquire_async(timeout=t)
        if ok:
            await lock.release_async()
        return ok

    for t in (None, -1, 0, 0.5, 5, float("inf")):
        assert lock.acquire(timeout=t) is True, t
        lock.release()
        assert asyncio.run(via_async(t)) is True, t
    for bad, exc in ((-2, ValueError), (-0.5, ValueError), (float("nan"), ValueError),
                     ("1", TypeError)):
        with pytest.raises(exc):
            lock.acquire(timeout=bad)
        with pytest.raises(exc):
            asyncio.run(via_async(bad))
    assert lock.owned is False


# ---------------------------------------------------------------------------
# the public surface: lock methods only
# ---------------------------------------------------------------------------
def test_lock_has_no_node_methods(rl, redis_server, make_lock, key):
    lock = make_lock(redis_server.url(), key, ttl=1.0)
    for name in ("start", "stop", "resign", "wait_for_leadership"):
        assert not hasattr(lock, name), name
        assert not hasattr(rl.Lock, name), name
        assert name not in dir(lock), name
        with pytest.raises(AttributeError):
            getattr(lock, name)
    for name in ("acquire", "release", "locked", "owned", "token", "status", "stats",
                 "acquire_async", "release_async", "key", "node_id", "ttl", "url"):
        assert hasattr(lock, name), name
    with lock:
        assert lock.owned


# ---------------------------------------------------------------------------
# asyncio: an outside cancel() is never swallowed, a grant never leaked
# ---------------------------------------------------------------------------
def test_acquire_async_cancel_at_grant_never_swallowed_nor_leaked(rl, redis_server, make_lock,
                                                                   key):
    lock = make_lock(redis_server.url(), key, ttl=5.0)
    trials = 300
    rng = random.Random(7)

    async def main():
        swallowed = leaked = cancelled = won = 0
        loop = asyncio.get_running_loop()
        for i in range(trials):
            task = asyncio.ensure_future(lock.acquire_async(timeout=10))
            # cancel in the loop turn where the grant becomes visible (or a
            # few turns around it)
            skew = rng.randrange(0, 3)
            sent = cancel_when_ready(loop, task, lambda: lock.owned, skew)
            try:
                ok = await asyncio.wait_for(asyncio.shield(task), 20)
            except asyncio.CancelledError:
                ok = None
                cancelled += 1
            if ok:
                won += 1
                if sent and sent[0]:
                    swallowed += 1
                await lock.release_async()
            # nothing may stay held once the task is over
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                if not lock.owned and redis_server.cmd("EXISTS", key) == 0:
                    break
                await asyncio.sleep(0.005)
            else:
                leaked += 1
                redis_server.cmd("DEL", key)
        return swallowed, leaked, cancelled, won

    swallowed, leaked, cancelled, won = asyncio.run(main())
    assert (swallowed, leaked) == (0, 0), dict(swallowed=swallowed, leaked=leaked,
                                               cancelled=cancelled, won=won)
    # coverage: some trials reached the race (how many depends on the load)
    assert cancelled >= 1 and cancelled + won == trials, (cancelled, won)
    # still usable
    assert lock.acquire(timeout=10)
    lock.release()
