"""Resources stay bounded (issue 7 point 6): a status query against a server
that cannot be reached, many asyncio event loops, huge timeouts and PTTLs,
many sockets across fork.

Real redis-server only.  Time checks are wide liveness bounds; counts (leases,
connections, fds, attempts) are exact or bounded by what the settings allow.
"""
from __future__ import annotations

import asyncio
import gc
import os
import threading
import time

import pytest

from helpers.redis_server import free_port
from helpers.waiting import wait_until


def _engine(rl):
    return rl.engine_stats()


# ---------------------------------------------------------------------------
# 1. a status query against an unreachable server
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["refused", "blackhole"])
def test_status_query_unreachable_frees_everything(rl, redis_server, proxy_factory, key, how):
    if how == "refused":
        url = f"redis://127.0.0.1:{free_port()}"
    else:
        proxy = proxy_factory(redis_server.port)
        proxy.blackhole()
        url = proxy.url()
    before = _engine(rl)
    connect_timeout = 0.5
    t0 = time.monotonic()
    with pytest.raises(rl.ConnectionError):
        rl.key_status(url, key, timeout=30.0, connect_timeout=connect_timeout,
                      command_timeout=connect_timeout)
    took = time.monotonic() - t0
    # connect_timeout (or command_timeout for a server that accepts and
    # never answers), plus a wide margin; far from the 30 s timeout
    assert took < connect_timeout + 5.0, took
    # the lease is given back and no connection stays open or reconnects
    try:
        wait_until(lambda: _engine(rl)["leases"] == before["leases"]
                   and _engine(rl)["connections"] == before["connections"], 10)
    except AssertionError:
        raise AssertionError(f"lease or connections not freed: {_engine(rl)} vs {before}") from None
    opened = _engine(rl)["connections_opened"]
    time.sleep(1.5)      # the connection backoff would have retried by now
    after = _engine(rl)
    assert after["connections_opened"] == opened, (after, before)
    assert after["leases"] == before["leases"] and after["connections"] == before["connections"], after


# ---------------------------------------------------------------------------
# 2. many asyncio event loops, one after the other and at once
# ---------------------------------------------------------------------------
def _fd_count():
    return len(os.listdir("/proc/self/fd"))


