"""redlease.Watch (follow a key's holder without campaigning) and redlease.key_status.

Real redis-server only.  To show that a change is seen through pub/sub or the
PTTL timer and not by polling, the watches poll only every 30 s while every
wait here is bounded well below that.
"""
from __future__ import annotations

import logging
import threading

import pytest

from helpers.lock_procs import make_lock  # noqa: F401 - fixture
from helpers.redis_server import free_port
from helpers.waiting import boottime, run_bounded, stays_true, wait_until

SLOW_POLL = 30.0       # longer than any wait below: changes must arrive another way


class Recorder:
    """on_change callback that records (kind, holder, boottime, thread name)."""

    def __init__(self, raise_first: bool = False):
        self.events = []
        self._lock = threading.Lock()
        self._raise_first = raise_first

    def __call__(self, kind, holder):
        with self._lock:
            self.events.append((kind, holder, boottime(), threading.current_thread().name))
            n = len(self.events)
        if self._raise_first and n == 1:
            raise RuntimeError("callback failure on purpose")

    def snapshot(self):
        with self._lock:
            return list(self.events)

    def kinds(self):
        return [(k, h) for k, h, _, _ in self.snapshot()]

    def wait(self, kind, holder=..., timeout=10.0, start=0):
        """First event at index >= start of this kind (and holder, if given)."""
        def find():
            for ev in self.snapshot()[start:]:
                if ev[0] == kind and (holder is ... or ev[1] == holder):
                    return ev
            return None
        return wait_until(find, timeout, desc=f"watch event {kind} {holder!r}; got {self.kinds()}")


@pytest.fixture
def make_watch(rl, redis_factory):
    """``make_watch(url, key, **kwargs)`` -> Watch; stopped at teardown (bounded)."""
    watches = []

    def make(url, key, **kwargs):
        w = rl.Watch(url, key, **kwargs)
        watches.append(w)
        return w

    yield make
    hung = []
    for w in watches:
        outcome, _ = run_bounded(w.stop, 30)
        if outcome == "hung":
            hung.append(repr(w))
    if hung:
        pytest.fail(f"Watch.stop() hung at teardown: {hung}")


def _all_on_dispatcher(rec):
    names = {ev[3] for ev in rec.snapshot()}
    assert names <= {"redlease-dispatcher"}, names


# ---------------------------------------------------------------------------
# key_status
# ---------------------------------------------------------------------------
def test_key_status_of_unused_key(rl, redis_server, key):
    st = rl.key_status(redis_server.url(), key, timeout=5.0)
    assert st == {"key": key, "exists": False, "holder": None, "ttl": None, "token": None}


def test_key_status_follows_a_node(rl, redis_server, make_node, key):
    node = make_node(redis_server.url(), ttl=2.0, node_id="status-node")
    node.start()
    assert node.wait_for_leadership(10)
    st = rl.key_status(redis_server.url(), key, timeout=5.0)
    assert st["key"] == key
    assert st["exists"] is True
    assert st["holder"] == "status-node"
    assert isinstance(st["ttl"], float) and 0 < st["ttl"] <= 2.0, st
    assert st["token"] == node.token
    tok = node.token

    node.stop()
    st = rl.key_status(redis_server.url(), key, timeout=5.0)
    assert st["exists"] is False and st["holder"] is None and st["ttl"] is None, st
    assert st["token"] == tok          # the last token issued stays known


def test_key_status_of_a_foreign_value(rl, redis_server, key):
    redis_server.cmd("SET", key, "someone", "PX", 60000)
    st = rl.key_status(redis_server.url(), key, timeout=5.0)
    assert st["exists"] is True and st["holder"] == "someone", st
    assert 0 < st["ttl"] <= 60.0


def test_key_status_errors(rl, redis_server, key):
    # nothing listens there
    dead_url = f"redis://127.0.0.1:{free_port()}"
    outcome, value = run_bounded(lambda: rl.key_status(dead_url, key, timeout=3.0), 20)
    assert outcome == "raised" and isinstance(value, rl.ConnectionError), (outcome, value)
    # the server does not answer (SIGSTOPped): the timeout applies
    redis_server.pause()
    try:
        outcome, value = run_bounded(
            lambda: rl.key_status(redis_server.url(), key, timeout=0.5), 20)
    finally:
        redis_server.resume()
    assert outcome == "raised" and isinstance(value, rl.ConnectionError), (outcome, value)
    # and it works again afterwards
    assert rl.key_status(redis_server.url(), key, timeout=10.0)["exists"] is False


