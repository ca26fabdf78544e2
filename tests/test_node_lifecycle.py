"""Lifecycle: garbage collection, interpreter exit, fork, Ctrl-C, threads,
subclassing."""
from __future__ import annotations

import gc
import json
import os
import random
import signal
import textwrap
import threading
import time
import weakref

import pytest

from helpers.scripts import Output
from helpers.waiting import boottime, run_bounded, wait_until
from helpers.terms import term_of

# ---------------------------------------------------------------------------
# garbage collection
# ---------------------------------------------------------------------------


def test_gc_of_started_node_releases_lease(rl, redis_server, key):
    node = rl.DistributionNode(redis_server.url(), key, ttl=30.0)
    node.start()
    try:
        assert node.wait_for_leadership(10)
        assert term_of(redis_server.cmd("GET", key)) == node.node_id.encode()
    except BaseException:
        node.stop()
        raise
    del node
    gc.collect()
    # ttl is 30 s: the key can only vanish this soon if it was released
    wait_until(lambda: redis_server.cmd("EXISTS", key) == 0, 10,
               desc="a garbage-collected leader releases its lease")


def _leader_in_a_cycle(rl, url, key):
    """Start a leader whose only references form a cycle; return a weakref."""
    holder = {}

    def on_elected(token):
        holder["elected"] = token

    node = rl.DistributionNode(url, key, ttl=30.0, on_elected=on_elected)
    holder["node"] = node          # cycle: node -> callback -> closure -> holder -> node
    if hasattr(node, "__dict__"):
        node.self_ref = node
    node.start()
    try:
        assert node.wait_for_leadership(10)
    except BaseException:
        node.stop()
        raise
    return weakref.ref(node)


def test_gc_of_node_in_reference_cycle(rl, redis_server, key):
    ref = _leader_in_a_cycle(rl, redis_server.url(), key)
    assert redis_server.cmd("EXISTS", key) == 1
    for _ in range(3):
        gc.collect()
    wait_until(lambda: redis_server.cmd("EXISTS", key) == 0, 10,
               desc="a leader in a reference cycle releases its lease when collected")
    wait_until(lambda: (gc.collect(), ref() is None)[1], 10)


def test_gc_of_unstarted_and_stopped_nodes(rl, redis_server, key):
    for i in range(20):
        n = rl.DistributionNode(redis_server.url(), f"{key}:{i}", ttl=1.0)
        if i % 2:
            n.start()
            n.stop()
        del n
    gc.collect()
    assert redis_server.cmd("PING") == "PONG"


# ---------------------------------------------------------------------------
# interpreter exit
# ---------------------------------------------------------------------------
EXIT_SCRIPT = textwrap.dedent(r"""
    import sys, threading, time, json
    import redlease

    url, key, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    node = redlease.DistributionNode(url, key, ttl=30.0, retry_interval=10.0)
    node.start()
    if mode == "follower":
        print(json.dumps({"node_id": node.node_id}), flush=True)
        time.sleep(1.0)
        print("EXITING", flush=True)
        sys.exit(0)
    assert node.wait_for_leadership(10)
    print(json.dumps({"node_id": node.node_id}), flush=True)
    if mode == "waiter-thread":
        other = redlease.DistributionNode(url, key, ttl=30.0)
        other.start()
        threading.Thread(target=other.wait_for_leadership, daemon=True).start()
    time.sleep(2.0)
    print("EXITING", flush=True)
    if mode == "sys-exit":
        sys.exit(0)
    if mode == "exception":
        raise RuntimeError("boom at top level")
    # "fall-off" and "waiter-thread": the script just ends
""")


@pytest.mark.parametrize("mode", ["fall-off", "sys-exit", "exception", "waiter-thread"])
def test_interpreter_exit_releases_lease(rl, redis_server, spawn_worker, run_script, key, mode):
    out = Output(run_script(EXIT_SCRIPT, redis_server.url(), key, mode))
    script_id = out.wait_json("node_id", 30)["node_id"]
    assert term_of(redis_server.cmd("GET", key)) == script_id.encode()
    # a peer with long ttl and retry interval: it can only lead soon if the
    # exiting process released the lease
    peer = spawn_worker(redis_server.url(), ttl=30.0, retry_interval=10.0)
    peer.hello()
    out.wait_line("EXITING", 30)
    rc = out.wait_exit(15)
    t_exit = boottime()
    assert rc == (1 if mode == "exception" else 0), out.stderr()
    wait_until(lambda: peer.is_leading_now(), 5,
               desc="the peer takes over within 5 s of the interpreter exit")
    assert peer.of("lead_start")[0]["t"] - t_exit < 5.0 + 1.0


