"""A redlease.Lock user in its own process, driven by the lock tests.

Usage: python lock_worker.py CONFIG_JSON

Every output line is one JSON object with "ev", "pid" and "t" (CLOCK_BOOTTIME,
comparable between processes).  Modes (CONFIG_JSON "mode"):

counter   url, key, port, counter_key, n, ttl, seed
          Waits for a line "go" on stdin, then n times:
              with Lock(url, key, ttl=ttl): read the counter key, sleep a tiny
              random time, write counter + 1
          and reports one "iter" event per critical section:
              tok (fencing token), owned (lock.owned inside), read (counter
              value read), t_acq (right after acquire), t_rel (right before
              release).  Then "done".

hold      url, key, ttl, optional node_id
          Acquires (bounded wait), reports "acquired" (token, node_id), then
          obeys stdin commands: "release" -> reports "released" (t_before,
          t_after), "exit" or EOF -> exits 0.  Meant to be SIGKILLed too.

many      url, key, n, ttl
          In one process: records the thread counts, creates n Locks on keys
          "<key>:<i>" and acquires them all (report "held": owned count,
          node_ids, engine_stats, thread counts), sleeps ttl + 0.5 s (report
          "after_ttl": owned count, engine_stats, thread counts, smallest
          renewal count), waits for "release" on stdin, releases them all
          (report "released": owned count, locked() of a sample).

Any exception is reported as an "error" event and the exit code is 1.
"""
from __future__ import annotations

import json
import os
import random
import sys
import threading
import time
import traceback

_TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

from helpers.node_worker import boottime, emit  # noqa: E402  (same JSON-line protocol)
from helpers.resp import RespClient  # noqa: E402

import redlease  # noqa: E402


def run_counter(cfg: dict):
    rnd = random.Random(cfg.get("seed"))
    client = RespClient("127.0.0.1", cfg["port"], timeout=10.0)
    emit("ready")
    line = sys.stdin.readline()
    if line.strip() != "go":
        raise RuntimeError(f"expected 'go', got {line!r}")
    for i in range(int(cfg["n"])):
        with redlease.Lock(cfg["url"], cfg["key"], ttl=float(cfg["ttl"])) as lk:
            t_acq = boottime()
            tok = lk.token
            owned = lk.owned
            raw = client.execute("GET", cfg["counter_key"])
            value = int(raw) if raw is not None else 0
            time.sleep(rnd.uniform(0.0, 0.003))
            client.execute("SET", cfg["counter_key"], value + 1)
            t_rel = boottime()
        emit("iter", i=i, tok=tok, owned=owned, read=value, t_acq=t_acq, t_rel=t_rel)
    client.close()
    emit("done")


def run_hold(cfg: dict):
    kwargs = {"ttl": float(cfg["ttl"])}
    if cfg.get("node_id"):
        kwargs["node_id"] = cfg["node_id"]
    lock = redlease.Lock(cfg["url"], cfg["key"], **kwargs)
    if not lock.acquire(timeout=float(cfg.get("acquire_timeout", 20.0))):
        raise RuntimeError("could not acquire the lock")
    emit("acquired", token=lock.token, node_id=lock.node_id)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "release":
            t_before = boottime()
            lock.release()
            emit("released", t_before=t_before, t_after=boottime())
        elif cmd == "exit":
            break
        elif cmd:
            raise RuntimeError(f"unknown command {cmd!r}")
    emit("bye")


def os_threads() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return 0


def thread_info() -> dict:
    return {"py_threads": threading.active_count(), "os_threads": os_threads(),
            "thread_names": sorted(t.name for t in threading.enumerate())}


def run_many(cfg: dict):
    n, ttl = int(cfg["n"]), float(cfg["ttl"])
    emit("before", engine=redlease.engine_stats(), **thread_info())
    locks = [redlease.Lock(cfg["url"], f"{cfg['key']}:{i}", ttl=ttl) for i in range(n)]
    t0 = time.monotonic()
    for lock in locks:
        if not lock.acquire(timeout=10):
            raise RuntimeError(f"could not acquire {lock.key!r}")
    emit("held", owned=sum(lock.owned for lock in locks), secs=time.monotonic() - t0,
         node_ids=[lock.node_id for lock in locks],
         tokens_ok=all(isinstance(lock.token, int) for lock in locks),
         engine=redlease.engine_stats(), **thread_info())
    time.sleep(ttl + 0.5)   # longer than the ttl: only renewal keeps them
    emit("after_ttl", owned=sum(lock.owned for lock in locks),
         min_renewals=min(lock.stats()["renewals"] for lock in locks),
         engine=redlease.engine_stats(), **thread_info())
    line = sys.stdin.readline()
    if line.strip() != "release":
        raise RuntimeError(f"expected 'release', got {line!r}")
    for lock in locks:
        lock.release()
    emit("released", owned=sum(lock.owned for lock in locks),
         locked_sample=[lock.locked() for lock in locks[::97]],
         engine=redlease.engine_stats(), **thread_info())


def main():
    cfg = json.loads(sys.argv[1])
    try:
        {"counter": run_counter, "hold": run_hold, "many": run_many}[cfg["mode"]](cfg)
    except BaseException as exc:  # noqa: BLE001 - reported to the test
        emit("error", error=f"{type(exc).__name__}: {exc}", tb=traceback.format_exc())
        sys.stdout.flush()
        os._exit(1)
    sys.stdout.flush()
    sys.exit(0)


if __name__ == "__main__":
    main()
