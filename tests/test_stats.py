"""Counters (node.stats(), lock.stats(), redlease.engine_stats()) and logging.

Real redis-server only.  Faults are real: the key is overwritten by another
client, the server is SIGSTOPped or restarted.  Waits are bounded conditions;
the only timing checks are lower bounds (renewals do not come faster than the
renew interval allows), which a slow machine can only make easier.
"""
from __future__ import annotations

import logging
import threading
import time

import pytest

from helpers.lock_procs import make_lock  # noqa: F401 - fixture
from helpers.redis_server import free_port
from helpers.waiting import wait_until
from helpers.terms import term_of

NODE_STAT_KEYS = {"acquisitions", "renewals", "renew_failures", "losses", "last_renew_rtt_ms",
                  "renew_rtt_p50_ms", "renew_rtt_p99_ms"}
ENGINE_STAT_KEYS = {"threads", "connections", "leases", "commands", "reconnects", "endpoints"}


# ---------------------------------------------------------------------------
# per-lease counters
# ---------------------------------------------------------------------------
def test_node_stats_before_start(rl, redis_server, make_node):
    node = make_node(redis_server.url(), ttl=1.0)
    st = node.stats()
    assert isinstance(st, dict)
    assert NODE_STAT_KEYS <= set(st), st
    for k in ("acquisitions", "renewals", "renew_failures", "losses"):
        assert st[k] == 0 and isinstance(st[k], int) and not isinstance(st[k], bool), (k, st)
    for k in ("last_renew_rtt_ms", "renew_rtt_p50_ms", "renew_rtt_p99_ms"):
        assert isinstance(st[k], float) and st[k] == 0.0, (k, st)
    assert node.stats() is not st   # a fresh snapshot each call


def test_acquisitions_count_terms(rl, redis_server, make_node):
    node = make_node(redis_server.url(), ttl=3.0, retry_interval=0.2)
    node.start()
    assert node.wait_for_leadership(10)
    assert node.stats()["acquisitions"] == 1
    tok1 = node.token

    node.resign()                          # voluntary: a new term follows, no loss
    wait_until(lambda: node.is_leader and node.token != tok1, 10, desc="second term")
    st = node.stats()
    assert st["acquisitions"] == 2, st
    assert st["losses"] == 0, st

    node.stop()
    assert node.stats()["acquisitions"] == 2       # counters survive stop
    node.start()
    assert node.wait_for_leadership(10)
    st = node.stats()
    assert st["acquisitions"] == 3, st
    assert st["losses"] == 0, st


def test_renewals_grow_at_the_renew_interval(rl, redis_server, make_node):
    ttl = 1.2
    node = make_node(redis_server.url(), ttl=ttl)
    assert node.renew_interval == pytest.approx(ttl / 3, rel=0.05)
    t_start = time.monotonic()
    node.start()
    assert node.wait_for_leadership(10)
    want = 5
    wait_until(lambda: node.stats()["renewals"] >= want, 20, desc=f"{want} renewals")
    elapsed = time.monotonic() - t_start
    st = node.stats()
    # Renewals are planned on a grid that may make them a little early, never
    # much faster than every ttl/3: n renewals need at least ~(n-1) intervals.
    assert elapsed >= 0.8 * (st["renewals"] - 1) * node.renew_interval, (elapsed, st)
    assert st["last_renew_rtt_ms"] > 0, st
    assert 0 < st["renew_rtt_p50_ms"] <= st["renew_rtt_p99_ms"], st
    # a round trip that took longer than the lease would have lost it
    assert st["renew_rtt_p99_ms"] < ttl * 1000, st
    # keeps growing while leading
    n = st["renewals"]
    wait_until(lambda: node.stats()["renewals"] >= n + 2, 20, desc="more renewals")
    assert node.is_leader


def test_losses_count_when_the_key_is_overwritten(rl, redis_server, make_node, key):
    node = make_node(redis_server.url(), ttl=1.5, retry_interval=0.2)
    node.start()
    assert node.wait_for_leadership(10)
    redis_server.cmd("SET", key, "somebody-else")
    wait_until(lambda: node.stats()["losses"] == 1, 10, desc="one loss counted")
    wait_until(lambda: not node.is_leader, 5)
    st = node.stats()
    assert st["acquisitions"] == 1 and st["losses"] == 1, st

    # the key frees up: a second term, still one loss
    redis_server.cmd("DEL", key)
    assert node.wait_for_leadership(10)
    st = node.stats()
    assert st["acquisitions"] == 2 and st["losses"] == 1, st

    # and a second overwrite is a second loss
    redis_server.cmd("SET", key, "somebody-else")
    wait_until(lambda: node.stats()["losses"] >= 2, 10, desc="second loss counted")