def test_interpreter_exit_with_follower_node_does_not_hang(rl, redis_server, run_script, key):
    redis_server.cmd("SET", key, "someone-else")
    out = Output(run_script(EXIT_SCRIPT, redis_server.url(), key, "follower"))
    out.wait_line("EXITING", 30)
    assert out.wait_exit(15) == 0, out.stderr()
    assert term_of(redis_server.cmd("GET", key)) == b"someone-else"


# ---------------------------------------------------------------------------
# fork
# ---------------------------------------------------------------------------
FORK_SCRIPT = textwrap.dedent(r"""
    import json, os, sys, time
    import redlease

    url, key = sys.argv[1], sys.argv[2]
    ttl = 1.0
    node = redlease.DistributionNode(url, key, ttl=ttl)
    node.start()
    assert node.wait_for_leadership(10)
    tok = node.token
    print(json.dumps({"parent_id": node.node_id, "token": tok}), flush=True)

    pid = os.fork()
    if pid == 0:
        res = {"is_leader": node.is_leader, "token": node.token}
        time.sleep(0.5)
        res["is_leader_later"] = node.is_leader
        n2 = redlease.DistributionNode(url, key + ":child", ttl=ttl)
        n2.start()
        res["new_node_elected"] = n2.wait_for_leadership(10)
        res["new_node_token"] = n2.token
        n2.stop()
        res["new_node_released"] = not n2.is_leader
        print(json.dumps({"child": res}), flush=True)
        sys.exit(0)   # normal interpreter exit with the inherited copy "running"

    deadline = time.monotonic() + 30
    status = None
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        status = "hung"
    print(json.dumps({"child_done": status}), flush=True)
    time.sleep(3 * ttl)
    print(json.dumps({"parent": {"is_leader": node.is_leader, "token": node.token}}), flush=True)
    node.stop()
""")


@pytest.mark.node_timeout(90)
def test_fork_child_does_not_inherit_leadership(rl, redis_server, run_script, key):
    out = Output(run_script(FORK_SCRIPT, redis_server.url(), key))
    first = out.wait_json("parent_id", 30)
    parent_id, tok = first["parent_id"], first["token"]
    child = out.wait_json("child", 40)["child"]
    assert child["is_leader"] is False
    assert child["token"] is None
    assert child["is_leader_later"] is False
    assert child["new_node_elected"] is True
    assert isinstance(child["new_node_token"], int)
    assert child["new_node_released"] is True
    done = out.wait_json("child_done", 40)["child_done"]
    assert done != "hung", "the forked child did not exit (interpreter exit hung)"
    assert os.WIFEXITED(done) and os.WEXITSTATUS(done) == 0, done
    # the child's exit neither released nor disturbed the parent's lease
    assert term_of(redis_server.cmd("GET", key)) == parent_id.encode()
    parent = out.wait_json("parent", 30)["parent"]
    assert parent["is_leader"] is True
    assert parent["token"] == tok
    assert out.wait_exit(20) == 0, out.stderr()
    assert redis_server.cmd("EXISTS", key) == 0


# ---------------------------------------------------------------------------
# Ctrl-C
# ---------------------------------------------------------------------------
SIGINT_SCRIPT = textwrap.dedent(r"""
    import sys
    import redlease

    url, key, how = sys.argv[1], sys.argv[2], sys.argv[3]
    node = redlease.DistributionNode(url, key, ttl=1.0)
    node.start()
    print("WAITING", flush=True)
    if how == "wait":
        node.wait_for_leadership()
    elif how == "wait-timeout":
        node.wait_for_leadership(timeout=120)
    elif how == "leadership":
        with node.leadership():
            pass
    print("RETURNED", flush=True)
""")


@pytest.mark.parametrize("how", ["wait", "wait-timeout", "leadership"])
def test_ctrl_c_during_wait(rl, redis_server, run_script, key, how):
    redis_server.cmd("SET", key, "holder-forever")  # never free
    proc = run_script(SIGINT_SCRIPT, redis_server.url(), key, how)
    out = Output(proc)
    out.wait_line("WAITING", 30)
    time.sleep(0.5)  # let it block inside the call
    proc.send_signal(signal.SIGINT)
    rc = out.wait_exit(10)
    assert rc != 0
    assert "KeyboardInterrupt" in out.stderr(), out.stderr()
    assert "RETURNED" not in out.out
    assert term_of(redis_server.cmd("GET", key)) == b"holder-forever"


