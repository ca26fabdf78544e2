"""redlease.Lock across processes: mutual exclusion under contention, fencing
tokens, wake-up on release and on a SIGKILLed holder's expiry, Ctrl-C while
waiting, fork.

Every child process is SIGKILLed by a fixture at teardown.
"""
from __future__ import annotations

import os
import signal
import textwrap
import time

import pytest

from helpers.lock_procs import lock_proc, make_lock  # noqa: F401 - fixtures
from test_lock_basic import OwnerThread as AcquireThread  # a Lock belongs to its acquirer
from helpers.resp import RespClient
from helpers.scripts import Output
from helpers.waiting import boottime
from helpers.terms import term_of

# ---------------------------------------------------------------------------
# mutual exclusion among processes
# ---------------------------------------------------------------------------
WORKERS = 4
ITERATIONS = 25


@pytest.mark.node_timeout(90)
def test_mutual_exclusion_counter_under_contention(rl, redis_server, lock_proc, key):
    counter_key = key + ":counter"
    procs_ = [lock_proc({"mode": "counter", "url": redis_server.url(), "key": key,
                         "port": redis_server.port, "counter_key": counter_key,
                         "n": ITERATIONS, "ttl": 2.0, "seed": i})
              for i in range(WORKERS)]
    for p in procs_:
        p.wait_ev("ready", 30)
    for p in procs_:
        p.send("go")
    for p in procs_:
        p.wait_ev("done", 60)
        assert p.wait_exit(15) == 0, p.stderr()

    total = WORKERS * ITERATIONS
    assert int(redis_server.cmd("GET", counter_key)) == total, "lost updates: not exclusive"

    sections = []
    for p in procs_:
        its = p.events("iter")
        assert len(its) == ITERATIONS
        sections += [dict(ev, proc=p.pid) for ev in its]
    assert all(s["owned"] is True for s in sections)
    # each critical section read a distinct counter value: 0 .. total-1
    assert sorted(s["read"] for s in sections) == list(range(total))

    tokens = [s["tok"] for s in sections]
    assert all(isinstance(t, int) for t in tokens)
    assert len(set(tokens)) == total, "a fencing token was handed out twice"

    by_time = sorted(sections, key=lambda s: s["t_acq"])
    # acquisition order == counter order, and tokens increase along it
    assert [s["read"] for s in by_time] == list(range(total))
    for a, b in zip(by_time, by_time[1:]):
        assert b["tok"] > a["tok"], f"token did not increase: {a} then {b}"
        # sections measured inside the lock never overlap
        assert a["t_rel"] <= b["t_acq"], f"overlapping critical sections: {a} and {b}"
    # the key is free at the end
    assert redis_server.cmd("EXISTS", key) == 0
    # every worker got the lock at least once (no total starvation)
    assert len({s["proc"] for s in sections}) == WORKERS


# ---------------------------------------------------------------------------
# waking up: release notice, expiry of a SIGKILLed holder
# ---------------------------------------------------------------------------
def test_waiter_wakes_when_holder_in_other_process_releases(rl, redis_server, lock_proc,
                                                            make_lock, key):
    # ttl 30 on both sides: retry interval ~10 s, so acquiring within 5 s of
    # the release can only come from the release notice
    holder = lock_proc({"mode": "hold", "url": redis_server.url(), "key": key, "ttl": 30.0})
    acq = holder.wait_ev("acquired", 30)
    waiter = make_lock(redis_server.url(), key, ttl=30.0)
    assert waiter.locked()
    assert waiter.status()[0] == acq["node_id"]
    t = AcquireThread(waiter, timeout=25)
    t.start()
    time.sleep(0.3)
    assert t.is_alive(), "acquire returned while the other process holds the lock"
    holder.send("release")
    rel = holder.wait_ev("released", 15)
    assert t.outcome(30) is True
    assert t.t_done >= rel["t_before"], "acquired before the holder started to release"
    assert t.t_done - rel["t_after"] < 5.0, \
        f"waiter acquired {t.t_done - rel['t_after']:.2f}s after the release"
    assert waiter.token > acq["token"]
    t.release()
    holder.send("exit")
    assert holder.wait_exit(15) == 0, holder.stderr()


@pytest.mark.node_timeout(90)
def test_waiter_gets_lock_after_sigkilled_holder_expires(rl, redis_server, lock_proc,
                                                         make_lock, key):
    holder_ttl = 1.0
    holder = lock_proc({"mode": "hold", "url": redis_server.url(), "key": key,
                        "ttl": holder_ttl})
    acq = holder.wait_ev("acquired", 30)
    # the waiter's own ttl is long (retry interval ~10 s): it must aim its
    # retry at the key's expiry, not poll on a fixed period
    waiter = make_lock(redis_server.url(), key, ttl=30.0)
    t = AcquireThread(waiter, timeout=30)
    t.start()
    time.sleep(1.5)   # the holder renews meanwhile; the waiter keeps waiting
    assert t.is_alive(), "acquire returned while the holder is alive"
    assert term_of(redis_server.cmd("GET", key)) == acq["node_id"].encode()

    t_kill = holder.sigkill()
    with RespClient("127.0.0.1", redis_server.port) as c:
        t_q = boottime()
        pttl = c.execute("PTTL", key)
    # the key expires no earlier than t_q + pttl
    expiry = t_q + max(pttl, 0) / 1000.0

    assert t.outcome(holder_ttl + 20) is True
    assert t.t_done >= expiry - 0.05, (
        f"acquired {expiry - t.t_done:.3f}s before the dead holder's key expired")
    assert t.t_done - t_kill < holder_ttl + 3.0, (
        f"acquired {t.t_done - t_kill:.2f}s after the kill (ttl {holder_ttl}): "
        "the retry is not aimed at the expiry")
    assert waiter.token > acq["token"]
    assert term_of(redis_server.cmd("GET", key)) == waiter.node_id.encode()
    t.release()


