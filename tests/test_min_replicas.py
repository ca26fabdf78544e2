"""Replica-synced leases (min_replicas, Redis WAIT), against a real master
with two real replicas (``--replicaof``).

Safety checks are exact (a node never believes it leads past the deadline
its last confirmed renew allows; nobody leads while the replicas cannot
acknowledge); liveness bounds are wide.
"""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from helpers.redis_server import RedisServer

pytestmark = pytest.mark.deployment


def boottime() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def wait_until(pred, timeout, step=0.01):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return pred()


def info_field(srv: RedisServer, section: str, field: str) -> str | None:
    text = srv.cmd("INFO", section)
    text = text.decode() if isinstance(text, bytes) else text
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    return None


class Replicated:
    """A master (markers seeded, like a database in service for long) and
    replicas that got its data by a full sync."""

    def __init__(self, master: RedisServer, replicas: list[RedisServer]):
        self.master = master
        self.replicas = replicas

    def stop_replicas(self):
        for r in self.replicas:
            if r.proc is not None:
                r.pause()

    def resume_replicas(self):
        for r in self.replicas:
            if r.proc is not None and r.paused:
                r.resume()

    def connected(self) -> int:
        return int(info_field(self.master, "replication", "connected_slaves") or 0)


@pytest.fixture
def replicated(redis_factory):
    master = redis_factory()
    replicas = []
    try:
        for _ in range(2):
            r = RedisServer(unix_socket=False,
                            extra_args=["--replicaof", "127.0.0.1", str(master.port)])
            replicas.append(r)
            r.start(seed_marker=False)       # read-only; gets the master's markers by sync
        for r in replicas:
            assert wait_until(lambda: info_field(r, "replication", "master_link_status") == "up",
                              20), "replica did not sync:\n" + r.log_tail()
        rep = Replicated(master, replicas)
        assert wait_until(lambda: rep.connected() == 2, 20)
        # The marker came over with the sync.
        assert replicas[0].cmd("GET", "redlease:marker") is not None
        yield rep
    finally:
        for r in replicas:
            if r.proc is not None and r.paused:
                r.resume()
            r.cleanup()


class BeliefLog:
    """Samples is_leader of some objects on a thread; records on
    CLOCK_BOOTTIME when each sample began (a True sample proves the local
    deadline was later than that time)."""

    def __init__(self, objs, attr="is_leader"):
        self.objs = objs
        self.attr = attr
        self.samples = []          # (t_before, index) of True samples
        self.intervals = []        # (index, first True, last True)
        self._stop = threading.Event()
        self._open = {}
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            for i, o in enumerate(self.objs):
                t = boottime()
                if getattr(o, self.attr):
                    self.samples.append((t, i))
                    first, _ = self._open.get(i, (t, t))
                    self._open[i] = (first, t)
                elif i in self._open:
                    first, last = self._open.pop(i)
                    self.intervals.append((i, first, last))
            time.sleep(0.002)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join(5)
        for i, (first, last) in self._open.items():
            self.intervals.append((i, first, last))
        return False

    def true_after(self, t):
        return [(s, i) for s, i in self.samples if s > t]


def test_bad_min_replicas(rl, redis_server, key):
    url = redis_server.url()
    for bad in (-1, 101, 10 ** 30):
        with pytest.raises(ValueError, match="min_replicas must be from 0 to 100"):
            rl.DistributionNode(url, key, min_replicas=bad)
        with pytest.raises(ValueError, match="min_replicas"):
            rl.Lock(url, key, min_replicas=bad)
    for bad in (1.0, "1", True, None):
        with pytest.raises(TypeError, match="min_replicas must be an int"):
            rl.DistributionNode(url, key, min_replicas=bad)
    node = rl.DistributionNode(url, key)
    assert node.min_replicas == 0 and node.wait_timeout == 0.0


