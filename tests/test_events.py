"""Event delivery: no state change is lost, and none is late.

1. A slow callback holds the dispatcher while many leases change state and
   other events pile up: every loss still reaches on_revoked and interrupts
   its leadership() block once the callback returns, and every node's
   callbacks alternate elected / revoked.
2. After the process was frozen (SIGSTOP) past its lease, on_revoked comes
   right after SIGCONT, not when the engine's old poll timeout runs out.

Real redis-server only.
"""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from helpers.waiting import boottime, run_bounded, wait_until

N_NODES = 300
N_BLOCKS = 30           # of those nodes, this many run a leadership() block in a thread
N_WATCHES = 10
N_FLOOD = 10_500        # notices x watches: more events than the old queue's 100000 cap


def _pipeline(client, commands):
    """Send every command in one write, then read every reply."""
    parts = []
    for args in commands:
        parts.append(b"*%d\r\n" % len(args))
        for a in args:
            b = a if isinstance(a, bytes) else str(a).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
    client.sock.sendall(b"".join(parts))
    return [client._reply() for _ in commands]


class _BlockThread(threading.Thread):
    """Runs ``with node.leadership():`` until interrupted (or told to quit)."""

    def __init__(self, rl, node):
        super().__init__(name="test-block", daemon=True)
        self.rl = rl
        self.node = node
        self.entered = threading.Event()
        self.quit = threading.Event()
        self.outcome = None

    def run(self):
        try:
            with self.node.leadership(timeout=10):
                self.entered.set()
                while not self.quit.is_set():
                    time.sleep(0.005)
            self.outcome = "quit"
        except self.rl.LeadershipLost:
            self.outcome = "interrupted"
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.outcome = repr(exc)


@pytest.mark.node_timeout(90)
def test_no_loss_is_dropped_while_a_callback_blocks(rl, redis_server, key):
    url = redis_server.url()
    gate, entered = threading.Event(), threading.Event()

    def slow_on_elected(token):
        entered.set()
        gate.wait(60)

    blocker = rl.DistributionNode(url, key + ":blocker", ttl=5.0, on_elected=slow_on_elected)
    logs = [[] for _ in range(N_NODES)]
    nodes, blocks, watches = [], [], []
    try:
        blocker.start()
        assert entered.wait(10), "the blocking on_elected never ran"
        # The dispatcher is now stuck in that callback.
        for i in range(N_NODES):
            node = rl.DistributionNode(
                url, "%s:%d" % (key, i), ttl=2.0,
                on_elected=lambda tok, i=i: logs[i].append(("elected", tok)),
                on_revoked=lambda why, i=i: logs[i].append(("revoked", why)))
            nodes.append(node)
            node.start()
        for node in nodes:
            assert node.wait_for_leadership(10)
        first_tokens = [node.token for node in nodes]
        for node in nodes[:N_BLOCKS]:
            b = _BlockThread(rl, node)
            blocks.append(b)
            b.start()
        for b in blocks:
            assert b.entered.wait(10), "a leadership() block did not start"

        # Flood the queue: every notice on the watched key is one leader
        # change per watch, while nobody takes events.
        fkey = key + ":flood"
        redis_server.cmd("SET", fkey, "final", "PX", 60000)   # what the status reads say
        for _ in range(N_WATCHES):
            w = rl.Watch(url, fkey, poll_interval=30.0)
            watches.append(w)
            w.start()
        time.sleep(0.3)          # subscribed and first status read
        channel = "redlease:0:" + fkey
        with redis_server.client() as c:
            _pipeline(c, [("PUBLISH", channel, "Aholder-%d" % (n % 2)) for n in range(N_FLOOD)])
            _pipeline(c, [("PUBLISH", channel, "Afinal")])
        wait_until(lambda: all(w.leader == "final" for w in watches), 20,
                   desc="the watches saw every notice")

        # Now every node loses its key (and campaigns again).
        with redis_server.client() as c:
            _pipeline(c, [("DEL", "%s:%d" % (key, i)) for i in range(N_NODES)])
        wait_until(lambda: all(n.token is not None and n.token != t
                               for n, t in zip(nodes, first_tokens)), 20,
                   desc="every node re-elected in a new term")

        gate.set()    # the dispatcher resumes: the losses must all arrive

        def lost_seen(i):
            return any(k == "revoked" and why != "stopped" for k, why in logs[i])

        wait_until(lambda: all(lost_seen(i) for i in range(N_NODES)), 20,
                   desc="on_revoked of every lost term")
        for b in blocks:
            b.join(10)
        assert [b.outcome for b in blocks] == ["interrupted"] * N_BLOCKS

        for node in nodes:
            node.stop()
        wait_until(lambda: all(log and log[-1][0] == "revoked" for log in logs), 20,
                   desc="on_revoked after stop")
        for i, log in enumerate(logs):
            kinds = [k for k, _ in log]
            assert kinds == ["elected", "revoked"] * (len(kinds) // 2), (i, log)
            assert log[0] == ("elected", first_tokens[i]), (i, log)
        assert rl.engine_stats()["dropped_events"] == 0
    finally:
        gate.set()
        for b in blocks:
            b.quit.set()
        for b in blocks:
            b.join(10)
        for obj in [blocker] + nodes + watches:
            run_bounded(obj.stop, 30)


def _freeze_and_measure(rl, spawn_worker, url, node_key, **cfg):
    """Worker leads with ttl 1 s; SIGSTOP it for 3 s right after its election,
    SIGCONT, and return how long after SIGCONT on_revoked ran (CLOCK_BOOTTIME)."""
    w = spawn_worker(url, node_key=node_key, ttl=1.0, renew_interval=0.5, **cfg)
    w.wait_ev("elected", 20)
    os.kill(w.pid, signal.SIGSTOP)
    try:
        time.sleep(3.0)
    finally:
        os.kill(w.pid, signal.SIGCONT)
    t_cont = boottime()
    ev = w.wait_ev("revoked", 10)
    w.send("exit")
    return ev["t"] - t_cont


@pytest.mark.node_timeout(60)
@pytest.mark.parametrize("path", ["engine_thread", "api_thread_drives"])
def test_revoked_right_after_sigcont(rl, redis_server, spawn_worker, key, path):
    """The engine's timers are absolute on CLOCK_BOOTTIME (a timerfd in the
    poll set): a freeze does not leave it sleeping out its old timeout.  In
    the second case another thread of the worker waits on a node that cannot
    lead, so that thread runs the engine loop (rl_engine_drive).

    Before the fix on_revoked came when the poll's relative timeout ran out:
    ~0.5 s here on the engine thread (the renew interval); a driving thread
    was late by at most the binding's 50 ms wait slice, so that case guards
    against a regression rather than showing the bug."""
    cfg = {}
    if path == "api_thread_drives":
        held = key + ":held"
        redis_server.cmd("SET", held, "someone-else", "PX", 60000)
        cfg["waiter_key"] = held
    delay = _freeze_and_measure(rl, spawn_worker, redis_server.url(), key, **cfg)
    print("on_revoked %.1f ms after SIGCONT (%s)" % (delay * 1000, path))
    assert -0.01 < delay < 0.25