@pytest.mark.parametrize("timeout", [0.5, 0.25])
def test_query_timeout_message_is_a_connection_error(rl, redis_server, key, timeout):
    # A stalled server (SIGSTOPped: the connection is accepted, no reply ever
    # comes) and a command_timeout longer than the query's own timeout: the
    # query gives up first, with the binding's "no answer within" message
    # (it once used %f in PyErr_Format, a SystemError on 3.12+).
    redis_server.pause()
    try:
        outcome, value = run_bounded(
            lambda: rl.key_status(redis_server.url(), key, timeout=timeout,
                                  command_timeout=30.0), 20)
    finally:
        redis_server.resume()
    assert outcome == "raised", (outcome, value)
    assert type(value) is rl.ConnectionError, repr(value)
    assert isinstance(value, ConnectionError)          # also the builtin
    assert str(value).startswith(f"no answer from Redis within {timeout:.3f} s"), str(value)


# ---------------------------------------------------------------------------
# Watch
# ---------------------------------------------------------------------------
def test_watch_argument_checks(rl, redis_server, key):
    with pytest.raises(TypeError):
        rl.Watch(redis_server.url(), key, on_change="not callable")
    for bad in (0, -1.0):
        with pytest.raises(ValueError):
            rl.Watch(redis_server.url(), key, poll_interval=bad)


def test_watch_initial_elected_released(rl, redis_server, make_node, make_watch, key):
    rec = Recorder()
    w = make_watch(redis_server.url(), key, on_change=rec, poll_interval=SLOW_POLL)
    w.start()
    rec.wait("initial", None)

    node = make_node(redis_server.url(), ttl=SLOW_POLL, node_id="watched-node")
    node.start()
    assert node.wait_for_leadership(10)
    rec.wait("elected", "watched-node")
    node.stop()                         # release notice over pub/sub
    rec.wait("released", None)
    stays_true(lambda: True, 0.3)     # let a straggling event (there should be none) arrive
    assert rec.kinds() == [("initial", None), ("elected", "watched-node"), ("released", None)]
    _all_on_dispatcher(rec)


def test_watch_initial_reports_current_holder(rl, redis_server, make_node, make_watch, key):
    node = make_node(redis_server.url(), ttl=SLOW_POLL, node_id="first-holder")
    node.start()
    assert node.wait_for_leadership(10)
    rec = Recorder()
    with make_watch(redis_server.url(), key, on_change=rec, poll_interval=SLOW_POLL):
        rec.wait("initial", "first-holder")
        # hand-over: resign, another node takes it
        other = make_node(redis_server.url(), ttl=SLOW_POLL, node_id="second-holder")
        other.start()
        node.resign()
        rec.wait("released", None)
        rec.wait("elected", "second-holder")
    kinds = rec.kinds()
    assert kinds[0] == ("initial", "first-holder")
    assert kinds.index(("released", None)) < kinds.index(("elected", "second-holder"))
    _all_on_dispatcher(rec)


def test_watch_sees_lock_expiry_right_after_pttl(rl, redis_server, make_lock, make_watch, key):
    rec = Recorder()
    w = make_watch(redis_server.url(), key, on_change=rec, poll_interval=SLOW_POLL)
    w.start()
    rec.wait("initial", None)

    ttl = 0.4
    lock = make_lock(redis_server.url(), key, ttl=ttl, auto_renew=False)
    t_before = boottime()
    assert lock.acquire(timeout=10)
    t_after = boottime()
    rec.wait("elected", lock.node_id)
    ev = rec.wait("expired", timeout=10)
    assert ev[1] is None
    # The key was set between t_before and t_after with a PX of ttl.
    assert ev[2] >= t_before + ttl - 0.005, "expiry reported before the key could expire"
    assert ev[2] <= t_after + ttl + 1.0, (
        f"expiry reported {ev[2] - (t_after + ttl):.3f}s after the key's PTTL ended")
    assert redis_server.cmd("EXISTS", key) == 0
    assert [k for k, _ in rec.kinds()] == ["initial", "elected", "expired"]
    _all_on_dispatcher(rec)
    with pytest.raises(rl.LockNotOwnedError):
        lock.release()


def test_watch_started_on_held_key_sees_its_expiry(rl, redis_server, make_lock, make_watch, key):
    lock = make_lock(redis_server.url(), key, ttl=0.6, auto_renew=False)
    t_before = boottime()
    assert lock.acquire(timeout=10)
    t_after = boottime()
    rec = Recorder()
    w = make_watch(redis_server.url(), key, on_change=rec, poll_interval=SLOW_POLL)
    w.start()
    first = rec.wait("initial")
    if first[1] is None:
        pytest.fail(f"watch started {first[2] - t_after:.3f}s after the acquire did not see the "
                    f"holder")  # only on a badly overloaded machine
    assert first[1] == lock.node_id
    ev = rec.wait("expired", None, timeout=10)
    assert t_before + 0.6 - 0.005 <= ev[2] <= t_after + 0.6 + 1.0
    with pytest.raises(rl.LockNotOwnedError):
        lock.release()