def test_wait_timeout_choice(rl, redis_server, key):
    url = redis_server.url()
    n = rl.DistributionNode(url, key, min_replicas=1)
    assert n.min_replicas == 1
    assert n.wait_timeout == pytest.approx(0.5)              # command_timeout 1 s / 2
    n = rl.DistributionNode(url, key, min_replicas=1, ttl=1.0)
    margin = 1.0 - n.renew_interval - (0.01 + 0.002)
    assert n.wait_timeout == pytest.approx(int(margin / 4 * 1000) / 1000)
    n = rl.Lock(url, key, min_replicas=2, command_timeout=0.2)
    assert n.min_replicas == 2 and n.wait_timeout == pytest.approx(0.1)


def test_leads_and_renews_with_one_replica(rl, replicated, make_node, key):
    node = make_node(replicated.master.url(), ttl=1.0, min_replicas=1)
    node.start()
    assert node.wait_for_leadership(20), node.last_error
    assert wait_until(lambda: node.stats()["renewals"] >= 3, 20), node.stats()
    assert node.is_leader, node.last_error
    st = node.stats()
    assert st["losses"] == 0 and st["wait_unconfirmed"] == 0, st
    for r in replicated.replicas:
        v = r.cmd("GET", key)
        assert v is not None and v.decode().startswith(node.node_id + "#"), v


@pytest.mark.node_timeout(180)
def test_replicas_stopped_leader_steps_down_nobody_leads(rl, replicated, make_node, key):
    url = replicated.master.url()
    ttl = 1.0
    nodes = [make_node(url, ttl=ttl, min_replicas=1, node_id="n%d" % i) for i in range(2)]
    for n in nodes:
        n.start()
    assert wait_until(lambda: any(n.is_leader for n in nodes), 20), [n.last_error for n in nodes]
    with BeliefLog(nodes) as log:
        time.sleep(0.5)
        replicated.stop_replicas()
        t_stop = boottime()        # both replicas stopped by now
        time.sleep(ttl * 4)
        # No belief past the deadline of a renew sent before the stop.
        late = log.true_after(t_stop + ttl)
        errors = [n.last_error for n in nodes]
        stats = [n.stats() for n in nodes]
        replicated.resume_replicas()
        t_cont = boottime()
        assert wait_until(lambda: any(n.is_leader for n in nodes), 30), [n.last_error for n in nodes]
    for i, first, last in log.intervals:
        print("belief interval node %d: %.6f .. %.6f (CLOCK_BOOTTIME; replicas stopped at %.6f, "
              "resumed at %.6f)" % (i, first, last, t_stop, t_cont))
    assert late == [] or min(s for s, _ in late) > t_cont, \
        "a node believed it led while no replica could acknowledge: %r" % late[:5]
    assert any(e and "WAIT: 0 of 1 replicas acknowledged" in e and "(min_replicas=1)" in e
               for e in errors), errors
    assert sum(s["wait_unconfirmed"] for s in stats) >= 1, stats
    assert any(s["losses"] >= 1 for s in stats), stats


def test_two_required_one_killed_never_leads(rl, replicated, make_node, key):
    replicated.replicas[1].kill()
    assert wait_until(lambda: replicated.connected() == 1, 20)
    node = make_node(replicated.master.url(), ttl=1.0, min_replicas=2, retry_interval=0.2)
    with BeliefLog([node]) as log:
        node.start()
        assert wait_until(lambda: node.stats()["wait_unconfirmed"] >= 3, 30), node.last_error
    assert log.samples == [], "led without 2 replicas"
    assert not node.is_leader
    err = node.last_error
    assert err and "WAIT: 1 of 2 replicas acknowledged within" in err and "(min_replicas=2)" in err, err
    assert "acquire at redis://127.0.0.1:%d" % replicated.master.port in err, err
    st = node.stats()
    assert st["acquisitions"] == 0, st
    node.stop()
    # Every unconfirmed grant was released (term-exact): nothing left in the key.
    assert wait_until(lambda: replicated.master.cmd("GET", key) is None, 10)