# ---------------------------------------------------------------------------
# Ctrl-C while waiting
# ---------------------------------------------------------------------------
SIGINT_SCRIPT = textwrap.dedent(r"""
    import sys
    import redlease

    url, key, how = sys.argv[1], sys.argv[2], sys.argv[3]
    lock = redlease.Lock(url, key, ttl=2.0)
    print("WAITING", flush=True)
    if how == "acquire":
        lock.acquire()
    elif how == "timeout":
        lock.acquire(timeout=120)
    elif how == "with":
        with lock:
            pass
    print("RETURNED", flush=True)
""")


@pytest.mark.parametrize("how", ["acquire", "timeout", "with"])
def test_ctrl_c_while_waiting_in_acquire(rl, redis_server, run_script, make_lock, key, how):
    holder = make_lock(redis_server.url(), key, ttl=5.0)
    assert holder.acquire(timeout=10)
    proc = run_script(SIGINT_SCRIPT, redis_server.url(), key, how)
    out = Output(proc)
    out.wait_line("WAITING", 30)
    time.sleep(0.6)   # let it block inside acquire
    assert proc.poll() is None, out.stderr()
    proc.send_signal(signal.SIGINT)
    rc = out.wait_exit(10)
    assert rc != 0
    assert "KeyboardInterrupt" in out.stderr(), out.stderr()
    assert "RETURNED" not in out.out
    # the holder is undisturbed
    assert holder.owned
    assert term_of(redis_server.cmd("GET", key)) == holder.node_id.encode()
    holder.release()


# ---------------------------------------------------------------------------
# fork
# ---------------------------------------------------------------------------
FORK_SCRIPT = textwrap.dedent(r"""
    import json, os, select, sys, time
    import redlease

    url, key = sys.argv[1], sys.argv[2]
    ttl = 1.0
    lock = redlease.Lock(url, key, ttl=ttl)
    assert lock.acquire(timeout=10)
    tok = lock.token
    print(json.dumps({"parent_id": lock.node_id, "token": tok}), flush=True)

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        res = {}
        rc = 1
        try:
            res["owned"] = lock.owned
            res["token"] = lock.token
            try:
                lock.release()
                res["release"] = "returned"
            except redlease.LockNotOwnedError:
                res["release"] = "LockNotOwnedError"
            except redlease.RedleaseError as e:
                res["release"] = "RedleaseError: %s" % e
            except BaseException as e:
                res["release"] = "%s: %s" % (type(e).__name__, e)
            res["owned_after_release"] = lock.owned
            same = redlease.Lock(url, key, ttl=ttl)
            res["same_key_nonblocking"] = same.acquire(blocking=False)
            other = redlease.Lock(url, key + ":child", ttl=ttl)
            res["other_node_id"] = other.node_id
            res["other_acquired"] = other.acquire(timeout=10)
            res["other_token"] = other.token
            other.release()
            res["other_released"] = not other.owned
            rc = 0
        except BaseException as e:
            res["error"] = "%s: %s" % (type(e).__name__, e)
        os.write(w, json.dumps(res).encode())
        os.close(w)
        os._exit(rc)

    os.close(w)
    data = b""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([r], [], [], 0.2)
        if ready:
            chunk = os.read(r, 65536)
            if not chunk:
                break
            data += chunk
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
    print(json.dumps({"child": json.loads(data.decode() or "null"), "status": status}),
          flush=True)
    # the parent keeps its lease well past the ttl after the child is gone
    time.sleep(3 * ttl)
    print(json.dumps({"parent": {"owned": lock.owned, "token": lock.token,
                                 "holder": lock.status()[0]}}), flush=True)
    lock.release()
    print(json.dumps({"released": True}), flush=True)
""")


@pytest.mark.node_timeout(90)
def test_fork_child_does_not_own_parent_lock(rl, redis_server, run_script, key):
    out = Output(run_script(FORK_SCRIPT, redis_server.url(), key))
    first = out.wait_json("parent_id", 30)
    parent_id, tok = first["parent_id"], first["token"]
    report = out.wait_json("child", 45)
    assert report["status"] != "hung", "the forked child did not exit"
    child = report["child"]
    assert child is not None, f"no report from the child; stderr:\n{out.stderr()}"
    assert "error" not in child, child
    assert os.WIFEXITED(report["status"]) and os.WEXITSTATUS(report["status"]) == 0, report
    assert child["owned"] is False
    assert child["token"] is None
    assert child["release"] in ("LockNotOwnedError", ) or \
        child["release"].startswith("RedleaseError"), child["release"]
    assert child["owned_after_release"] is False
    assert child["same_key_nonblocking"] is False, "the child took the parent's lock"
    assert child["other_node_id"] != parent_id
    assert child["other_acquired"] is True
    assert isinstance(child["other_token"], int)
    assert child["other_released"] is True
    # the child's release attempt and exit left the parent's lease alone
    assert term_of(redis_server.cmd("GET", key)) == parent_id.encode()
    parent = out.wait_json("parent", 30)["parent"]
    assert parent == {"owned": True, "token": tok, "holder": parent_id}, parent
    out.wait_json("released", 15)
    assert out.wait_exit(20) == 0, out.stderr()
    assert redis_server.cmd("EXISTS", key) == 0
