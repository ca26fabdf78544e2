"""``redlease run KEY -- CMD``: CMD runs only while leading, signals are passed
on, a lost lease stops it, its exit code comes back, --restart runs it again."""
from __future__ import annotations

import json
import os
import signal

import pytest

from helpers.cli_fixtures import (cli, child_cmd, no_traceback, pid_alive, read_log,  # noqa: F401
                                  wait_gone, wait_log)
from helpers.waiting import stays_true, wait_until
from helpers.terms import term_of


def starts(log):
    return [e for e in read_log(log) if e["ev"] == "start"]


def signals(log):
    return [e["sig"] for e in read_log(log) if e["ev"] == "signal"]


@pytest.mark.node_timeout(30)
def test_run_exit_code_env_and_release(cli, redis_server, key):
    url = redis_server.url()
    log = cli.log()
    rc, out, err = cli.run("run", key, "--ttl", "5", "--node-id", "runner-a", "--url", url,
                           "--", *child_cmd(log, "--sleep", "0", "--code", "7"))
    assert rc == 7, err
    assert no_traceback(err)
    (start,) = starts(log)
    assert start["key"] == key and start["node_id"] == "runner-a"
    assert int(start["token"]) > 0
    assert start["pgid"] == start["pid"]        # its own process group
    # the lease is released when CMD exits; the token stays the last one issued
    assert redis_server.cmd("GET", key) is None
    st = json.loads(cli.run("status", key, "--json", "--url", url)[1])
    assert st["holder"] is None and st["token"] == int(start["token"])


@pytest.mark.node_timeout(30)
def test_run_no_inherited_redis_socket(cli, redis_server, key):
    log = cli.log()
    env = cli.env({"REDIS_PORT": str(redis_server.port)})
    rc, out, err = cli.run("run", key, "--ttl", "5", "--url", redis_server.url(), "--",
                           *child_cmd(log, "--sleep", "0", "--fds"), env=env)
    assert rc == 0, err
    (fds,) = [e for e in read_log(log) if e["ev"] == "fds"]
    assert fds["redis_fds"] == [], fds
    sockets = {fd: t for fd, t in fds["fds"].items() if t.startswith("socket:")}
    assert not sockets, f"CMD inherited sockets: {sockets}"
    assert set(fds["fds"]) <= {"0", "1", "2", "3"}, fds   # 3: the listing's own fd


@pytest.mark.node_timeout(45)
def test_only_the_leader_runs_cmd_and_signals_are_forwarded(cli, redis_server, key):
    url = redis_server.url()
    log = cli.log()
    cmd = child_cmd(log, "--term-code", "5")
    r1 = cli.start("run", key, "--ttl", "2", "--node-id", "r1", "--url", url, "--", *cmd)
    first = wait_log(log, lambda e: e["ev"] == "start", desc="the first CMD")
    r2 = cli.start("run", key, "--ttl", "2", "--node-id", "r2", "--url", url, "--", *cmd)
    # the second runner follows: its CMD does not start
    assert first["node_id"] == "r1"
    wait_until(lambda: "held by r1" in r2.stderr(), timeout=15, desc="r2 following r1")
    assert stays_true(lambda: len(starts(log)) == 1 and r2.proc.poll() is None, 1.0)

    # SIGTERM to the leading runner reaches CMD, whose exit code comes back;
    # the release hands the lease to r2, which starts its own CMD
    r1.proc.send_signal(signal.SIGTERM)
    assert r1.wait_exit(15) == 5, r1.stderr()
    assert signals(log) == [signal.SIGTERM]
    wait_gone(first["pid"])
    second = wait_log(log, lambda e: e["ev"] == "start" and e["node_id"] == "r2",
                      desc="r2's CMD")
    assert int(second["token"]) > int(first["token"])

    # SIGINT (Ctrl-C) is passed on the same way
    r2.proc.send_signal(signal.SIGINT)
    assert r2.wait_exit(15) == 5, r2.stderr()
    assert signals(log) == [signal.SIGTERM, signal.SIGINT]
    for r in (r1, r2):
        assert no_traceback(r.stderr()), r.stderr()
    assert redis_server.cmd("GET", key) is None


@pytest.mark.node_timeout(30)
@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_follower_stops_quietly(cli, redis_server, key, sig, code):
    redis_server.cmd("SET", key, "someone-else", "PX", 60000)
    log = cli.log()
    r = cli.start("run", key, "--ttl", "2", "--url", redis_server.url(), "--",
                  *child_cmd(log))
    wait_until(lambda: "held by someone-else" in r.stderr(), timeout=15)
    r.proc.send_signal(sig)
    assert r.wait_exit(15) == code
    assert no_traceback(r.stderr()), r.stderr()
    assert starts(log) == []


