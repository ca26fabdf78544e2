"""``redlease watch KEY``: a line per change of holder (elected, released, expired)."""
from __future__ import annotations

import json
import os
import signal
import time

import pytest

from helpers.cli_fixtures import cli, no_traceback  # noqa: F401

# Generous bounds (the machine may be loaded): the watch is pushed release
# notices and aims a timer at the key's PTTL, so it is normally a few ms late.
RELEASE_BOUND = 0.5
EXPIRY_BOUND = 0.5


def json_lines(out):
    return [json.loads(line) for line in out.out if line.startswith("{")]


@pytest.mark.node_timeout(45)
def test_watch_elected_released_expired(cli, redis_server, make_node, spawn_worker, key):
    url = redis_server.url()
    w = cli.start("watch", key, "--json", "--count", "4", "--url", url)
    initial = json.loads(w.wait_line(lambda line: '"initial"' in line))
    assert initial["holder"] is None

    # 1. a node is elected
    node = make_node(url, node_id="alpha", ttl=5.0)
    node.start()
    assert node.wait_for_leadership(10)
    w.wait_line(lambda line: '"elected"' in line and '"alpha"' in line)

    # 2. it releases: the notice is pushed, the line follows at once
    node.stop()
    t_release = time.time()
    released = json.loads(w.wait_line(lambda line: '"released"' in line))
    assert released["holder"] is None and released["previous"] == "alpha"
    print(f"released line {(released['time'] - t_release) * 1000:.1f} ms after stop() returned")
    assert released["time"] - t_release < RELEASE_BOUND, released

    # 3. another holder (own process, short ttl) is elected, then dies and its key expires
    worker = spawn_worker(url, ttl=0.6, node_id="bravo")
    w.wait_line(lambda line: '"elected"' in line and '"bravo"' in line)
    worker.wait_ev("lead_start", timeout=10)
    os.kill(worker.pid, signal.SIGKILL)
    pttl = redis_server.cmd("PTTL", key)
    t_expiry = time.time() + pttl / 1000.0
    assert pttl > 0
    expired = json.loads(w.wait_line(lambda line: '"expired"' in line, timeout=10))
    assert expired["holder"] is None and expired["previous"] == "bravo"
    late = expired["time"] - t_expiry
    print(f"expired line {late * 1000:.1f} ms after the key's expiry")
    assert -0.05 < late < EXPIRY_BOUND, f"expiry reported {late * 1000:.1f} ms after it happened"

    # --count 4: four changes seen, exit 0
    assert w.wait_exit(15) == 0
    kinds = [e["event"] for e in json_lines(w)]
    assert kinds == ["initial", "elected", "released", "elected", "expired"]
    for e in json_lines(w):
        assert set(e) == {"time", "event", "holder", "previous"}


@pytest.mark.node_timeout(30)
def test_watch_human_lines(cli, redis_server, make_node, key):
    url = redis_server.url()
    redis_server.cmd("SET", key, "someone", "PX", 60000)
    w = cli.start("watch", key, "--count", "1", "--url", url)
    first = w.wait_line(lambda line: "initial" in line)
    # "YYYY-MM-DD HH:MM:SS.mmm initial  holder=someone"
    assert time.strptime(first[:19], "%Y-%m-%d %H:%M:%S")
    assert first.split()[2:] == ["initial", "holder=someone"]
    redis_server.cmd("DEL", key)
    node = make_node(url, node_id="charlie", ttl=5.0)
    node.start()
    line = w.wait_line(lambda line: "elected" in line, timeout=15)
    assert "holder=charlie" in line
    assert w.wait_exit(15) == 0


@pytest.mark.node_timeout(30)
def test_watch_escapes_control_characters(cli, redis_server, key):
    redis_server.cmd("SET", key, "a\nb\x1b[2J", "PX", 60000)
    w = cli.start("watch", key, "--count", "1", "--url", redis_server.url())
    first = w.wait_line(lambda line: "initial" in line)
    assert first.rstrip("\n").endswith("holder=a\\nb\\x1b[2J"), repr(first)
    redis_server.cmd("DEL", key)


@pytest.mark.node_timeout(30)
@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_watch_stops_quietly_on_signals(cli, redis_server, key, sig, code):
    w = cli.start("watch", key, "--url", redis_server.url())
    w.wait_line(lambda line: "initial" in line)
    w.proc.send_signal(sig)
    assert w.wait_exit(15) == code
    err = w.stderr()
    assert no_traceback(err), err
    assert err.strip() == "", err


@pytest.mark.node_timeout(30)
def test_watch_unreachable_redis_exits_1(cli, key):
    rc, out, err = cli.run("watch", key, "--url", "redis://:pw-z@127.0.0.1:1/0", timeout=20)
    # A wrong URL or an unreachable server at start: exit 1 with one line.
    assert rc == 1 and no_traceback(err), err
    assert "cannot reach" in err and "pw-z" not in out + err