def test_renew_failures_while_the_server_is_stopped(rl, redis_server, make_node, key):
    node = make_node(redis_server.url(), ttl=1.5, command_timeout=0.3, connect_timeout=0.3,
                     retry_interval=0.3)
    node.start()
    assert node.wait_for_leadership(10)
    wait_until(lambda: node.stats()["renewals"] >= 1, 10)
    f0 = node.stats()["renew_failures"]    # 0 unless the machine is badly overloaded
    redis_server.pause()
    try:
        wait_until(lambda: node.stats()["renew_failures"] > f0, 20,
                   desc="a renew failure while Redis is SIGSTOPped")
        assert node.last_error is not None
    finally:
        redis_server.resume()
    failures = node.stats()["renew_failures"]
    # back to normal: leading again (same or new term), renewals succeed again
    assert node.wait_for_leadership(20)
    r = node.stats()["renewals"]
    wait_until(lambda: node.is_leader and node.stats()["renewals"] > r, 20,
               desc="renewals after the server resumed")
    assert node.stats()["renew_failures"] >= failures


def test_lock_stats(rl, redis_server, make_lock, key):
    lock = make_lock(redis_server.url(), key, ttl=1.5)
    st = lock.stats()
    assert NODE_STAT_KEYS <= set(st), st
    assert st["acquisitions"] == 0
    assert lock.acquire(timeout=10)
    assert lock.stats()["acquisitions"] == 1
    wait_until(lambda: lock.stats()["renewals"] >= 2, 15, desc="lock renewals")
    st = lock.stats()
    assert 0 < st["renew_rtt_p50_ms"] <= st["renew_rtt_p99_ms"], st
    lock.release()
    assert lock.acquire(timeout=10)
    st = lock.stats()
    assert st["acquisitions"] == 2 and st["losses"] == 0, st
    lock.release()


def test_lock_without_renewal_counts_the_expiry_as_a_loss(rl, redis_server, make_lock, key):
    lock = make_lock(redis_server.url(), key, ttl=0.4, auto_renew=False)
    assert lock.acquire(timeout=10)
    wait_until(lambda: not lock.owned, 10, desc="the lease runs out")
    wait_until(lambda: lock.stats()["losses"] == 1, 10)
    st = lock.stats()
    assert st["renewals"] == 0 and st["acquisitions"] == 1, st
    with pytest.raises(rl.LockNotOwnedError):
        lock.release()


# ---------------------------------------------------------------------------
# engine-wide counters
# ---------------------------------------------------------------------------
def test_engine_stats_shape_and_threads(rl, redis_server, make_node):
    node = make_node(redis_server.url(), ttl=3.0)
    node.start()
    assert node.wait_for_leadership(10)
    st = rl.engine_stats()
    assert ENGINE_STAT_KEYS <= set(st), st
    for k in ENGINE_STAT_KEYS:
        assert isinstance(st[k], int) and st[k] >= 0, (k, st)
    assert st["threads"] == 2, st          # the engine thread and the dispatcher
    assert any(t.name == "redlease-dispatcher" for t in threading.enumerate())
    assert st["connections"] >= 1 and st["endpoints"] >= 1 and st["leases"] >= 1, st


def test_engine_commands_grow(rl, redis_server, make_node):
    node = make_node(redis_server.url(), ttl=0.6)
    node.start()
    assert node.wait_for_leadership(10)
    c0 = rl.engine_stats()["commands"]
    r0 = node.stats()["renewals"]
    wait_until(lambda: node.stats()["renewals"] >= r0 + 3, 15)
    # every renewal is a command sent
    assert rl.engine_stats()["commands"] >= c0 + 3


def test_engine_leases_follow_active_objects(rl, redis_server, make_node, key):
    url = redis_server.url()
    base = rl.engine_stats()["leases"]
    nodes = [make_node(url, f"{key}:{i}", ttl=1.0) for i in range(3)]
    for n in nodes:
        n.start()
    for n in nodes:
        assert n.wait_for_leadership(10)
    assert rl.engine_stats()["leases"] >= base + 3
    for n in nodes:
        n.stop()
    wait_until(lambda: rl.engine_stats()["leases"] <= base, 10,
               desc="stopped nodes no longer counted as active leases")


