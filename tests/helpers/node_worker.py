"""A leader-election participant in its own process, driven by the tests.

Usage: python node_worker.py CONFIG_JSON

CONFIG_JSON keys: url, key (str) or key_hex (bytes as hex), ttl, and optional
renew_interval, retry_interval, node_id, connect_timeout, command_timeout,
autostart (default true), sample_interval (default 0.003), waiter_key (a second
node on that key, and a thread that waits for it to lead: while that key is
held by someone else, that thread runs the engine loop in its waits).

Every event is one JSON line on stdout with "ev", "pid" and "t" (CLOCK_BOOTTIME,
system wide, so comparable between processes):

  hello         node_id, ttl                       after the node is created
  elected       token                              on_elected callback
  revoked       reason                             on_revoked callback
  leader_change leader                             on_leader_change callback
  lead_start    tok                                sampler saw is_leader become True
  hb            tok, last                          sampler: still leading, last True sample
  lead_end      tok, last                          sampler: leadership ended
  gap           gap, lead_after, tok_after         sampler loop did not run for a while
                                                   (process stopped / GIL held)
  status        is_leader, token, leader, lease_remaining, last_error, node_id
  gil_done      dur, n                             the GIL was held by a regex for dur s
  ack           cmd                                a command finished
  error         cmd, error                         a command raised

A sampler thread reads ``is_leader`` and ``token`` every few ms.  A leadership
interval is reported conservatively: it starts at the end of the first True
sample and ends at the start of the last True sample, so the reported interval
is inside the real one; two reported intervals that overlap prove two
processes believed they were leader at the same moment.

Commands on stdin, one per line: start, stop, resign, status, exit,
``gil SECONDS`` (hold the GIL that long with a backtracking regex, in the main
thread).  EOF on stdin = exit.
"""
from __future__ import annotations

import json
import os
import re
import sys
import threading
import time

_out_lock = threading.Lock()


def boottime() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def emit(ev: str, **fields):
    fields["ev"] = ev
    fields["pid"] = os.getpid()
    fields.setdefault("t", boottime())
    line = json.dumps(fields, default=repr)
    with _out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class Sampler(threading.Thread):
    def __init__(self, node, interval: float, gap_threshold: float):
        super().__init__(name="worker-sampler", daemon=True)
        self.node = node
        self.interval = interval
        self.gap_threshold = gap_threshold
        self.done = threading.Event()
        self.cur_tok = None     # token of the interval in progress
        self.last_true = None   # start time of the last True sample
        self.last_hb = 0.0

    def _sample(self):
        t0 = boottime()
        lead = self.node.is_leader
        tok = self.node.token if lead else None
        t1 = boottime()
        if not lead or tok is None:
            return t0, t1, None
        return t0, t1, tok

    def _end_interval(self):
        if self.cur_tok is not None:
            emit("lead_end", tok=self.cur_tok, last=self.last_true)
            self.cur_tok = None

    def run(self):
        prev_loop = boottime()
        while not self.done.is_set():
            t0, t1, tok = self._sample()
            loop_gap = t0 - prev_loop
            prev_loop = t1
            if loop_gap > self.gap_threshold:
                emit("gap", gap=loop_gap, lead_after=tok is not None, tok_after=tok,
                     tok_before=self.cur_tok, t=t0)
            if tok != self.cur_tok:
                self._end_interval()
                if tok is not None:
                    self.cur_tok = tok
                    emit("lead_start", tok=tok, t=t1)
            if tok is not None:
                self.last_true = t0
                if t0 - self.last_hb > 0.05:
                    self.last_hb = t0
                    emit("hb", tok=tok, last=t0)
            time.sleep(self.interval)
        self._end_interval()

    def stop(self):
        self.done.set()
        self.join(5)


def _regex_time(n: int) -> float:
    t = time.perf_counter()
    re.match(r"(a+)+$", "a" * n + "b")
    return time.perf_counter() - t


def hold_gil(seconds: float):
    """Hold the GIL for about ``seconds`` with one catastrophic regex match.

    sre does not release the GIL, so no other Python thread runs meanwhile.
    Each extra character doubles the time of ``(a+)+$`` on ``a...ab``; the
    size is grown step by step (at most 4 characters at a time, aiming below
    the target) until one match takes at least 80% of ``seconds``, so the
    total stays within a few times the target even on a noisy machine.
    Returns (duration of the last match, its size).
    """
    import math
    n = 12
    dur = _regex_time(n)
    for _ in range(60):
        if dur >= 0.8 * seconds:
            break
        k = int(math.floor(math.log2(seconds / max(dur, 1e-6))))
        n += max(1, min(4, k))
        dur = _regex_time(n)
    return dur, n


def main():
    cfg = json.loads(sys.argv[1])
    import redlease

    key = bytes.fromhex(cfg["key_hex"]) if "key_hex" in cfg else cfg["key"]
    ttl = float(cfg["ttl"])
    kwargs = {k: cfg[k] for k in ("node_id", "renew_interval", "retry_interval",
                                  "connect_timeout", "command_timeout", "min_replicas") if k in cfg}

    def on_elected(token):
        emit("elected", token=token)

    def on_revoked(reason):
        emit("revoked", reason=reason)

    def on_leader_change(leader):
        emit("leader_change", leader=leader)

    node = redlease.DistributionNode(cfg["url"], key, ttl=ttl, on_elected=on_elected,
                                     on_revoked=on_revoked,
                                     on_leader_change=on_leader_change, **kwargs)
    emit("hello", node_id=node.node_id, ttl=ttl)
    sampler = Sampler(node, cfg.get("sample_interval", 0.003),
                      cfg.get("gap_threshold", max(0.15, ttl / 4)))
    sampler.start()
    if cfg.get("autostart", True):
        node.start()
    if "waiter_key" in cfg:
        waiter = redlease.DistributionNode(cfg["url"], cfg["waiter_key"], ttl=ttl)
        waiter.start()

        def wait_forever():
            while not waiter.wait_for_leadership(3600):
                pass

        threading.Thread(target=wait_forever, name="worker-waiter", daemon=True).start()

    def status():
        emit("status", is_leader=node.is_leader, token=node.token, leader=node.leader,
             lease_remaining=node.lease_remaining, last_error=node.last_error,
             node_id=node.node_id)

    for line in sys.stdin:
        parts = line.split()
        if not parts:
            continue
        cmd = parts[0]
        try:
            if cmd == "start":
                node.start()
            elif cmd == "stop":
                node.stop()
            elif cmd == "resign":
                node.resign()
            elif cmd == "status":
                status()
            elif cmd == "gil":
                dur, n = hold_gil(float(parts[1]))
                emit("gil_done", dur=dur, n=n)
                status()
            elif cmd == "exit":
                break
            else:
                raise ValueError(f"unknown command {cmd!r}")
            emit("ack", cmd=cmd)
        except Exception as exc:  # noqa: BLE001 - reported to the test
            emit("error", cmd=cmd, error=f"{type(exc).__name__}: {exc}")
    node.stop()
    sampler.stop()
    status()
    emit("bye")


if __name__ == "__main__":
    main()
