"""``redlease run KEY --once-per DURATION``: CMD runs at most once per period
across hosts, whenever each host starts; a completed run leaves a marker
(period as TTL, the run's token and exit code) that later runs skip on."""
from __future__ import annotations

import json

import pytest

from helpers.cli_fixtures import cli, child_cmd, no_traceback, read_log, wait_log  # noqa: F401


def marker_key(key):
    return "{" + key + "}:redlease-once"


def starts(log):
    return [e for e in read_log(log) if e["ev"] == "start"]


@pytest.mark.node_timeout(40)
def test_once_per_runs_once_then_skips(cli, redis_server, key):
    url = redis_server.url()
    log = cli.log()
    rc, out, err = cli.run("run", key, "--ttl", "1", "--once-per", "1h", "--node-id", "host-a",
                           "--url", url, "--", *child_cmd(log, "--sleep", "0", "--code", "5"))
    assert rc == 5, err
    (start,) = starts(log)
    m = json.loads(redis_server.cmd("GET", marker_key(key)))
    assert m["token"] == int(start["token"]) and m["exit"] == 5 and m["node_id"] == "host-a"
    assert 3590_000 < redis_server.cmd("PTTL", marker_key(key)) <= 3600_000
    # a host that starts later (after the first run ended) skips it
    rc, out, err = cli.run("run", key, "--ttl", "1", "--once-per", "1h", "--node-id", "host-b",
                           "--url", url, "--", *child_cmd(log, "--sleep", "0"))
    assert rc == 0, err
    assert "already ran" in err and no_traceback(err), err
    assert len(starts(log)) == 1
    # once the period is over, it runs again
    redis_server.cmd("PEXPIRE", marker_key(key), "1")
    rc, out, err = cli.run("run", key, "--ttl", "1", "--once-per", "24h", "--url", url, "--",
                           *child_cmd(log, "--sleep", "0"))
    assert rc == 0 and len(starts(log)) == 2, err


@pytest.mark.node_timeout(40)
def test_once_per_concurrent_hosts_run_it_once(cli, redis_server, key):
    """Two hosts at once: the follower waits, leads after the run, sees the marker."""
    url = redis_server.url()
    log = cli.log()
    cmd = child_cmd(log, "--sleep", "0.5")
    a = cli.start("run", key, "--ttl", "1", "--once-per", "1h", "--url", url, "--", *cmd)
    wait_log(log, lambda e: e["ev"] == "start")
    b = cli.start("run", key, "--ttl", "1", "--once-per", "1h", "--url", url, "--", *cmd)
    assert a.wait_exit(15) == 0, a.stderr()
    assert b.wait_exit(15) == 0, b.stderr()
    assert len(starts(log)) == 1, read_log(log)


def test_marker_write_needs_the_lease(rl, redis_server, key, make_node):
    """The marker script writes only while the lease is the writer's term."""
    from redlease import _cli_once
    url = redis_server.url()
    node = make_node(url, ttl=5)
    node.start()
    assert node.wait_for_leadership(10)
    tok = node.token
    assert not _cli_once.write_marker(url, key, node.node_id, tok + 1, 0, 60, 5)   # other term
    assert not _cli_once.write_marker(url, key, "someone-else", tok, 0, 60, 5)     # other holder
    assert redis_server.cmd("GET", marker_key(key)) is None
    assert _cli_once.write_marker(url, key, node.node_id, tok, 0, 60, 5)
    node.stop()
    assert not _cli_once.write_marker(url, key, node.node_id, tok, 0, 60, 5)       # released
    assert json.loads(redis_server.cmd("GET", marker_key(key)))["token"] == tok


@pytest.mark.node_timeout(30)
def test_once_per_with_restart_is_refused(cli, redis_server, key):
    rc, out, err = cli.run("run", key, "--once-per", "1h", "--restart", "--url",
                           redis_server.url(), "--", "true")
    assert rc == 2 and "--once-per" in err, err


@pytest.mark.node_timeout(40)
@pytest.mark.parametrize("form", ["unix-db", "password-db"])
def test_once_per_url_forms(cli, redis_factory, key, form):
    """The marker goes to the server and database of the URL (unix socket,
    AUTH, db index), where a later run finds it."""
    srv = redis_factory(password="pw-1" if form == "password-db" else None)
    url = srv.unix_url(db=3) if form == "unix-db" else srv.url(db=3)
    log = cli.log()
    for _ in range(2):
        rc, out, err = cli.run("run", key, "--ttl", "1", "--once-per", "10m", "--url", url, "--",
                               *child_cmd(log, "--sleep", "0"))
        assert rc == 0, err
    assert len(starts(log)) == 1
    with srv.client() as c:
        if srv.password:
            c.execute("AUTH", srv.password)
        c.execute("SELECT", "3")
        assert json.loads(c.execute("GET", marker_key(key)))["exit"] == 0


@pytest.mark.node_timeout(30)
def test_once_per_unreachable(cli, key):
    """--once-per does not change the rule: waited for, exit 1 with --no-wait."""
    import time
    from helpers.redis_server import free_port
    url = f"redis://127.0.0.1:{free_port()}/0"
    log = cli.log()
    rc, out, err = cli.run("run", key, "--once-per", "1h", "--no-wait", "--url", url, "--",
                           *child_cmd(log, "--sleep", "0"), timeout=15)
    assert rc == 1 and len(err.strip().splitlines()) == 1 and no_traceback(err), err
    r = cli.start("run", key, "--ttl", "1", "--once-per", "1h", "--url", url, "--",
                  *child_cmd(log, "--sleep", "0"))
    time.sleep(1.0)
    assert r.proc.poll() is None, r.stderr()
    r.proc.terminate()
    assert r.wait_exit(15) == 143
    assert starts(log) == []
