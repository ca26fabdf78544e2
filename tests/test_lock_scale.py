"""Many Locks in one process share one engine thread and a few connections.

The locks live in a fresh child process (helpers/lock_worker.py, mode
"many"): engine_stats() counters are process wide and cumulative
("connections" counts connections opened), so only a process that did nothing
else gives exact numbers.  The test process looks at Redis from outside.
"""
from __future__ import annotations

import pytest

from helpers.lock_procs import lock_proc  # noqa: F401 - fixture
from helpers.resp import RespClient
from helpers.terms import term_of

N_LOCKS = 1000
TTL = 2.0


def _other_clients(client: RespClient) -> list[str]:
    """CLIENT LIST lines of every connection but the asking one."""
    text = client.execute("CLIENT", "LIST").decode()
    me = client.execute("CLIENT", "ID")
    return [line for line in text.splitlines() if line and not line.startswith(f"id={me} ")]


def _check_threads(ev: dict, before: dict):
    grown = ev["py_threads"] - before["py_threads"]
    assert grown <= 1, f"Python threads grew by {grown}: {ev['thread_names']}"
    assert ev["thread_names"].count("redlease-dispatcher") == 1, ev["thread_names"]
    assert ev["os_threads"] - before["os_threads"] <= 2, (before["os_threads"], ev["os_threads"])
    st = ev["engine"]
    # One C engine thread.  engine_stats() counted only that thread at first;
    # since commit 7981de3 its Python wrapper adds the dispatcher thread too.
    # Either way: engine + dispatcher at most, whatever the number of locks.
    assert st["threads"] in (1, 2), st
    assert st["connections"] < 10, st


@pytest.mark.node_timeout(120)
def test_thousand_locks_one_engine_thread(rl, redis_server, lock_proc, key):
    keys = [f"{key}:{i}" for i in range(N_LOCKS)]
    p = lock_proc({"mode": "many", "url": redis_server.url(), "key": key,
                   "n": N_LOCKS, "ttl": TTL})
    before = p.wait_ev("before", 30)
    assert before["engine"]["connections"] == 0, before

    held = p.wait_ev("held", 90)
    assert held["owned"] == N_LOCKS
    assert held["tokens_ok"]
    _check_threads(held, before)
    assert held["engine"]["leases"] >= N_LOCKS, held["engine"]
    node_ids = [nid.encode() for nid in held["node_ids"]]
    with RespClient("127.0.0.1", redis_server.port, timeout=10.0) as c:
        assert term_of(c.execute("MGET", *keys)) == node_ids
        engine_conns = _other_clients(c)
    assert 1 <= len(engine_conns) < 10, engine_conns

    after = p.wait_ev("after_ttl", 30)
    assert after["owned"] == N_LOCKS, f"{N_LOCKS - after['owned']} locks lost their lease"
    assert after["min_renewals"] >= 1
    _check_threads(after, before)
    with RespClient("127.0.0.1", redis_server.port, timeout=10.0) as c:
        assert term_of(c.execute("MGET", *keys)) == node_ids, "keys expired or changed despite renewal"
        pttls = [c.execute("PTTL", k) for k in keys[::100]]
        assert all(0 < pt <= TTL * 1000 for pt in pttls), pttls
        assert len(_other_clients(c)) < 10

    p.send("release")
    rel = p.wait_ev("released", 60)
    assert rel["owned"] == 0
    assert not any(rel["locked_sample"]), rel["locked_sample"]
    _check_threads(rel, before)
    with RespClient("127.0.0.1", redis_server.port, timeout=10.0) as c:
        assert c.execute("EXISTS", *keys) == 0
    p.proc.stdin.close()
    assert p.wait_exit(30) == 0, p.stderr()