def test_watch_lock_release_is_seen(rl, redis_server, make_lock, make_watch, key):
    rec = Recorder()
    w = make_watch(redis_server.url(), key, on_change=rec, poll_interval=SLOW_POLL)
    w.start()
    rec.wait("initial", None)
    lock = make_lock(redis_server.url(), key, ttl=SLOW_POLL)
    with lock:
        rec.wait("elected", lock.node_id)
    rec.wait("released", None)


def test_watch_polls_for_changes_without_notice(rl, redis_server, make_node, make_watch, key):
    """A foreign SET sends no notice; the poll interval bounds its discovery."""
    node = make_node(redis_server.url(), ttl=SLOW_POLL, node_id="polled-node")
    node.start()
    assert node.wait_for_leadership(10)
    rec = Recorder()
    w = make_watch(redis_server.url(), key, on_change=rec, poll_interval=0.3)
    w.start()
    rec.wait("initial", "polled-node")
    redis_server.cmd("SET", key, "usurper")
    rec.wait("elected", "usurper", timeout=10)
    redis_server.cmd("DEL", key)
    ev = rec.wait("expired", None, timeout=10)      # gone without a release notice
    _all_on_dispatcher(rec)
    assert ev[1] is None


def test_stopped_watch_reports_nothing(rl, redis_server, make_node, make_watch, key):
    rec = Recorder()
    w = make_watch(redis_server.url(), key, on_change=rec, poll_interval=SLOW_POLL)
    with w as same:
        assert same is w
        rec.wait("initial", None)
    n = len(rec.snapshot())
    node = make_node(redis_server.url(), ttl=1.0)
    node.start()
    assert node.wait_for_leadership(10)
    node.stop()
    assert stays_true(lambda: len(rec.snapshot()) == n, 0.5), rec.kinds()
    w.stop()    # idempotent


def test_watch_restart(rl, redis_server, make_node, make_watch, key):
    rec = Recorder()
    w = make_watch(redis_server.url(), key, on_change=rec, poll_interval=SLOW_POLL)
    w.start()
    rec.wait("initial", None)
    w.stop()
    node = make_node(redis_server.url(), ttl=SLOW_POLL, node_id="while-stopped")
    node.start()
    assert node.wait_for_leadership(10)
    n = len(rec.snapshot())
    w.start()
    rec.wait("initial", "while-stopped", start=n)


def test_two_watches_report_what_happened(rl, redis_server, make_node, make_watch, key):
    """Two watches on one key, a holder that comes and goes a few times: each
    watch reports exactly elected -> released per round, and nothing after.

    The release notice (pub/sub connection) and the status query the watch
    sends when it hears of the election (command connection) race; neither
    may turn a release into "expired" or bring back a holder that is gone."""
    recs = [Recorder(), Recorder()]
    for r in recs:
        make_watch(redis_server.url(), key, on_change=r, poll_interval=SLOW_POLL).start()
    for r in recs:
        r.wait("initial", None)
    bad = []
    for rnd in range(4):
        marks = [len(r.snapshot()) for r in recs]
        node = make_node(redis_server.url(), ttl=SLOW_POLL, node_id=f"holder-{rnd}")
        node.start()
        assert node.wait_for_leadership(10)
        node.stop()
        for r, m in zip(recs, marks):
            # the release is reported at once (as "released", we check below)
            wait_until(lambda: len(r.snapshot()) >= m + 2, 10,
                       desc=f"round {rnd}: two events after the start; got {r.kinds()[m:]}")
        stays_true(lambda: True, 0.3)     # let a straggling event (there should be none) arrive
        for i, (r, m) in enumerate(zip(recs, marks)):
            got = r.kinds()[m:]
            if got != [("elected", f"holder-{rnd}"), ("released", None)]:
                bad.append((rnd, i, got))
    assert not bad, "watch events that do not match what happened (round, watch, events): " + \
        "; ".join(map(str, bad))
    for r in recs:
        _all_on_dispatcher(r)


def test_watch_callback_exception_is_logged(rl, redis_server, make_node, make_watch, key,
                                            caplog):
    caplog.set_level(logging.DEBUG, logger="redlease")
    rec = Recorder(raise_first=True)
    w = make_watch(redis_server.url(), key, on_change=rec, poll_interval=SLOW_POLL)
    w.start()
    rec.wait("initial", None)
    wait_until(lambda: any("callback failure on purpose" in (r.exc_text or "") or
                           (r.exc_info and "callback failure on purpose" in str(r.exc_info[1]))
                           for r in caplog.records if r.name.startswith("redlease")),
               10, desc="the callback's exception logged on the redlease logger")
    # the watch keeps working
    node = make_node(redis_server.url(), ttl=SLOW_POLL, node_id="after-error")
    node.start()
    assert node.wait_for_leadership(10)
    rec.wait("elected", "after-error")