def test_lock_unconfirmed_returns_false(rl, replicated, key):
    url = replicated.master.url()
    lock = rl.Lock(url, key, ttl=1.0, min_replicas=1)
    assert lock.acquire(timeout=20), lock.last_error
    assert lock.owned
    lock.release()
    replicated.stop_replicas()
    try:
        assert lock.acquire(blocking=False) is False
        assert not lock.owned
        assert lock.acquire(timeout=1.5) is False
        assert not lock.owned
        err = lock.last_error
        assert err and "WAIT: 0 of 1 replicas acknowledged" in err, err
        assert lock.stats()["wait_unconfirmed"] >= 1
    finally:
        replicated.resume_replicas()
    assert lock.acquire(timeout=30), lock.last_error
    lock.release()


def test_unsynced_lease_not_stalled_by_wait(rl, replicated, make_node, key):
    """A min_replicas=0 lease on the same server keeps renewing while a
    synced one spends most of its time blocked in WAIT."""
    url = replicated.master.url()
    # Same command_timeout (part of the endpoint identity): only "synced" separates them.
    plain = make_node(url, key + ":plain", ttl=1.0, command_timeout=2.0)
    synced = make_node(url, key + ":synced", ttl=30.0, retry_interval=0.05, command_timeout=2.0,
                       min_replicas=1)
    assert synced.wait_timeout == pytest.approx(1.0)      # longer than plain's renew margin
    plain.start()
    assert plain.wait_for_leadership(20), plain.last_error
    replicated.stop_replicas()
    try:
        synced.start()
        before = plain.stats()["renewals"]
        with BeliefLog([plain]):
            assert wait_until(lambda: synced.stats()["wait_unconfirmed"] >= 3, 30), synced.last_error
            after = plain.stats()
        assert plain.is_leader, plain.last_error
        assert after["losses"] == 0, after
        assert after["renewals"] > before, after
        assert not synced.is_leader
        assert rl.engine_stats()["endpoints"] >= 2
    finally:
        replicated.resume_replicas()


def test_cli_run_min_replicas(rl, replicated, key, tmp_path):
    from helpers.cli_fixtures import Cli, no_traceback
    cli = Cli(tmp_path)
    try:
        url = replicated.master.url()
        rc, out, err = cli.run("run", key, "--ttl", "2", "--min-replicas", "2", "--url", url,
                               "--", "true")
        assert rc == 0, err
        assert no_traceback(err)
        rc, out, err = cli.run("run", key, "--min-replicas", "-1", "--url", url, "--", "true")
        assert rc == 2 and "--min-replicas" in err and "0 to 100" in err, err
        replicated.replicas[1].kill()
        assert wait_until(lambda: replicated.connected() == 1, 20)
        rc, out, err = cli.run("run", key, "--ttl", "2", "--min-replicas", "2", "--no-wait",
                               "--url", url, "--", "true")
        assert rc == 1, err
        assert "WAIT: 1 of 2 replicas acknowledged" in err and "--no-wait" in err, err
        assert no_traceback(err)
    finally:
        cli.cleanup()


def test_acl_without_wait_is_a_permission_error(rl, redis_server, make_node, key):
    redis_server.cmd("ACL", "SETUSER", "dave", "on", ">davepw", "~*", "&*", "+@all", "-wait")
    node = make_node(redis_server.url(user="dave", password="davepw"), ttl=1.0, min_replicas=1)
    node.start()
    with pytest.raises(rl.PermissionError) as ei:
        end = time.monotonic() + 20
        while time.monotonic() < end:
            node.wait_for_leadership(0.2)
    msg = str(ei.value)
    assert "wait" in msg.lower() and "NOPERM" in msg and "davepw" not in msg, msg
    assert "PING and WAIT (min_replicas)" in msg, msg
    assert not node.is_leader
    node.stop()
    lock = rl.Lock(redis_server.url(user="dave", password="davepw"), key + ":l", min_replicas=1)
    with pytest.raises(rl.PermissionError):
        lock.acquire(blocking=False)