# ---------------------------------------------------------------------------
# threads
# ---------------------------------------------------------------------------
@pytest.mark.node_timeout(90)
def test_methods_from_many_threads(rl, redis_server, make_node, key):
    node = make_node(redis_server.url(), ttl=0.6, retry_interval=0.1)
    errors = []
    tokens = []
    deadline = time.monotonic() + 3.0

    def hammer(seed):
        rnd = random.Random(seed)
        while time.monotonic() < deadline:
            op = rnd.randrange(10)
            try:
                if op == 0:
                    node.start()
                elif op == 1:
                    node.stop()
                elif op == 2:
                    node.resign()
                elif op == 3:
                    if node.wait_for_leadership(timeout=0.02):
                        t = node.token
                        if t is not None:
                            tokens.append(t)
                elif op == 4:
                    assert isinstance(node.is_leader, bool)
                elif op == 5:
                    t = node.token
                    assert t is None or isinstance(t, int)
                elif op == 6:
                    assert node.lease_remaining >= 0.0
                elif op == 7:
                    repr(node)
                    node.leader  # noqa: B018
                    node.last_error  # noqa: B018
                else:
                    time.sleep(0.005)
            except rl.RedleaseError:
                pass  # a clean library error for a racing call is acceptable
            except BaseException as exc:  # noqa: BLE001 - collected for the assert
                errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not errors, errors[:5]

    # consistent end state
    outcome, _ = run_bounded(node.stop, 30)
    assert outcome == "ok"
    assert node.is_leader is False and node.token is None
    assert term_of(redis_server.cmd("GET", key)) != node.node_id.encode()
    node.start()
    assert node.wait_for_leadership(10)
    if tokens:
        assert node.token > max(tokens)
    node.stop()
    assert redis_server.cmd("EXISTS", key) == 0


def test_stop_returns_when_a_start_from_another_thread_supersedes_it(rl, redis_server, make_node, key):
    # A stop() whose release is in flight while another thread calls
    # start(): the engine restarts the lease after the release, so the
    # lease is never seen "stopped" -- stop() must still return (it used
    # to wait for a stopped phase that never came).
    node = make_node(redis_server.url(), ttl=0.6, retry_interval=0.05)
    for _ in range(40):
        node.start()
        assert node.wait_for_leadership(10)
        stopper = threading.Thread(target=node.stop)
        stopper.start()
        node.start()
        stopper.join(20)
        assert not stopper.is_alive(), "stop() hung after a concurrent start()"
    outcome, _ = run_bounded(node.stop, 30)
    assert outcome == "ok"
    assert redis_server.cmd("EXISTS", key) == 0


def test_resign_returns_though_the_node_is_elected_again_at_once(rl, redis_server, make_node, key):
    # retry_interval 1 ms: after a resign the node campaigns again at once and
    # may lead again before the resigning thread runs; resign() returns all
    # the same (it used to wait for a moment of not leading it could miss).
    # Other threads waiting on the node drive the engine meanwhile, so the
    # resigning thread sleeps and wakes late.  (A liveness check: the race
    # it guards was seen under the 8-thread hammer, not forced here.)
    node = make_node(redis_server.url(), ttl=0.6, retry_interval=0.001)
    node.start()
    done = threading.Event()

    def other_waiter():
        while not done.is_set():
            node.wait_for_leadership(0.05)
            time.sleep(0.0005)

    others = [threading.Thread(target=other_waiter) for _ in range(3)]
    for t in others:
        t.start()
    try:
        for _ in range(60):
            assert node.wait_for_leadership(10)
            outcome, _ = run_bounded(node.resign, 20)
            assert outcome == "ok", "resign() hung"
    finally:
        done.set()
        for t in others:
            t.join(20)


def test_node_used_from_several_threads_in_turn(rl, redis_server, make_node, key):
    node = make_node(redis_server.url(), ttl=1.0)
    for fn in (node.start, lambda: node.wait_for_leadership(10)):
        t = threading.Thread(target=fn)
        t.start()
        t.join(20)
    assert node.is_leader
    t = threading.Thread(target=node.stop)
    t.start()
    t.join(20)
    assert not node.is_leader
    assert redis_server.cmd("EXISTS", key) == 0


def test_many_nodes_do_not_accumulate_threads(rl, redis_server, make_node, key):
    for i in range(10):
        node = make_node(redis_server.url(), node_key=f"{key}:{i}", ttl=1.0)
        node.start()
        assert node.wait_for_leadership(10)
        node.stop()
    nodes = [make_node(redis_server.url(), node_key=f"{key}:many:{i}", ttl=1.0) for i in range(8)]
    for n in nodes:
        n.start()
    for n in nodes:
        assert n.wait_for_leadership(10)
    for n in nodes:
        n.stop()
    # the autouse thread-leak check verifies the thread count afterwards