def test_many_event_loops_in_turn_and_at_once(rl, redis_server, make_node):
    node = make_node(redis_server.url(), ttl=1.0)   # never started: the waits time out

    async def one_wait():
        return await node.wait_for_leadership_async(timeout=0.01)

    def one_loop(barrier=None):
        loop = asyncio.new_event_loop()
        try:
            if barrier is not None:
                # every loop has its waker registered before any is closed
                loop.run_until_complete(one_wait())
                barrier.wait(30)
            return loop.run_until_complete(one_wait())
        finally:
            loop.close()

    assert one_loop() is False      # warm up (engine thread, first waker)
    gc.collect()
    fd0 = _fd_count()
    for i in range(100):
        assert one_loop() is False, i
    gc.collect()
    assert _fd_count() == fd0

    n = 70
    barrier = threading.Barrier(n)
    results, errors = [], []

    def worker():
        try:
            results.append(one_loop(barrier))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))
            barrier.abort()

    threads = [threading.Thread(target=worker, name=f"test-loop-{i}") for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors[:3]
    assert results == [False] * n
    gc.collect()
    wait_until(lambda: gc.collect() is not None and _fd_count() == fd0, 10,
               desc="the event loops' fds closed")


def test_event_loop_registration_failure_closes_its_eventfd(rl, redis_server, make_node, monkeypatch):
    """If the engine refuses a loop's waker (out of memory, engine shut
    down), the eventfd made for it is closed, not leaked."""
    node = make_node(redis_server.url(), ttl=1.0)
    aio = rl._aio
    loop = asyncio.new_event_loop()         # warm up: the engine and its own fds
    try:
        assert loop.run_until_complete(node.wait_for_leadership_async(timeout=0.01)) is False
    finally:
        loop.close()
    del loop

    def refuse(fd):
        raise rl.RedleaseError("refused (test)")

    monkeypatch.setattr(aio._c, "_add_waker", refuse)
    gc.collect()
    fd0 = _fd_count()
    for _ in range(5):
        loop = asyncio.new_event_loop()
        try:
            with pytest.raises(rl.RedleaseError, match="refused"):
                loop.run_until_complete(node.wait_for_leadership_async(timeout=0.01))
        finally:
            loop.close()
    del loop
    gc.collect()
    assert _fd_count() == fd0


# ---------------------------------------------------------------------------
# 3. timeouts and PTTLs far beyond int64 microseconds
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("timeout", [1e13, 1e300, float("inf")], ids=["1e13", "1e300", "inf"])
def test_huge_timeout_waits(rl, redis_server, make_node, key, timeout):
    redis_server.cmd("SET", key, "foreign")       # held, no expiry: the node cannot lead
    node = make_node(redis_server.url(), ttl=1.0, retry_interval=0.2)
    node.start()
    result = []
    t = threading.Thread(target=lambda: result.append(node.wait_for_leadership(timeout=timeout)),
                         name="test-huge-timeout")
    t.start()
    t.join(1.0)
    waiting = t.is_alive()
    redis_server.cmd("DEL", key)                  # now it can lead: the wait ends
    t.join(15)
    assert not t.is_alive()
    assert waiting, f"wait_for_leadership(timeout={timeout!r}) returned {result} at once"
    assert result == [True]


def _evalsha_calls(redis_server):
    info = redis_server.cmd("INFO", "commandstats")
    info = info.decode() if isinstance(info, bytes) else str(info)
    calls = 0
    for line in info.splitlines():
        if line.startswith(("cmdstat_evalsha:", "cmdstat_eval:")):
            calls += int(line.split("calls=")[1].split(",")[0])
    return calls


@pytest.mark.parametrize("pttl_ms", [9000000000000000, 9000000000000000000], ids=["9e15", "9e18"])
def test_huge_foreign_pttl_retries_at_retry_interval(rl, redis_server, make_node, key, pttl_ms):
    redis_server.cmd("SET", key, "foreign", "PX", str(pttl_ms))
    retry = 0.25
    node = make_node(redis_server.url(), ttl=1.0, retry_interval=retry)
    node.start()
    wait_until(lambda: _evalsha_calls(redis_server) >= 1, 10, desc="first attempt")
    time.sleep(0.3)
    c0 = _evalsha_calls(redis_server)
    time.sleep(1.0)
    attempts = _evalsha_calls(redis_server) - c0
    assert not node.is_leader
    # one attempt per retry_interval (plus jitter); a few more allowed
    assert attempts <= 1.0 / retry + 4, attempts


def test_watch_of_huge_foreign_pttl_polls_at_poll_interval(rl, redis_server, key):
    redis_server.cmd("SET", key, "foreign", "PX", "9000000000000000000")
    changes = []
    w = rl.Watch(redis_server.url(), key, poll_interval=0.25,
                 on_change=lambda kind, holder: changes.append((kind, holder)))
    with w:
        wait_until(lambda: changes, 10, desc="initial holder")
        time.sleep(0.3)
        c0 = _evalsha_calls(redis_server)
        time.sleep(1.0)
        polls = _evalsha_calls(redis_server) - c0
    assert changes[0] == ("initial", "foreign"), changes
    assert polls <= 1.0 / 0.25 + 4, polls


# ---------------------------------------------------------------------------
# 4. a fork child closes every engine socket, also past 4,096 of them
# ---------------------------------------------------------------------------
FORK_SOCKETS_SCRIPT = r'''
import json, os, resource, socket, sys, time
import redlease

url, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
want = 2 * n + 200
if soft < want:
    if hard != resource.RLIM_INFINITY and hard < want:
        print(json.dumps({"child": None, "skip": f"RLIMIT_NOFILE hard limit {hard} < {want}"}), flush=True)
        os._exit(0)
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def redis_sockets():
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            s = socket.socket(fileno=int(name))
        except OSError:
            continue      # not a socket (or already gone)
        try:
            peer = s.getpeername()
            if isinstance(peer, tuple) and peer[1] == port:
                count += 1
        except OSError:
            pass
        finally:
            s.detach()
    return count


# One endpoint (a command and a subscriber connection) per distinct
# command_timeout: n endpoints, 2n sockets.
nodes = [redlease.DistributionNode(url, "fork-sockets:%d" % i, ttl=30.0,
                                   command_timeout=2.0 + i / 1000.0)
         for i in range(n)]
for node in nodes:
    node.start()
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    if all(node.is_leader for node in nodes) and redis_sockets() >= 2 * n:
        break
    time.sleep(0.1)
before = redis_sockets()
pid = os.fork()
if pid == 0:
    try:
        msg = {"child": redis_sockets()}
    except BaseException as exc:
        msg = {"child": repr(exc)}
    os.write(1, (json.dumps(msg) + "\n").encode())
    os._exit(0)
os.waitpid(pid, 0)
print(json.dumps({"parent": before, "leaders": sum(node.is_leader for node in nodes)}), flush=True)
os._exit(0)    # skip stopping every node: the test only needed the fork
'''


@pytest.mark.node_timeout(100)
@pytest.mark.parametrize("n", [20, 2100], ids=["40-sockets", "4200-sockets"])
def test_fork_child_closes_every_engine_socket(redis_server, run_script, n):
    from helpers.scripts import Output
    out = Output(run_script(FORK_SOCKETS_SCRIPT, redis_server.url(), redis_server.port, n))
    child = out.wait_json("child", 80)
    if "skip" in child:
        pytest.skip(child["skip"])
    parent = out.wait_json("parent", 20)
    assert parent["parent"] >= 2 * n and parent["leaders"] == n, parent
    assert child["child"] == 0, (child, parent)
