"""node.run_as_leader / run_as_leader_async: work that dies never leaves a
zombie leader (a node that holds the key doing nothing)."""
from __future__ import annotations

import asyncio
import threading

import pytest

from helpers.waiting import wait_until


def test_returns_the_work_value_and_stops_the_node(rl, redis_server, make_node, key):
    node = make_node(redis_server.url(), ttl=1.0)
    assert node.run_as_leader(lambda lease, x: (lease.token, x), 7)[1] == 7
    assert not node.is_leader and node._phase in (rl._redlease.PHASE_STOPPED,
                                                  rl._redlease.PHASE_IDLE)
    assert redis_server.cmd("EXISTS", key) == 0


def test_work_that_raises_resigns_stops_and_reraises(rl, redis_server, make_node, key):
    node = make_node(redis_server.url(), ttl=5.0)
    peer = make_node(redis_server.url(), ttl=5.0)

    def work(lease):
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        node.run_as_leader(work)
    assert redis_server.cmd("EXISTS", key) == 0, "the dead worker still holds the key"
    assert not node.is_leader
    peer.start()
    assert peer.wait_for_leadership(5)        # a healthy peer takes over at once


def test_lost_leadership_runs_the_work_again_next_term(rl, redis_server, make_node, key):
    node = make_node(redis_server.url(), ttl=1.0, retry_interval=0.05)
    terms = []

    def work(lease):
        terms.append(lease.token)
        if len(terms) == 1:
            redis_server.cmd("DEL", key)        # taken away: LeadershipLost inside
            while True:
                lease.check()
                threading.Event().wait(0.01)
        return "done"

    assert node.run_as_leader(work) == "done"
    assert len(terms) == 2 and terms[1] > terms[0]


def test_async_work_that_raises_or_is_cancelled_leaves_no_zombie(rl, redis_server, make_node, key):
    node = make_node(redis_server.url(), ttl=5.0)

    async def bad(lease):
        raise RuntimeError("leader work died")

    async def forever(lease):
        await asyncio.sleep(3600)

    async def main():
        with pytest.raises(RuntimeError):
            await node.run_as_leader_async(bad)
        assert redis_server.cmd("EXISTS", key) == 0 and not node.is_leader
        task = asyncio.ensure_future(node.run_as_leader_async(forever))
        for _ in range(500):
            if node.is_leader:
                break
            await asyncio.sleep(0.01)
        assert node.is_leader
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert redis_server.cmd("EXISTS", key) == 0 and not node.is_leader

    asyncio.run(main())


def test_wrong_password_raises_and_stops(rl, redis_factory, make_node):
    srv = redis_factory(password="right")
    node = make_node(srv.url(password="wrong"), ttl=1.0)
    with pytest.raises(rl.AuthenticationError):
        node.run_as_leader(lambda lease: None)
    wait_until(lambda: node._phase != rl._redlease.PHASE_RUNNING, 5, desc="node stopped")
