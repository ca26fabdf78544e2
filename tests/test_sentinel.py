"""Sentinel: ``redis+sentinel://`` URLs, and no two leaders across a failover.

Real processes: a master, 2 replicas and 3 sentinels (``redis-server
--sentinel``) on loopback (tests/helpers/sentinel.py).  Three node processes
log their belief intervals on CLOCK_BOOTTIME; with ``min_replicas=1`` no two
intervals may overlap through ``SENTINEL FAILOVER``, a SIGSTOP of the master
beyond ``down-after-milliseconds`` and a SIGKILL of the master, and a leader
exists again within ttl + the failover time + 1 s (with a margin for this
shared machine)."""
from __future__ import annotations

import time

import pytest

from helpers.cli_fixtures import child_cmd, cli, no_traceback  # noqa: F401
from helpers.sentinel import SentinelSetup, role
from helpers.terms import term_of
from helpers.waiting import boottime, wait_until
from helpers.workers import assert_no_overlap, current_leaders

TTL = 1.0
pytestmark = [pytest.mark.node_timeout(150), pytest.mark.deployment]


@pytest.fixture
def sentinels():
    s = SentinelSetup(replicas=2, sentinels=3, down_after_ms=1000, failover_timeout_ms=3000)
    s.start()
    try:
        yield s
    finally:
        s.cleanup()


def _leader(workers, timeout):
    wait_until(lambda: len(current_leaders(workers)) == 1, timeout, interval=0.02,
               desc="exactly one leader among the workers")
    return current_leaders(workers)[0]


def _first_lead_after(workers, marks):
    starts = [e for w, m in zip(workers, marks) for e in w.snapshot()[m:]
              if e.get("ev") == "lead_start"]
    return min(starts, key=lambda e: e["t"]) if starts else None


def test_a_sentinel_url_leads_on_the_master(rl, sentinels, key):
    node = rl.DistributionNode(sentinels.url(), key, ttl=TTL)
    try:
        node.start()
        assert node.wait_for_leadership(timeout=20)
        master = sentinels.master
        value = master.cmd("GET", key)
        assert term_of(value) == node.node_id.encode()
        st = node.stats()
        assert st["master"] == f"127.0.0.1:{master.port}"
        assert [s["address"] for s in st["sentinels"]] == [f"127.0.0.1:{s.port}" for s in sentinels.sentinels]
        wait_until(lambda: all(s["state"] == "up" for s in node.stats()["sentinels"]), 10,
                   desc=f"every sentinel connected: {node.stats()['sentinels']}")
        for r in sentinels.servers:
            if r is not master:
                assert role(r) == "slave"
    finally:
        node.stop()


def test_lock_and_cli_take_a_sentinel_url(rl, sentinels, cli, key):
    url = sentinels.url()
    lock = rl.Lock(url, key, ttl=5.0)
    assert lock.acquire(timeout=20)
    try:
        assert term_of(sentinels.master.cmd("GET", key)) == lock.node_id.encode()
        rc, out, err = cli.run("status", key, "--json", "--url", url)
        assert rc == 0, err
        import json
        st = json.loads(out)
        assert st["holder"] == lock.node_id
    finally:
        lock.release()
    log = cli.log()
    rc, out, err = cli.run("run", key, "--ttl", "2", "--url", url,
                           "--", *child_cmd(log, "--sleep", "0", "--code", "3"), timeout=60)
    assert rc == 3, err
    assert no_traceback(err)
    assert sentinels.master.cmd("GET", key) is None
    w = cli.start("watch", key, "--count", "1", "--url", url)
    wait_until(lambda: any("initial" in line for line in w.out), 30, desc="watch's first line")
    node = rl.DistributionNode(url, key, ttl=2.0)
    try:
        node.start()
        assert node.wait_for_leadership(timeout=20)
        assert w.wait_exit(30) == 0
        assert node.node_id in w.out[-1]
    finally:
        node.stop()


def test_bad_sentinel_urls_are_value_errors(rl, key):
    for bad in ("redis+sentinel://127.0.0.1:26379",          # no service name
                "redis+sentinel://127.0.0.1:26379/",
                "redis+sentinel://127.0.0.1:99999/mymaster"):
        with pytest.raises(ValueError):
            rl.DistributionNode(bad, key)


def test_an_unknown_service_is_retried_and_said(rl, sentinels, key):
    url = sentinels.url().replace("/mymaster/", "/nosuchservice/")
    node = rl.DistributionNode(url, key, ttl=TTL, connect_timeout=0.5)
    try:
        node.start()
        wait_until(lambda: node.last_error and "nosuchservice" in node.last_error, 10,
                   desc="last_error names the unknown service")
        assert not node.is_leader
    finally:
        node.stop()


def _has_online_replica(server):
    try:
        info = server.cmd("INFO", "replication")
    except Exception:
        return False
    if isinstance(info, bytes):
        info = info.decode()
    return any(line.startswith("slave") and "state=online" in line for line in info.splitlines())


