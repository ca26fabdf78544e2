"""``redlease run`` is a safe singleton: when the leader's renewals fail, its
CMD (which ignores SIGTERM) and CMD's process group are gone before the
follower can acquire, so the follower's CMD never starts while the old one
lives.  And --grace must fit the ttl.

The leader reaches Redis through a TCP proxy that the test blackholes; the
follower connects directly.  Each CMD takes a flock at start (overlap is
recorded exactly: a flock outlives nothing but its process) and logs its
start on CLOCK_BOOTTIME; the test watches each CMD's death through a pidfd
and records it on the same clock.

REDLEASE_TAKEOVERS=20 runs 20 takeovers (the figure for the README / issue:
``REDLEASE_TAKEOVERS=20 .venv/bin/python -m pytest -q -s
tests/test_cli_run_singleton.py -k takeovers``); the suite does 3.
"""
from __future__ import annotations

import os
import re
import select
import signal
import threading
import time

import pytest

from helpers.cli_fixtures import cli, child_cmd, no_traceback, read_log, wait_log  # noqa: F401

TAKEOVERS = int(os.environ.get("REDLEASE_TAKEOVERS", "3"))


def boottime():
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def fork_time(pid):
    """When the process was forked, on CLOCK_BOOTTIME, rounded down to a clock
    tick (/proc/PID/stat field 22): the earliest the command can have started."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[19]) / os.sysconf("SC_CLK_TCK")


class DeathWatch:
    """Records, on CLOCK_BOOTTIME, when each watched pid terminates (pidfd)."""

    def __init__(self):
        self.died: dict[int, float] = {}
        self.lock = threading.Lock()
        self.threads = []

    def watch(self, pid):
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            with self.lock:
                self.died.setdefault(pid, boottime())   # already gone: an upper bound
            return

        def wait():
            try:
                select.select([fd], [], [], 120)
                with self.lock:
                    self.died.setdefault(pid, boottime())
            finally:
                os.close(fd)
        t = threading.Thread(target=wait, daemon=True)
        t.start()
        self.threads.append(t)

    def death(self, pid, timeout=15.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if pid in self.died:
                    return self.died[pid]
            time.sleep(0.01)
        raise AssertionError(f"CMD {pid} did not die within {timeout} s")


@pytest.mark.node_timeout(60 + 3 * TAKEOVERS)
def test_takeovers_never_overlap(cli, redis_server, proxy_factory, key, tmp_path):
    """Renewals fail (partition): the old CMD is dead before the new one starts."""
    log = cli.log()
    flock = str(tmp_path / "cmd.flock")
    # CMD and a process it left in its group both ignore SIGTERM and share
    # the flock: a new CMD sees overlap while either lives
    cmd = child_cmd(log, "--ignore-term", "--flock", flock, "--grandchild")
    proxies = {"a": proxy_factory(redis_server.port), "b": proxy_factory(redis_server.port)}
    runners = {}
    for name in ("a", "b"):
        runners[name] = cli.start("run", key, "--ttl", "1", "--restart", "--node-id", name,
                                  "--url", proxies[name].url(), "--", *cmd)
    watch = DeathWatch()
    seen = 0

    def next_start():
        nonlocal seen
        e = wait_log(log, lambda e: e["ev"] == "start" and read_log(log).index(e) >= seen,
                     timeout=20, desc="a CMD start")
        seen = read_log(log).index(e) + 1
        e["forked"] = fork_time(e["pid"])
        watch.watch(e["pid"])
        gc = wait_log(log, lambda g: g["ev"] == "grandchild" and g["parent"] == e["pid"],
                      desc="its grandchild")
        watch.watch(gc["pid"])
        e["group"] = [e["pid"], gc["pid"]]
        return e

    gaps, fork_gaps = [], []
    cur = next_start()
    for _ in range(TAKEOVERS):
        prev = cur
        old = prev["node_id"]
        proxies[old].blackhole()             # the leader's renewals get no reply
        cur = next_start()
        died = max(watch.death(pid) for pid in prev["group"])   # the whole group
        assert cur["node_id"] != old
        assert cur["overlap"] is False, "the new CMD started while the old one held its flock"
        gaps.append(cur["boot"] - died)
        fork_gaps.append(cur["forked"] - died)
        proxies[old].heal()                  # back as a follower
    print(f"\n{TAKEOVERS} takeovers: gap old CMD group gone -> new CMD start: min {min(gaps):.3f} s,"
          f" max {max(gaps):.3f} s; old CMD gone -> new CMD's fork (clock tick, rounded down):"
          f" min {min(fork_gaps):.3f} s")
    assert min(gaps) > 0, gaps
    assert min(fork_gaps) > 0, fork_gaps
    for e in read_log(log):
        if e["ev"] == "start":
            assert e["overlap"] is False, e
    grandchildren = [e["pid"] for e in read_log(log) if e["ev"] == "grandchild"]
    assert len(grandchildren) == TAKEOVERS + 1
    for r in runners.values():
        r.proc.send_signal(signal.SIGTERM)
    for r in runners.values():
        r.wait_exit(15)
        assert no_traceback(r.stderr()), r.stderr()
    assert "runs out in" in runners["a"].stderr() + runners["b"].stderr()


@pytest.mark.node_timeout(30)
def test_partitioned_leader_kills_cmd_before_its_deadline(cli, redis_server, proxy_factory, key):
    """A lone runner: CMD ignores SIGTERM; it still dies before the key can expire."""
    log = cli.log()
    proxy = proxy_factory(redis_server.port)
    r = cli.start("run", key, "--ttl", "1", "--url", proxy.url(), "--",
                  *child_cmd(log, "--ignore-term"))
    start = wait_log(log, lambda e: e["ev"] == "start")
    watch = DeathWatch()
    watch.watch(start["pid"])
    time.sleep(0.2)
    proxy.blackhole()
    t_part = boottime()
    died = watch.death(start["pid"], timeout=10)
    # the key in Redis (renewed last before t_part) lives until at least
    # t_part + ... ; it is still there, held by the runner, when CMD is gone
    pttl = redis_server.cmd("PTTL", key)
    assert pttl > 0, (pttl, died - t_part)
    assert r.wait_exit(15) == 4, r.stderr()          # 4: the lease could not be kept
    assert no_traceback(r.stderr())
    assert any(e["ev"] == "signal" and e["sig"] == signal.SIGTERM for e in read_log(log))


@pytest.mark.node_timeout(30)
def test_grace_that_does_not_fit_the_ttl_is_refused(cli, redis_server, key):
    grace = "0.5"                    # the default ttl/3 renewals leave 0.354 s at ttl 1 s
    log = cli.log()
    rc, out, err = cli.run("run", key, "--ttl", "1", "--grace", grace, "--url",
                           redis_server.url(), "--", *child_cmd(log, "--sleep", "0"))
    assert rc == 1, err
    assert "--grace" in err and "does not fit" in err and no_traceback(err), err
    assert len(err.strip().splitlines()) == 1, err
    assert read_log(log) == []
    assert redis_server.cmd("GET", key) is None
    # what the message suggests is accepted: the grace, or the ttl for this grace
    m = re.search(r"use --grace ([0-9.]+) or less, or --ttl ([0-9.]+) or more", err)
    assert m, err
    for opts in (["--ttl", "1", "--grace", m.group(1)], ["--ttl", m.group(2), "--grace", grace]):
        rc, out, err = cli.run("run", key, *opts, "--url", redis_server.url(), "--",
                               *child_cmd(log, "--sleep", "0", "--code", "6"))
        assert rc == 6, (opts, err)


@pytest.mark.node_timeout(30)
def test_grace_that_fits_is_used(cli, redis_server, key):
    log = cli.log()
    rc, out, err = cli.run("run", key, "--ttl", "1", "--grace", "0.3", "--url",
                           redis_server.url(), "--", *child_cmd(log, "--sleep", "0", "--code", "6"))
    assert rc == 6, err
