"""Fault injection: killed/stopped processes, frozen or restarted Redis,
foreign writes, a thread hogging the GIL, network partitions via a TCP proxy.

Timing rule: nothing asserts how fast something happened except as a very
generous upper bound.  The safety checks compare timestamps that are ordered
by causality (e.g. "a new leader's first is_leader=True sample comes after
the old key's expiry"), with a 50 ms allowance for Redis' millisecond clock.
"""
from __future__ import annotations

import threading
import time

import pytest

from helpers.waiting import boottime, stays_true, wait_until
from helpers.workers import assert_no_overlap, current_leaders
from helpers.terms import term_of

TTL = 1.0
SLACK = 0.05


def _one_leader(workers, timeout=20.0):
    wait_until(lambda: len(current_leaders(workers)) == 1, timeout, interval=0.02,
               desc="exactly one leader among the workers")
    return current_leaders(workers)[0]


def _key_expiry_lower_bound(srv, key, holder_id):
    """Lower bound (CLOCK_BOOTTIME) of the moment ``key`` expires, or None."""
    t_before = boottime()
    pttl = srv.cmd("PTTL", key)
    value = srv.cmd("GET", key)
    if term_of(value) != holder_id.encode() or pttl is None or pttl <= 0:
        return None
    return t_before + pttl / 1000.0


def _first_lead_start_after(worker, mark):
    evs = [e for e in worker.snapshot()[mark:] if e.get("ev") == "lead_start"]
    return evs[0] if evs else None


# ---------------------------------------------------------------------------
# worker processes die or freeze
# ---------------------------------------------------------------------------
@pytest.mark.node_timeout(90)
def test_leader_sigkill_failover(rl, redis_server, spawn_worker, key):
    workers = [spawn_worker(redis_server.url(), ttl=TTL) for _ in range(3)]
    leader = _one_leader(workers)
    old_tok = leader.intervals()[-1][1]
    others = [w for w in workers if w is not leader]
    marks = {w: w.mark() for w in others}

    leader.sigkill()
    expiry = _key_expiry_lower_bound(redis_server, key, leader.node_id)

    new = _one_leader(others, timeout=TTL + 15)
    ev = _first_lead_start_after(new, marks[new])
    assert ev is not None
    assert ev["tok"] > old_tok
    if expiry is not None:
        assert ev["t"] >= expiry - SLACK, (
            f"new leader started {expiry - ev['t']:.3f}s before the dead leader's key expired")
    assert term_of(redis_server.cmd("GET", key)) == new.node_id.encode()
    assert_no_overlap(workers)


@pytest.mark.node_timeout(90)
def test_leader_sigstopped_beyond_ttl_is_not_leader_on_waking(rl, redis_server, spawn_worker, key):
    workers = [spawn_worker(redis_server.url(), ttl=TTL) for _ in range(3)]
    leader = _one_leader(workers)
    old_tok = leader.intervals()[-1][1]
    others = [w for w in workers if w is not leader]

    leader.sigstop()
    try:
        new = _one_leader(others, timeout=TTL + 15)
        time.sleep(0.5)  # frozen for well over ttl in total
    finally:
        mark = leader.mark()
        leader.sigcont()
    # the sampler's first reading after waking, before any renewal could have
    # succeeded, must already say "not leader"
    gap = leader.wait_ev("gap", timeout=15, start=mark)
    assert gap["lead_after"] is False, f"is_leader was True right after waking: {gap}"
    # it noticed by itself and told the application
    leader.wait_ev("revoked", timeout=15, start=mark)
    st = leader.status()
    assert st["is_leader"] is False and st["token"] is None
    wait_until(lambda: leader.status()["leader"] == new.node_id, 10, interval=0.2)
    assert new.status()["token"] > old_tok
    time.sleep(0.5)
    assert current_leaders(workers) == [new]
    assert_no_overlap(workers)