def test_a_named_server_that_is_not_the_master_is_refused(rl, sentinels, key):
    """The sentinels (real ones) are told to monitor a replica as the
    master of a second service: ROLE says slave on every connect, so the
    node never leads there and says why."""
    replica = next(r for r in sentinels.servers if role(r) == "slave")
    for sn in sentinels.sentinels:
        sn.cmd("SENTINEL", "MONITOR", "onreplica", "127.0.0.1", str(replica.port), "2")
    url = sentinels.url().replace("/mymaster/", "/onreplica/")
    node = rl.DistributionNode(url, key, ttl=TTL)
    try:
        node.start()
        wait_until(lambda: node.last_error and "is not the master (ROLE: slave)" in node.last_error, 15,
                   desc="last_error says the named server is not the master")
        assert node.stats()["master"] == f"127.0.0.1:{replica.port}"
        assert not node.wait_for_leadership(timeout=2 * TTL)
        assert replica.cmd("GET", key) is None
    finally:
        node.stop()


def _fault(sentinels, how):
    """Inflict the fault; return (t_fault, the old master, undo)."""
    old = sentinels.master
    t0 = boottime()
    if how == "failover":
        sentinels.failover()
        return t0, old, lambda: None
    if how == "sigstop":
        old.pause()
        sentinels.wait_switch(old.port, time.monotonic() + 40)
        return t0, old, old.resume
    old.kill()
    sentinels.wait_switch(old.port, time.monotonic() + 40)
    return t0, old, lambda: None


@pytest.mark.parametrize("how", ["failover", "sigstop", "sigkill"])
def test_failover_never_makes_two_leaders(rl, sentinels, spawn_worker, how):
    workers = [spawn_worker(sentinels.url(), ttl=TTL, retry_interval=0.05, min_replicas=1)
               for _ in range(3)]
    for w in workers:
        w.hello()
    _leader(workers, 30)
    time.sleep(0.5)
    marks = [w.mark() for w in workers]
    t_fault, old, undo = _fault(sentinels, how)
    t_switch = boottime()
    try:
        # With min_replicas=1 nothing counts until the new master has a
        # replica again: that is part of the failover here.
        new = sentinels.master
        wait_until(lambda: _has_online_replica(new), 60, interval=0.02,
                   desc="a replica online at the new master")
        t_synced = boottime()
        start = wait_until(lambda: _first_lead_after(workers, marks), 60, interval=0.02,
                           desc="a leader on the new master")
        failover_time = t_synced - t_fault
        gap = start["t"] - t_fault
        print(f"[sentinel] {how}: switch {t_switch - t_fault:.2f} s after the fault, a replica "
              f"online at the new master after {failover_time:.2f} s, a leader again "
              f"{gap:.2f} s after the fault (bound ttl + failover + 1 s = "
              f"{TTL + failover_time + 1:.2f} s)")
        # liveness, with a wide margin for the shared machine
        assert gap <= (TTL + failover_time + 1.0) * 2 + 2
        time.sleep(TTL * 2)
    finally:
        undo()
    time.sleep(0.3)
    assert_no_overlap(workers)   # exact: no two belief intervals overlap


def test_a_leader_steps_down_at_once_on_a_switch(rl, sentinels, spawn_worker):
    """SENTINEL FAILOVER: the leader stops believing long before its ttl runs
    out (it hears +switch-master, or its renew is refused), it does not wait
    for the deadline of a lease renewed on the demoted master."""
    ttl = 6.0
    w = spawn_worker(sentinels.url(), ttl=ttl, retry_interval=0.05)
    w.hello()
    _leader([w], 30)
    mark = w.mark()
    t0 = boottime()
    sentinels.failover()
    t_switch = boottime()
    end = w.wait_ev("lead_end", timeout=ttl * 3, start=mark)
    print(f"[sentinel] step-down {end['t'] - t0:.3f} s after SENTINEL FAILOVER, "
          f"{end['t'] - t_switch:+.3f} s from the sentinels agreeing on the new master (ttl {ttl} s)")
    assert end["t"] - t0 < ttl * 0.75


def test_a_readonly_reply_makes_the_leader_step_down_at_once(rl, sentinels, key):
    """The master is made a replica behind the sentinels' back (REPLICAOF):
    the next renew is answered READONLY and the leader steps down then, not
    at its deadline."""
    ttl = 6.0
    reasons = []
    node = rl.DistributionNode(sentinels.url(), key, ttl=ttl, on_revoked=reasons.append)
    try:
        node.start()
        assert node.wait_for_leadership(timeout=20)
        master = sentinels.master
        other = next(r for r in sentinels.servers if r is not master)
        t0 = time.monotonic()
        master.cmd("REPLICAOF", "127.0.0.1", str(other.port))
        wait_until(lambda: not node.is_leader, ttl, interval=0.01, desc="the leader steps down")
        took = time.monotonic() - t0
        wait_until(lambda: reasons, 5, desc="on_revoked")
        print(f"[sentinel] READONLY: step-down {took:.3f} s after REPLICAOF (ttl {ttl} s, renew every "
              f"{node.renew_interval:.1f} s): {reasons[0]!r}")
        assert "READONLY" in reasons[0]
        assert took < node.renew_interval + 1.5
    finally:
        node.stop()
