"""The CMD of the ``redlease run`` tests: records what it sees as JSON lines.

Usage: python cli_child.py LOG [--code N] [--sleep S] [--term-code N]
                               [--ignore-term] [--fds] [--flock PATH]

Appends to LOG one line {"ev": "start", pid, token, key, node_id} at start,
then, on SIGTERM/SIGINT/SIGHUP, {"ev": "signal", "sig": N} and exits with
--term-code (unless --ignore-term, in which case SIGTERM is ignored).
Otherwise it sleeps --sleep seconds (default: forever) and exits with --code.
With --fds it also records every open file descriptor and its target
({"ev": "fds", "fds": {fd: target}}), and which of them are TCP sockets
connected to a given port (taken from REDIS_PORT in the environment).
Every record has "t" (CLOCK_MONOTONIC) and "boot" (CLOCK_BOOTTIME, the
engine's clock, comparable across processes); an exit by itself is recorded
as {"ev": "exit"}.  With --flock PATH it takes an exclusive flock on PATH at
start without waiting and records "overlap": true if another CMD still holds
it (a CMD's flock goes only when the process is gone, SIGKILL included).
With --grandchild it also forks a process in its process group that ignores
SIGTERM and shares that flock (so the flock goes only when both are gone);
it records {"ev": "grandchild", "pid": its pid, "parent": CMD's pid}.
"""
import fcntl
import argparse
import json
import os
import signal
import sys
import time


def record(path, **fields):
    fields["t"] = time.monotonic()
    fields["boot"] = time.clock_gettime(time.CLOCK_BOOTTIME)
    fields["pid"] = os.getpid()
    line = (json.dumps(fields) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def socket_inodes_to_port(port):
    """Inodes of TCP sockets whose local or remote port is ``port``."""
    found = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    local, remote, inode = parts[1], parts[2], parts[9]
                    ports = {int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16)}
                    if port in ports:
                        found.add(inode)
        except OSError:
            pass
    return found


def open_fds():
    out = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            out[name] = os.readlink("/proc/self/fd/" + name)
        except OSError:
            pass   # the directory's own fd, closed meanwhile
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("log")
    ap.add_argument("--code", type=int, default=0)
    ap.add_argument("--sleep", type=float, default=None)
    ap.add_argument("--term-code", type=int, default=0)
    ap.add_argument("--ignore-term", action="store_true")
    ap.add_argument("--fds", action="store_true")
    ap.add_argument("--flock", default=None)
    ap.add_argument("--grandchild", action="store_true")
    args = ap.parse_args()

    def on_signal(signum, frame):
        record(args.log, ev="signal", sig=signum)
        if not (args.ignore_term and signum == signal.SIGTERM):
            record(args.log, ev="exit", code=args.term_code)
            os._exit(args.term_code)

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)
    overlap = None
    if args.flock:
        lock_fd = os.open(args.flock, os.O_RDWR | os.O_CREAT, 0o644)   # held until exit
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            overlap = False
        except BlockingIOError:
            overlap = True
    record(args.log, ev="start", token=os.environ.get("REDLEASE_TOKEN"),
           key=os.environ.get("REDLEASE_KEY"), node_id=os.environ.get("REDLEASE_NODE_ID"),
           pgid=os.getpgid(0), overlap=overlap)
    if args.grandchild:
        parent = os.getpid()
        if os.fork() == 0:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            record(args.log, ev="grandchild", parent=parent)
            while True:
                time.sleep(3600)
    if args.fds:
        fds = open_fds()
        port = int(os.environ.get("REDIS_PORT", "0"))
        inodes = socket_inodes_to_port(port) if port else set()
        redis_fds = [fd for fd, target in fds.items()
                     if target.startswith("socket:[") and target[8:-1] in inodes]
        record(args.log, ev="fds", fds=fds, redis_fds=redis_fds)
    if args.sleep is None:
        while True:
            time.sleep(3600)
    time.sleep(args.sleep)
    record(args.log, ev="exit", code=args.code)
    sys.exit(args.code)


if __name__ == "__main__":
    main()