# ---------------------------------------------------------------------------
# Redis freezes, dies, restarts, loses its scripts
# ---------------------------------------------------------------------------
@pytest.mark.node_timeout(90)
def test_redis_sigstopped_beyond_ttl(rl, redis_server, spawn_worker, key):
    workers = [spawn_worker(redis_server.url(), ttl=TTL) for _ in range(3)]
    leader = _one_leader(workers)
    old_tok = leader.intervals()[-1][1]
    marks = {w: w.mark() for w in workers}

    redis_server.pause()
    t_pause = boottime()
    try:
        # the leader steps down on its own (no reply can come) and says so
        leader.wait_ev("revoked", timeout=TTL + 10, start=marks[leader])
        wait_until(lambda: not leader.is_leading_now(), 10)
        last_true = leader.intervals()[-1][3]
        assert last_true <= t_pause + TTL + SLACK, (
            f"leader still believed it led {last_true - t_pause:.3f}s after Redis froze "
            f"(ttl {TTL})")
        st = leader.status()
        assert st["is_leader"] is False
        wait_until(lambda: boottime() > t_pause + 3 * TTL, 10)
    finally:
        redis_server.resume()
    t_resume = boottime()
    # nobody could have been elected while Redis was frozen
    for w in workers:
        for e in w.snapshot()[marks[w]:]:
            if e.get("ev") == "lead_start":
                assert e["t"] > t_resume - SLACK, f"elected while Redis was frozen: {e}"
    new = _one_leader(workers, timeout=20)
    assert new.intervals()[-1][1] > old_tok
    time.sleep(0.5)
    assert len(current_leaders(workers)) == 1
    assert_no_overlap(workers)


def test_redis_killed_leader_steps_down_then_recovers(rl, redis_server, make_node, key):
    revoked = []
    node = make_node(redis_server.url(), ttl=TTL, on_revoked=revoked.append)
    node.start()
    assert node.wait_for_leadership(10)
    tok = node.token
    redis_server.kill()
    t_kill = time.monotonic()
    # at the latest one ttl after the last possible renewal, it is not leader
    while time.monotonic() < t_kill + TTL + SLACK:
        time.sleep(0.02)
    assert node.is_leader is False
    wait_until(lambda: node.token is None and node.lease_remaining == 0.0, 5)
    wait_until(lambda: revoked, 10, desc="on_revoked after losing Redis")
    wait_until(lambda: node.last_error is not None, 10)
    redis_server.restart()
    assert node.wait_for_leadership(15)
    assert node.token > tok


def test_redis_restarted_empty_tokens_still_increase(rl, redis_server, make_node, key):
    node = make_node(redis_server.url(), ttl=TTL, retry_interval=0.2)
    node.start()
    assert node.wait_for_leadership(10)
    tokens = [node.token]
    # a few ordinary terms first, so the stored counter runs ahead
    for _ in range(2):
        node.resign()
        wait_until(lambda: node.is_leader and node.token != tokens[-1], 15)
        tokens.append(node.token)
    for _ in range(2):
        redis_server.restart()  # same port, all data lost
        wait_until(lambda: node.is_leader and node.token not in (None, tokens[-1]), 20,
                   desc="re-elected with a new token after the restart")
        tokens.append(node.token)
        assert term_of(redis_server.cmd("GET", key)) == node.node_id.encode()
    assert all(b > a for a, b in zip(tokens, tokens[1:])), tokens


def test_redis_restarted_empty_with_two_processes(rl, redis_server, spawn_worker, key):
    workers = [spawn_worker(redis_server.url(), ttl=TTL) for _ in range(2)]
    _one_leader(workers)
    redis_server.restart()
    time.sleep(TTL)
    _one_leader(workers, timeout=20)
    redis_server.restart()
    time.sleep(TTL)
    _one_leader(workers, timeout=20)
    # tokens strictly increase over time across both processes and restarts,
    # and no two terms overlap (the restarted database grants nothing for a
    # ttl after its marker is stamped again).
    assert_no_overlap(workers)