# ---------------------------------------------------------------------------
# subclassing
# ---------------------------------------------------------------------------
def test_subclassing(rl, redis_server, key):
    class MyNode(rl.DistributionNode):
        def __init__(self, url, key, **kwargs):
            super().__init__(url, key, **kwargs)
            self.history = []

        def start(self):
            self.history.append("start")
            super().start()

        def describe(self):
            return f"MyNode({self.node_id}, leader={self.is_leader})"

    node = MyNode(redis_server.url(), key, ttl=1.0, node_id="sub-1")
    try:
        assert isinstance(node, rl.DistributionNode)
        node.start()
        assert node.history == ["start"]
        assert node.wait_for_leadership(10)
        assert node.describe() == "MyNode(sub-1, leader=True)"
        assert term_of(redis_server.cmd("GET", key)) == b"sub-1"
        with pytest.raises(TypeError):
            import pickle
            pickle.dumps(node)
    finally:
        node.stop()
    assert redis_server.cmd("EXISTS", key) == 0


def test_subclass_with_callbacks_as_methods(rl, redis_server, key):
    class Recording(rl.DistributionNode):
        def __init__(self, url, key, **kwargs):
            self.events = []
            super().__init__(url, key, on_elected=self._elected, **kwargs)

        def _elected(self, token):
            self.events.append(("elected", token))

    node = Recording(redis_server.url(), key, ttl=1.0)
    try:
        node.start()
        assert node.wait_for_leadership(10)
        wait_until(lambda: node.events, 5)
        assert node.events[0] == ("elected", node.token)
    finally:
        node.stop()


def test_worker_reports_json(rl, redis_server, spawn_worker):
    """Sanity check of the worker helper itself (used by the process tests)."""
    w = spawn_worker(redis_server.url(), ttl=1.0)
    hello = w.hello()
    assert hello["node_id"]
    w.wait_ev("lead_start", 20)
    st = w.status()
    assert st["is_leader"] is True and isinstance(st["token"], int)
    assert w.exit(15) == 0
    bye = w.wait_ev("bye", 5)
    assert bye
    json.dumps(w.snapshot())


# ---------------------------------------------------------------------------
# honest state after a loss
# ---------------------------------------------------------------------------
def test_leader_is_not_this_node_after_a_local_expiry(rl, redis_server, make_node, key):
    node = make_node(redis_server.url(), ttl=0.8, command_timeout=0.3)
    node.start()
    assert node.wait_for_leadership(10)
    assert node.leader == node.node_id
    redis_server.pause()                     # renewals get no answer
    try:
        wait_until(lambda: not node.is_leader, 10, desc="stepped down at its deadline")
        assert node.leader != node.node_id
    finally:
        redis_server.resume()


def test_leadership_lost_says_key_token_and_reason(rl, redis_server, make_node, key):
    node = make_node(redis_server.url(), ttl=1.0, retry_interval=0.05)
    caught = []

    def body():
        try:
            with node.leadership(timeout=10) as lease:
                caught.append(lease.token)
                redis_server.cmd("SET", key, "intruder", "PX", "5000")
                while True:
                    time.sleep(0.01)
        except rl.LeadershipLost as exc:
            caught.append(str(exc))

    t = threading.Thread(target=body)
    t.start()
    t.join(20)
    assert not t.is_alive()
    token, msg = caught
    assert repr(key) in msg and str(token) in msg, msg
    assert "intruder" in msg, msg


def test_main_thread_block_is_interrupted_inside_sleep(rl, redis_server, run_script, key):
    # A block in the main thread sleeping for 60 s is interrupted at once
    # when the key is taken (other threads learn at their next instruction).
    proc = run_script("""
import sys, time, redlease
node = redlease.DistributionNode(sys.argv[1], sys.argv[2], ttl=1.0, retry_interval=0.05)
try:
    with node.leadership(timeout=10):
        print("IN", flush=True)
        t0 = time.monotonic()
        time.sleep(60)
        print("SLEPT", flush=True)
except redlease.LeadershipLost as exc:
    print("LOST %.3f %s" % (time.monotonic() - t0, exc), flush=True)
node.stop()
""", redis_server.url(), key)
    line = proc.stdout.readline().decode()
    assert line.strip() == "IN", (line, proc.stderr.read(4000) if not line else "")
    redis_server.cmd("SET", key, "intruder", "PX", "5000")
    out, err = proc.communicate(timeout=30)
    out = out.decode()
    assert out.startswith("LOST "), (out, err.decode()[-2000:])
    assert float(out.split()[1]) < 20, out
