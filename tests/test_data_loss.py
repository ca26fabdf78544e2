"""Redis that forgets (restart without persistence, FLUSHALL, FLUSHDB) must
not make two leaders: a database without its ``redlease:marker`` grants
nothing until one ttl after the marker was stamped again, by when every
earlier holder's local deadline has passed.  Belief intervals are logged by
worker processes on CLOCK_BOOTTIME (shared by every process)."""
from __future__ import annotations

import time

import pytest

from helpers.terms import term_of
from helpers.waiting import boottime, stays_true, wait_until
from helpers.workers import all_intervals, assert_no_overlap, current_leaders

TTL = 1.0


def _one_leader(workers, timeout=20.0):
    wait_until(lambda: len(current_leaders(workers)) == 1, timeout, interval=0.02,
               desc="exactly one leader among the workers")
    return current_leaders(workers)[0]


def max_overlap(workers) -> float:
    """Largest overlap (s) of two processes' belief intervals; < 0: the smallest gap."""
    iv = sorted((s, e, pid) for pid, _tok, s, e in all_intervals(workers))
    worst = float("-inf")
    for i, (s1, e1, p1) in enumerate(iv):
        for s2, e2, p2 in iv[i + 1:]:
            if p1 != p2:
                worst = max(worst, min(e1, e2) - max(s1, s2))
    return worst


def _first_new_term(workers, marks):
    starts = [e for w, m in zip(workers, marks) for e in w.snapshot()[m:]
              if e.get("ev") == "lead_start"]
    return min(starts, key=lambda e: e["t"]) if starts else None


def _lose_data(srv, how):
    if how == "restart":
        srv.restart()                   # no persistence: everything is gone
    elif how == "flushall":
        srv.cmd("FLUSHALL")
    else:
        srv.cmd("FLUSHDB")


@pytest.mark.node_timeout(90)
@pytest.mark.parametrize("how", ["restart", "flushall", "flushdb"])
def test_data_loss_never_makes_two_leaders(rl, redis_server, spawn_worker, key, how):
    workers = [spawn_worker(redis_server.url(), ttl=TTL, retry_interval=0.05) for _ in range(3)]
    for w in workers:
        w.hello()
    _one_leader(workers)
    for _ in range(2):
        marks = [w.mark() for w in workers]
        t_loss = boottime()
        _lose_data(redis_server, how)
        # the old leader steps down at its local deadline; a new grant waits a ttl
        start = wait_until(lambda: _first_new_term(workers, marks), TTL * 3 + 15,
                           interval=0.02, desc="a new term after the data loss")
        assert start["t"] - t_loss >= TTL * 0.9
        _one_leader(workers)
    time.sleep(0.2)
    assert_no_overlap(workers)          # exact: no two belief intervals overlap
    worst = max_overlap(workers)
    print(f"[data-loss] {how}: largest overlap of two holders' belief intervals "
          f"{worst * 1000:.1f} ms (negative: the smallest gap)")
    assert worst < 0


def test_a_new_database_grants_only_a_ttl_after_its_marker(rl, redis_server, make_node, key):
    redis_server.cmd("DEL", "redlease:marker")
    node = make_node(redis_server.url(), ttl=TTL, retry_interval=0.05)
    t0 = boottime()
    node.start()
    wait_until(lambda: node.last_error and "redlease:marker" in node.last_error, 5,
               desc="the wait is reported in last_error")
    assert not node.is_leader
    assert node.wait_for_leadership(TTL + 10)
    assert boottime() - t0 >= TTL - 0.05     # Redis' ms clock
    assert node.last_error is None
    stamp, run_id = redis_server.cmd("GET", "redlease:marker").split(b":")
    assert int(stamp) > 1_600_000_000 * 10**6    # server TIME in microseconds
    assert run_id.decode() in redis_server.cmd("INFO", "server").decode()
    # an existing marker costs nothing: another key on the same database
    other = make_node(redis_server.url(), node_key=key + ":other", ttl=TTL)
    t1 = time.monotonic()
    other.start()
    assert other.wait_for_leadership(TTL * 0.8 + 5)
    assert time.monotonic() - t1 < TTL * 0.8 + 5


def test_a_marker_from_the_future_is_stamped_again(rl, redis_server, make_node, key):
    # The server clock stepped back: the marker is in the future.  Grants
    # resume a ttl after it is stamped again, not when the clock catches up.
    now_us = int(redis_server.cmd("TIME")[0]) * 10**6
    run_id = redis_server.cmd("GET", "redlease:marker").split(b":")[1].decode()
    redis_server.cmd("SET", "redlease:marker", "%d:%s" % (now_us + 3600 * 10**6, run_id))
    node = make_node(redis_server.url(), ttl=TTL, retry_interval=0.05)
    node.start()
    assert node.wait_for_leadership(TTL + 10)
    assert int(redis_server.cmd("GET", "redlease:marker").split(b":")[0]) <= now_us + 60 * 10**6


@pytest.mark.node_timeout(60)
def test_restart_from_an_older_snapshot_waits_though_the_marker_survived(
        rl, redis_server, proxy_factory, make_node, key):
    # The snapshot kept an old marker but not the acquire that came after it
    # (RDB save points, AOF everysec, a promoted replica): the marker names
    # the server process that stamped it, so the restarted one waits a ttl.
    ttl = 3.0
    redis_server.cmd("SAVE")                     # old marker on disk, key free
    proxy = proxy_factory(redis_server.port)
    a = make_node(proxy.url(), ttl=ttl, command_timeout=0.3, retry_interval=0.05)
    a.start()
    assert a.wait_for_leadership(10)
    proxy.blackhole()                            # a is cut off: it leads until its deadline
    redis_server.kill()
    redis_server.start(seed_marker=False)        # loads the snapshot: marker yes, key no
    assert redis_server.cmd("EXISTS", key) == 0 and redis_server.cmd("EXISTS", "redlease:marker")
    b = make_node(redis_server.url(), ttl=ttl, retry_interval=0.05)
    b.start()
    assert stays_true(lambda: not (a.is_leader and b.is_leader), ttl + 0.5), "two leaders"
    assert b.wait_for_leadership(ttl + 10)
    assert not a.is_leader


def test_tokens_increase_across_a_flush_and_the_counter_expires(rl, redis_server, make_node, key):
    node = make_node(redis_server.url(), ttl=TTL, retry_interval=0.05)
    node.start()
    assert node.wait_for_leadership(10)
    t1 = node.token
    tkey = "{%s}:redlease-token" % key
    pttl = redis_server.cmd("PTTL", tkey)
    assert 0 < pttl <= 86_400_000, "the token counter must expire (24 h retention)"
    redis_server.cmd("FLUSHALL")
    wait_until(lambda: node.token is not None and node.token != t1, TTL * 3 + 10,
               desc="re-elected after the flush")
    assert node.token > t1
    assert term_of(redis_server.cmd("GET", key)) == node.node_id.encode()