def test_script_flush_does_not_break_anything(rl, redis_server, make_node, key):
    revoked = []
    a = make_node(redis_server.url(), ttl=1.5, on_revoked=revoked.append)
    a.start()
    assert a.wait_for_leadership(10)
    tok = a.token
    stop = threading.Event()

    def flusher():
        while not stop.is_set():
            try:
                redis_server.cmd("SCRIPT", "FLUSH")
            except Exception:  # noqa: BLE001 - the server may be busy; keep going
                pass
            stop.wait(0.1)

    t = threading.Thread(target=flusher)
    t.start()
    try:
        # renewals keep working with the script cache flushed under them
        assert stays_true(lambda: a.is_leader and a.token == tok, 3.0)
        assert not revoked
        b = make_node(redis_server.url(), ttl=1.5)
        b.start()
        wait_until(lambda: b.leader == a.node_id, 10)
        a.resign()  # release script after a flush
        assert b.wait_for_leadership(10)
        assert b.token > tok
        a.stop()
        b.stop()  # release again
        assert redis_server.cmd("EXISTS", key) == 0
        assert not b.is_leader
    finally:
        stop.set()
        t.join()


def test_key_overwritten_by_another_client(rl, redis_server, make_node, key):
    revoked = []
    node = make_node(redis_server.url(), ttl=TTL, on_revoked=revoked.append)
    node.start()
    assert node.wait_for_leadership(10)
    tok = node.token
    redis_server.cmd("SET", key, "other-client", "PX", 3000)
    # lost at its next renewal (well within a few ttl)
    wait_until(lambda: not node.is_leader, TTL + 5, desc="leader notices the foreign write")
    wait_until(lambda: revoked, 5)
    wait_until(lambda: node.leader == "other-client", 5)
    # it must never delete or overwrite a key it does not hold
    assert term_of(redis_server.cmd("GET", key)) == b"other-client"
    node.resign()
    assert term_of(redis_server.cmd("GET", key)) == b"other-client"
    # once the foreign key expires the node campaigns again with a new term
    assert node.wait_for_leadership(15)
    assert node.token > tok


def test_stop_does_not_delete_a_foreign_key(rl, redis_server, make_node, key):
    node = make_node(redis_server.url(), ttl=TTL)
    node.start()
    assert node.wait_for_leadership(10)
    redis_server.cmd("SET", key, "someone-else")
    node.stop()  # may still believe it leads; release must be compare-and-delete
    assert term_of(redis_server.cmd("GET", key)) == b"someone-else"


def test_key_deleted_externally(rl, redis_server, make_node, key):
    node = make_node(redis_server.url(), ttl=TTL)
    node.start()
    assert node.wait_for_leadership(10)
    tok = node.token
    redis_server.cmd("DEL", key)
    # renewal finds the key gone: leadership lost, then a new term (or, at
    # worst, the node re-acquires; never the old term silently continuing
    # with nothing in Redis for long)
    wait_until(lambda: term_of(redis_server.cmd("GET", key)) == node.node_id.encode()
               and node.is_leader and node.token > tok, 15, interval=0.05,
               desc="a new term after the key was deleted")


# ---------------------------------------------------------------------------
# the GIL held by the application
# ---------------------------------------------------------------------------
@pytest.mark.node_timeout(120)
def test_gil_hog_does_not_lose_the_lease(rl, redis_server, spawn_worker, key):
    workers = [spawn_worker(redis_server.url(), ttl=TTL) for _ in range(3)]

    def settled():
        lead = current_leaders(workers)
        if len(lead) != 1:
            return None
        st = lead[0].status()
        if not st["is_leader"]:
            return None
        if any(w.status()["leader"] != lead[0].node_id for w in workers):
            return None
        return lead[0], st

    leader, st = wait_until(settled, 30, interval=0.2, desc="a settled leader")
    followers = [w for w in workers if w is not leader]
    tok = st["token"]
    f_marks = {w: w.mark() for w in followers}
    mark = leader.mark()

    done = leader.command(f"gil {3 * TTL}", timeout=90)
    gil = leader.wait_ev("gil_done", 5, start=mark)
    assert done
    assert gil["dur"] >= 2 * TTL, f"could not hold the GIL long enough: {gil}"

    st = leader.status()
    assert st["is_leader"] is True, st
    assert st["token"] == tok
    assert term_of(redis_server.cmd("GET", key)) == leader.node_id.encode()
    assert not [e for e in leader.snapshot()[mark:] if e.get("ev") == "revoked"]
    for w in followers:
        won = [e for e in w.snapshot()[f_marks[w]:] if e.get("ev") in ("lead_start", "elected")]
        assert not won, f"{w.name} was elected while the leader held the GIL: {won}"
    assert stays_true(lambda: current_leaders([leader] + followers) == [leader], 1.0)
    assert_no_overlap([leader] + followers)


