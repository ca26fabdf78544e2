"""One node process of ``redlease demo``.

    REDLEASE_DEMO_URL=URL python -m redlease._cli_demo_node KEY NAME TTL

(the URL comes in the environment so that no password shows in ps.)

Campaigns on KEY and reports its state changes as JSON lines on stdout.
SIGTERM/SIGINT, or the demo closing our stdin, -> node.stop(), which releases
a held lease.
"""
import json
import os
import signal
import sys
import threading
import time


def now():
    # CLOCK_MONOTONIC is system-wide on Linux: comparable across processes.
    return time.monotonic()


def _err(e):
    return None if e is None else "%s" % (e,)


def run_node(url, key, name, ttl):
    import redlease

    out_lock = threading.Lock()

    def emit(ev, t=None, **kw):
        kw.update(ev=ev, node=name, t=now() if t is None else t)
        with out_lock:
            try:
                sys.stdout.write(json.dumps(kw) + "\n")
                sys.stdout.flush()
            except (OSError, ValueError):
                pass  # the demo is gone

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda s, f: stop.set())
    signal.signal(signal.SIGINT, lambda s, f: stop.set())

    def watch_parent():
        try:
            while os.read(0, 4096):  # b"" at EOF: the demo is gone
                pass
        except OSError:
            pass
        stop.set()

    threading.Thread(target=watch_parent, daemon=True).start()

    node = redlease.DistributionNode(url, key, node_id=name, ttl=ttl)
    node.start()
    emit("started", pid=os.getpid())

    leading, seen_leader, seen_error = False, None, None
    exit_code = 0
    try:
        while not stop.is_set():
            if leading:
                stop.wait(0.001)        # is_leader is a memory read: poll it
            else:
                node.wait_for_leadership(timeout=0.05)  # returns when elected
            t = now()
            is_leader = node.is_leader
            if is_leader != leading:
                leading = is_leader
                if leading:
                    emit("elected", t=t, token=node.token, remaining=node.lease_remaining)
                else:
                    emit("revoked", t=t, error=_err(node.last_error))
            holder = node.leader
            if holder != seen_leader:
                seen_leader = holder
                emit("sees", t=t, leader=holder)
            err = _err(node.last_error)
            if err != seen_error:
                seen_error = err
                if err:
                    emit("error", t=t, error=err)
    except redlease.RedleaseError as exc:
        # What waiting cannot fix (wrong password, ACL, bad db): say so, exit 1.
        emit("fatal", t=now(), error=_err(str(exc)))
        exit_code = 1
    finally:
        emit("stopping", leader=node.is_leader)
        t = now()
        node.stop()
        emit("stopped", took=now() - t)
        # Leave at once: nothing is left to clean up, and the stdin watcher
        # (a daemon thread) cannot trip interpreter shutdown.
        os._exit(exit_code)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    url = os.environ.get("REDLEASE_DEMO_URL")
    if len(argv) != 3 or not url:
        sys.stderr.write("usage: REDLEASE_DEMO_URL=URL python -m redlease._cli_demo_node "
                         "KEY NAME TTL\n")
        return 2
    key, name, ttl = argv
    run_node(url, key, name, float(ttl))
    return 0


if __name__ == "__main__":
    sys.exit(main())
