"""Resources stay bounded (issue 7 point 6): a status query against a server
that cannot be reached, many asyncio event loops, huge timeouts and PTTLs,
many sockets across fork.

Real redis-server only.  Time checks are wide liveness bounds; counts (leases,
connections, fds, attempts) are exact or bounded by what the settings allow.
"""
from __future__ import annotations

import asyncio
import gc
import os
import threading
import time

import pytest

from helpers.redis_server import free_port
from helpers.waiting import wait_until


def _engine(rl):
    return rl.engine_stats()


# ---------------------------------------------------------------------------
# 1. a status query against an unreachable server
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["refused", "blackhole"])
def test_status_query_unreachable_frees_everything(rl, redis_server, proxy_factory, key, how):
    if how == "refused":
        url = f"redis://127.0.0.1:{free_port()}"
    else:
        proxy = proxy_factory(redis_server.port)
        proxy.blackhole()
        url = proxy.url()
    before = _engine(rl)
    connect_timeout = 0.5
    t0 = time.monotonic()
    with pytest.raises(rl.ConnectionError):
        rl.key_status(url, key, timeout=30.0, connect_timeout=connect_timeout,
                      command_timeout=connect_timeout)
    took = time.monotonic() - t0
    # connect_timeout (or command_timeout for a server that accepts and
    # never answers), plus a wide margin; far from the 30 s timeout
    assert took < connect_timeout + 5.0, took
    # the lease is given back and no connection stays open or reconnects
    try:
        wait_until(lambda: _engine(rl)["leases"] == before["leases"]
                   and _engine(rl)["connections"] == before["connections"], 10)
    except AssertionError:
        raise AssertionError(f"lease or connections not freed: {_engine(rl)} vs {before}") from None
    opened = _engine(rl)["connections_opened"]
    time.sleep(1.5)      # the connection backoff would have retried by now
    after = _engine(rl)
    assert after["connections_opened"] == opened, (after, before)
    assert after["leases"] == before["leases"] and after["connections"] == before["connections"], after


# ---------------------------------------------------------------------------
# 2. many asyncio event loops, one after the other and at once
# ---------------------------------------------------------------------------
def _fd_count():
    return len(os.listdir("/proc/self/fd"))


def test_many_event_loops_in_turn_and_at_once(rl, redis_server, make_node):
    node = make_node(redis_server.url(), ttl=1.0)   # never started: the waits time out

    async def one_wait():
        return await node.wait_for_leadership_async(timeout=0.01)

    def one_loop(barrier=None):
        loop = asyncio.new_event_loop()
        try:
            if barrier is not None:
                # every loop has its waker registered before any is closed
                loop.run_until_complete(one_wait())
                barrier.wait(30)
            return loop.run_until_complete(one_wait())
        finally:
            loop.close()

    assert one_loop() is False      # warm up (engine thread, first waker)
    gc.collect()
    fd0 = _fd_count()
    for i in range(100):
        assert one_loop() is False, i
    gc.collect()
    assert _fd_count() == fd0

    n = 70
    barrier = threading.Barrier(n)
    results, errors = [], []

    def worker():
        try:
            results.append(one_loop(barrier))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))
            barrier.abort()

    threads = [threading.Thread(target=worker, name=f"test-loop-{i}") for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors[:3]
    assert results == [False] * n
    gc.collect()
    wait_until(lambda: gc.collect() is not None and _fd_count() == fd0, 10,
               desc="the event loops' fds closed")


def test_event_loop_registration_failure_closes_its_eventfd(rl, redis_server, make_node, monkeypatch):
    """If the engine refuses a loop's waker (out of memory, engine shut
    down), the eventfd made for it is closed, not leaked."""
    node = make_node(redis_server.url(), ttl=1.0)
    aio = rl._aio
    loop = asyncio.new_event_loop()         # warm up: the engine and its own fds
    try:
        assert loop.run_until_complete(node.wait_for_leadership_async(timeout=0.01)) is False
    finally:
        loop.close()
    del loop

    def refuse(fd):
        raise rl.RedleaseError("refused (test)")

    monkeypatch.setattr(aio._c, "_add_waker", refuse)
    gc.collect()
    fd0 = _fd_count()
    for _ in range(5):
        loop = asyncio.new_event_loop()
        try:
            with pytest.raises(rl.RedleaseError, match="refused"):
                loop.run_until_complete(node.wait_for_leadership_async(timeout=0.01))
        finally:
            loop.close()
    del loop
    gc.collect()
    assert _fd_count() == fd0