def test_engine_reconnects_after_server_restart(rl, redis_server, make_node, key):
    node = make_node(redis_server.url(), ttl=1.0, retry_interval=0.2, connect_timeout=0.5)
    node.start()
    assert node.wait_for_leadership(10)
    before = rl.engine_stats()
    redis_server.restart()          # same port, data gone
    wait_until(lambda: rl.engine_stats()["reconnects"] > before["reconnects"], 20,
               desc="engine reconnected after the restart")
    # the node notices its key is gone and is elected again on the new server
    wait_until(lambda: term_of(redis_server.cmd("GET", key)) == node.node_id.encode(), 20,
               desc="node holds the key on the restarted server")
    assert node.wait_for_leadership(10)
    after = rl.engine_stats()
    assert after["commands"] > before["commands"]
    assert after["connections_opened"] > before["connections_opened"]


# ---------------------------------------------------------------------------
# logging
# ---------------------------------------------------------------------------
def _redlease_records(caplog, level=None):
    return [r for r in list(caplog.records)
            if r.name.startswith("redlease") and (level is None or r.levelno == level)]


def _record_text(r) -> str:
    return f"{r.getMessage()} {r.args!r} {r.exc_text or ''}"


def _mentions(r, *needles) -> bool:
    msg = r.getMessage()
    return all(n in msg for n in needles)


def test_election_and_loss_logged_at_info(rl, redis_server, make_node, key, caplog):
    caplog.set_level(logging.INFO, logger="redlease")
    node = make_node(redis_server.url(), ttl=0.6, retry_interval=0.3, node_id="log-node-7")
    node.start()
    assert node.wait_for_leadership(10)
    elected = wait_until(
        lambda: [r for r in _redlease_records(caplog, logging.INFO)
                 if _mentions(r, key, "log-node-7")],
        10, desc="an INFO record for the election naming key and node id")
    assert elected[0].threadName == "redlease-dispatcher"
    n_before = len(_redlease_records(caplog))

    redis_server.cmd("SET", key, "intruder")
    wait_until(lambda: node.stats()["losses"] == 1, 10)
    loss = wait_until(
        lambda: [r for r in _redlease_records(caplog)[n_before:]
                 if r.levelno == logging.INFO and _mentions(r, key, "log-node-7")],
        10, desc="an INFO record for the loss naming key and node id")
    assert loss[0].threadName == "redlease-dispatcher"
    # a loss is not an error
    assert not [r for r in _redlease_records(caplog)[n_before:] if r.levelno >= logging.ERROR]


def test_errors_logged_at_warning_without_password(rl, redis_factory, make_node, key, caplog):
    caplog.set_level(logging.DEBUG, logger="redlease")
    secret = "S3cret-Pw-9d1f"
    wrong = "Wr0ng-Pw-77ab"
    srv = redis_factory(password=secret)
    good = make_node(srv.url(), f"{key}:good", ttl=1.0, node_id="good-node")
    bad = make_node(srv.url(password=wrong), f"{key}:bad", ttl=1.0, node_id="bad-node",
                    retry_interval=0.3)
    bad_q = make_node(f"redis://127.0.0.1:{srv.port}/?password={wrong}", f"{key}:badq", ttl=1.0,
                      node_id="badq-node", retry_interval=0.3)
    dead = make_node(f"redis://:{secret}@127.0.0.1:{free_port()}", f"{key}:dead", ttl=1.0,
                     node_id="dead-node", connect_timeout=0.3, retry_interval=0.3)
    for n in (good, bad, bad_q, dead):
        n.start()
    assert good.wait_for_leadership(10)
    for n, k in ((bad, f"{key}:bad"), (bad_q, f"{key}:badq"), (dead, f"{key}:dead")):
        recs = wait_until(
            lambda: [r for r in _redlease_records(caplog, logging.WARNING)
                     if _mentions(r, k, n.node_id)],
            15, desc=f"a WARNING record naming {k} and {n.node_id}")
        assert recs[0].threadName == "redlease-dispatcher"
        wait_until(lambda: n.last_error is not None, 10)
        assert secret not in n.last_error and wrong not in n.last_error, n.last_error
    wait_until(lambda: [r for r in _redlease_records(caplog, logging.INFO)
                        if _mentions(r, f"{key}:good", "good-node")], 10)
    for n in (good, bad, bad_q, dead):
        for text in (repr(n), str(n), n.url):
            assert secret not in text and wrong not in text, text
    for r in _redlease_records(caplog):
        text = _record_text(r)
        assert secret not in text and wrong not in text, text
    for text in caplog.text.splitlines():
        assert secret not in text and wrong not in text, text