# ---------------------------------------------------------------------------
# the network
# ---------------------------------------------------------------------------
@pytest.mark.node_timeout(90)
def test_partition_leader_steps_down_others_wait_for_expiry(rl, redis_server, proxy_factory,
                                                           spawn_worker, key):
    proxy = proxy_factory(redis_server.port)
    leader = spawn_worker(proxy.url(), ttl=TTL)
    leader.wait_ev("lead_start", 20)
    followers = [spawn_worker(redis_server.url(), ttl=TTL) for _ in range(2)]
    for w in followers:
        w.hello()
        wait_until(lambda: w.status()["leader"] == leader.node_id, 15, interval=0.2)
    old_tok = leader.intervals()[-1][1]
    marks = {w: w.mark() for w in [leader] + followers}

    proxy.blackhole()
    t_cut = boottime()
    expiry = _key_expiry_lower_bound(redis_server, key, leader.node_id)

    leader.wait_ev("revoked", TTL + 10, start=marks[leader])
    wait_until(lambda: not leader.is_leading_now(), 10)
    last_true = leader.intervals()[-1][3]
    assert last_true <= t_cut + TTL + SLACK, (
        f"partitioned leader still led {last_true - t_cut:.3f}s after the cut (ttl {TTL})")
    assert leader.status()["last_error"] is not None

    new = _one_leader(followers, timeout=TTL + 15)
    ev = _first_lead_start_after(new, marks[new])
    assert ev is not None and ev["tok"] > old_tok
    if expiry is not None:
        assert ev["t"] >= expiry - SLACK, (
            f"a follower took over {expiry - ev['t']:.3f}s before the key expired")

    proxy.heal()
    wait_until(lambda: leader.status()["leader"] == new.node_id, 15, interval=0.2,
               desc="the healed node sees the new leader")
    assert stays_true(lambda: current_leaders([leader] + followers) == [new], 1.0)
    assert_no_overlap([leader] + followers)


@pytest.mark.node_timeout(90)
def test_connection_resets_are_survived(rl, redis_server, proxy_factory, spawn_worker, key):
    proxy = proxy_factory(redis_server.port)
    a = spawn_worker(proxy.url(), ttl=TTL)
    a.wait_ev("lead_start", 20)
    b = spawn_worker(redis_server.url(), ttl=TTL)
    b.hello()
    for _ in range(3):
        proxy.close_all()
        time.sleep(0.3)
    _one_leader([a, b], timeout=15)
    # node a reconnected: it can see the current leader through the proxy
    leader = current_leaders([a, b])[0]
    wait_until(lambda: a.status()["leader"] == leader.node_id, 15, interval=0.2)
    assert term_of(redis_server.cmd("GET", key)) == leader.node_id.encode()
    assert_no_overlap([a, b])


def test_refused_connections_then_recovery(rl, redis_server, proxy_factory, make_node, key):
    proxy = proxy_factory(redis_server.port)
    proxy.set_mode("refuse")
    node = make_node(proxy.url(), ttl=TTL)
    node.start()
    wait_until(lambda: node.last_error is not None, 10)
    assert not node.is_leader
    proxy.set_mode("pass")
    assert node.wait_for_leadership(15)
    assert term_of(redis_server.cmd("GET", key)) == node.node_id.encode()
