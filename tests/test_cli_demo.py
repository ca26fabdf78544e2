"""``redlease demo``: the whole show once (exit 0), and a clean Ctrl-C."""
from __future__ import annotations

import re
import signal
import socket
import time

import pytest

from helpers.cli_fixtures import cli, no_traceback, wait_gone  # noqa: F401
from helpers.waiting import wait_until


def port_closed(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return False
    except OSError:
        return True


def node_pids(lines):
    return [int(m.group(1)) for line in lines for m in [re.search(r"started \(pid (\d+)\)", line)]
            if m]


@pytest.mark.node_timeout(60)
def test_demo_once_own_redis(cli):
    rc, out, err = cli.run("demo", "--once", timeout=50)
    assert rc == 0, f"stdout:\n{out}\nstderr:\n{err}"
    assert no_traceback(err), err
    assert "throwaway" in out
    assert "LEADER: node-" in out
    assert "graceful handover" in out and "crash failover" in out
    assert "takeover" in out and "after the key expired" in out
    assert "strictly increasing" in out and "NOT strictly" not in out
    assert "no two nodes reported leadership at the same time" in out
    port = int(re.search(r"redis at redis://127\.0\.0\.1:(\d+)/0", out).group(1))
    assert port_closed(port)                       # the throwaway server is gone
    for pid in node_pids(out.splitlines()):
        wait_gone(pid, timeout=5)


@pytest.mark.node_timeout(40)
def test_demo_ctrl_c_cleans_up(cli, redis_server):
    d = cli.start("demo", "--nodes", "2", "--url", redis_server.url())
    d.wait_line(lambda line: "LEADER:" in line, timeout=30)
    d.proc.send_signal(signal.SIGINT)
    assert d.wait_exit(20) == 130
    assert no_traceback(d.stderr()), d.stderr()
    for pid in node_pids(d.out):
        wait_gone(pid, timeout=5)
    # nodes stopped (released) and the demo removed its key
    wait_until(lambda: not redis_server.cmd("KEYS", "redlease:demo:*"), timeout=5)


@pytest.mark.node_timeout(40)
def test_demo_wrong_password_says_so_at_once(cli, redis_factory):
    srv = redis_factory(password="right-password")
    t0 = time.monotonic()
    rc, out, err = cli.run("demo", "--once", "--url", srv.url(password="wrong-password"), timeout=30)
    took = time.monotonic() - t0
    assert rc == 1, (out, err)
    assert "authentication failed" in out + err and "timed out" not in out + err
    assert "wrong-password" not in out + err
    assert took < 12, took      # not the 15 s leader timeout
