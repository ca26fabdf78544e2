"""``redlease run`` gives up at once on what waiting cannot fix (refused
credentials, an unknown user, NOPERM, a bad database; with --no-wait also an
unreachable server): exit 1, one line on stderr, the password masked.
Without --no-wait an unreachable server is waited for, with one line per
change of state, not one per retry."""
from __future__ import annotations

import signal
import time

import pytest

from helpers.cli_fixtures import cli, child_cmd, no_traceback, read_log  # noqa: F401
from helpers.redis_server import free_port
from helpers.waiting import wait_until

SECRET = "s3cret-Pw"


def _gives_up(cli, url, key, *extra):
    log = cli.log()
    t0 = time.monotonic()
    rc, out, err = cli.run("run", key, "--ttl", "1", *extra, "--url", url, "--",
                           *child_cmd(log, "--sleep", "0"), timeout=15)
    took = time.monotonic() - t0
    assert rc == 1, err
    assert no_traceback(err), err
    assert len(err.strip().splitlines()) == 1, err
    assert read_log(log) == []                 # CMD never ran
    assert took < 10, took                     # liveness bound only
    return err, took


@pytest.mark.node_timeout(30)
def test_wrong_password_exits_1_at_once(cli, redis_factory, key):
    srv = redis_factory(password=SECRET)
    err, took = _gives_up(cli, srv.url(password="wrong-" + SECRET), key)
    print(f"\nrun exits {took:.3f} s after start on a wrong password")
    assert "authentication" in err and SECRET not in err and "***" in err, err


@pytest.mark.node_timeout(30)
def test_unknown_user_exits_1(cli, redis_server, key):
    err, _ = _gives_up(cli, redis_server.url(user="nobody", password=SECRET), key)
    assert "authentication" in err and SECRET not in err, err


@pytest.mark.node_timeout(30)
@pytest.mark.parametrize("acl", [["-@all"], ["+@all", "~other:*"]], ids=["no-commands", "no-key"])
def test_noperm_exits_1(cli, redis_server, key, acl):
    redis_server.cmd("ACL", "SETUSER", "limited", "on", ">" + SECRET, "&*", *acl)
    err, _ = _gives_up(cli, redis_server.url(user="limited", password=SECRET), key)
    assert "NOPERM" in err and SECRET not in err, err


@pytest.mark.node_timeout(30)
def test_bad_db_exits_1(cli, redis_server, key):
    err, _ = _gives_up(cli, redis_server.url(db=99), key)
    assert "SELECT" in err or "DB index" in err, err


@pytest.mark.node_timeout(30)
def test_no_wait_unreachable_exits_1(cli, key):
    err, _ = _gives_up(cli, f"redis://127.0.0.1:{free_port()}/0", key, "--no-wait")
    assert "cannot" in err, err


@pytest.mark.node_timeout(40)
def test_unreachable_is_waited_for_with_one_line(cli, redis_factory, key):
    """A follower whose server goes away: connection lost, then refused
    reconnects, then back (without its data): one warning, one line when it
    answers again."""
    srv = redis_factory()
    srv.cmd("SET", key, "someone-else")         # no expiry: the runner follows
    log = cli.log()
    r = cli.start("run", key, "--ttl", "1", "--url", srv.url(), "--",
                  *child_cmd(log, "--sleep", "0"))
    wait_until(lambda: "held by someone-else" in r.stderr(), timeout=10)
    srv.kill()
    wait_until(lambda: "warning" in r.stderr(), timeout=10)
    time.sleep(1.5)                             # several retries at ttl/3
    assert r.proc.poll() is None                # still waiting
    # back without its data: no grants for one ttl, time enough to put the
    # key back before the runner could take it
    srv.restart(seed_marker=False)
    srv.cmd("SET", key, "someone-else")
    srv.seed_markers()
    wait_until(lambda: "answers again" in r.stderr(), timeout=10)
    r.proc.send_signal(signal.SIGINT)
    assert r.wait_exit(15) == 130
    err = r.stderr()
    assert err.count("warning") == 1, err
    assert err.count("answers again") == 1, err
    assert read_log(log) == []


@pytest.mark.node_timeout(30)
def test_no_wait_waits_out_a_young_database(cli, redis_server, key):
    """A database without its redlease:marker grants nothing for one ttl: a
    wait that ends by itself, not an error, also with --no-wait."""
    redis_server.cmd("DEL", "redlease:marker")
    log = cli.log()
    rc, out, err = cli.run("run", key, "--ttl", "1", "--no-wait", "--url", redis_server.url(),
                           "--", *child_cmd(log, "--sleep", "0", "--code", "3"), timeout=15)
    assert rc == 3, err
    assert "warning" not in err and no_traceback(err), err
    assert len(read_log(log)) >= 1


@pytest.mark.node_timeout(30)
def test_no_wait_silent_server_exits_1_after_connect_timeout(cli, redis_server, proxy_factory,
                                                             key):
    """A server that accepts but never answers (blackholed): exit 1 once the
    connection attempt times out, not a hang."""
    proxy = proxy_factory(redis_server.port)
    proxy.blackhole()
    err, took = _gives_up(cli, proxy.url(), key, "--no-wait", "--connect-timeout", "0.5")
    assert "timed out" in err or "no reply" in err or "cannot" in err, err
    print(f"\n--no-wait on a silent server: exit 1 after {took:.3f} s")
