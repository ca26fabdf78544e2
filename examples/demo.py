#!/usr/bin/env python3
"""The redlease demo: three node processes, a graceful handover and a crash
failover on a throwaway redis-server.  Same as ``redlease demo`` (the code is
in python/redlease/_cli_demo.py); kept so that

    python examples/demo.py [URL] [--nodes N]

still works.
"""
import sys

from redlease.cli import main

if __name__ == "__main__":
    args = sys.argv[1:]
    if args and args[0].split("://")[0] in ("redis", "rediss", "unix"):
        args = ["--url"] + args
    sys.exit(main(["demo", *args], prog="examples/demo.py"))