@pytest.mark.node_timeout(30)
def test_lost_lease_terminates_cmd(cli, redis_server, key):
    log = cli.log()
    r = cli.start("run", key, "--ttl", "1", "--grace", "5", "--url", redis_server.url(), "--",
                  *child_cmd(log, "--term-code", "0"))
    start = wait_log(log, lambda e: e["ev"] == "start")
    redis_server.cmd("SET", key, "someone-else")       # the lease is taken away
    # the next renewal (within ~ttl/3) fails: CMD gets SIGTERM and exits
    wait_log(log, lambda e: e["ev"] == "signal", timeout=10, desc="SIGTERM to CMD")
    assert signals(log) == [signal.SIGTERM]
    assert r.wait_exit(15) == 4, r.stderr()              # 4: the lease was lost
    wait_gone(start["pid"])
    assert "lost the lease" in r.stderr()
    assert term_of(redis_server.cmd("GET", key)) == b"someone-else"


@pytest.mark.node_timeout(30)
def test_lost_lease_sigkill_after_grace(cli, redis_server, key):
    log = cli.log()
    r = cli.start("run", key, "--ttl", "1", "--grace", "0.5", "--url", redis_server.url(),
                  "--", *child_cmd(log, "--ignore-term"))
    start = wait_log(log, lambda e: e["ev"] == "start")
    redis_server.cmd("SET", key, "someone-else")
    wait_log(log, lambda e: e["ev"] == "signal", timeout=10, desc="SIGTERM to CMD")
    assert r.wait_exit(15) == 4, r.stderr()
    wait_gone(start["pid"])
    assert "SIGKILL" in r.stderr()


@pytest.mark.node_timeout(40)
def test_restart_runs_cmd_again_after_it_exits(cli, redis_server, key):
    log = cli.log()
    r = cli.start("run", key, "--ttl", "1", "--restart", "--url", redis_server.url(), "--",
                  *child_cmd(log, "--sleep", "0.1", "--code", "3"))
    wait_until(lambda: len(starts(log)) >= 2, timeout=20, desc="CMD started twice")
    tokens = [int(e["token"]) for e in starts(log)]
    assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens)   # a new term each time
    assert r.proc.poll() is None      # --restart: still running
    r.proc.send_signal(signal.SIGTERM)
    # CMD's code (3 by itself, 0 on SIGTERM) or 128+SIGTERM when no CMD was running
    assert r.wait_exit(15) in (0, 3, 143), r.stderr()
    assert no_traceback(r.stderr())


@pytest.mark.node_timeout(40)
def test_restart_after_lost_lease(cli, redis_server, key):
    log = cli.log()
    r = cli.start("run", key, "--ttl", "1", "--restart", "--url", redis_server.url(), "--",
                  *child_cmd(log, "--term-code", "0"))
    first = wait_log(log, lambda e: e["ev"] == "start")
    redis_server.cmd("SET", key, "someone-else", "PX", 1000)
    wait_log(log, lambda e: e["ev"] == "signal", timeout=10, desc="SIGTERM to CMD")
    wait_gone(first["pid"])
    # once someone-else's key expires, the runner leads again and starts CMD anew
    second = wait_log(log, lambda e: e["ev"] == "start" and e["pid"] != first["pid"],
                      timeout=15, desc="CMD started again")
    assert int(second["token"]) > int(first["token"])
    assert r.proc.poll() is None
    r.proc.send_signal(signal.SIGINT)
    assert r.wait_exit(15) == 0, r.stderr()      # CMD's code after the forwarded SIGINT
    assert signals(log) == [signal.SIGTERM, signal.SIGINT]


@pytest.mark.node_timeout(30)
def test_cmd_killed_when_runner_dies(cli, redis_server, key):
    log = cli.log()
    r = cli.start("run", key, "--ttl", "2", "--url", redis_server.url(), "--",
                  *child_cmd(log))
    start = wait_log(log, lambda e: e["ev"] == "start")
    os.kill(r.proc.pid, signal.SIGKILL)
    wait_gone(start["pid"])


@pytest.mark.node_timeout(30)
def test_cmd_not_found_exits_127(cli, redis_server, key):
    rc, out, err = cli.run("run", key, "--url", redis_server.url(), "--",
                           "/nonexistent/redlease-test-cmd")
    assert rc == 127
    assert "cannot run" in err and no_traceback(err)
    assert redis_server.cmd("GET", key) is None


def test_pid_alive_helper():
    assert pid_alive(os.getpid())


@pytest.mark.node_timeout(30)
def test_no_wait_skips_when_held_and_runs_when_free(cli, redis_server, key):
    url = redis_server.url()
    log = cli.log()
    redis_server.cmd("SET", key, "someone-else", "PX", "20000")
    rc, out, err = cli.run("run", key, "--no-wait", "--url", url, "--",
                           *child_cmd(log, "--sleep", "0", "--code", "7"))
    assert rc == 0, err
    assert no_traceback(err)
    assert starts(log) == []                                  # CMD did not run
    assert term_of(redis_server.cmd("GET", key)) == b"someone-else"    # nothing taken or released
    redis_server.cmd("DEL", key)
    rc, out, err = cli.run("run", key, "--no-wait", "--url", url, "--",
                           *child_cmd(log, "--sleep", "0", "--code", "7"))
    assert rc == 7, err
    assert len(starts(log)) == 1
