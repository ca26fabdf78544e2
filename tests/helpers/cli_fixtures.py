"""Fixtures and helpers for the ``redlease`` command line tests.

The CLI always runs in a subprocess (``python -m redlease ...`` with this
interpreter, or the installed console script).  Every process a test starts
is SIGKILLed at teardown, and so is every CMD that ``redlease run`` started
(they record their pids in their log).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from . import procs
from .scripts import Output
from .waiting import wait_until

CHILD_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cli_child.py")


def cli_argv() -> list[str]:
    return [sys.executable, "-m", "redlease"]


def console_script() -> str:
    """The ``redlease`` console script next to this interpreter."""
    return os.path.join(os.path.dirname(sys.executable), "redlease")


def child_cmd(log, *args) -> list[str]:
    """argv of the test CMD (cli_child.py) writing to ``log``."""
    return [sys.executable, CHILD_SCRIPT, str(log), *map(str, args)]


def read_log(path) -> list[dict]:
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def wait_log(path, pred, timeout=15.0, desc="log entry"):
    """Wait until the child log has an entry matching pred; return it."""
    def find():
        for e in read_log(path):
            if pred(e):
                return e
        return None
    return wait_until(find, timeout=timeout, interval=0.02,
                      desc=f"{desc} in {path}: {read_log(path)[-5:]}")


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


class Cli:
    """``start()`` a CLI process (Popen + collected output) or ``run()`` one to the end."""

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.started: list[subprocess.Popen] = []
        self.logs: list[str] = []

    def env(self, extra=None, url=None) -> dict:
        env = dict(os.environ)
        env.pop("REDIS_URL", None)
        env["PYTHONUNBUFFERED"] = "1"
        if extra:
            env.update(extra)
        return env

    def start(self, *args, env=None, argv0=None) -> Output:
        argv = (argv0 or cli_argv()) + [str(a) for a in args]
        p = procs.spawn(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, env=env or self.env())
        self.started.append(p)
        return Output(p)

    def run(self, *args, env=None, timeout=30.0, argv0=None):
        """Run to completion; returns (rc, stdout, stderr)."""
        out = self.start(*args, env=env, argv0=argv0)
        rc = out.wait_exit(timeout)
        return rc, "\n".join(out.out), out.stderr()

    def log(self, name="cmd") -> str:
        path = str(self.tmp_path / f"{name}{len(self.logs)}.log")
        self.logs.append(path)
        return path

    def cleanup(self):
        for p in self.started:
            procs.kill(p)
            for f in (p.stdout, p.stderr):
                try:
                    f.close()
                except (OSError, ValueError):
                    pass
        # CMDs of `redlease run` (their own process groups): kill what is left.
        for path in self.logs:
            for e in read_log(path):
                pid = e.get("pid")
                if pid and pid_alive(pid) and _is_child_script(pid):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass


def _is_child_script(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return CHILD_SCRIPT.encode() in f.read()
    except OSError:
        return False


@pytest.fixture
def cli(tmp_path):
    c = Cli(tmp_path)
    yield c
    c.cleanup()


def wait_gone(pid: int, timeout=10.0):
    wait_until(lambda: not pid_alive(pid), timeout=timeout, interval=0.02,
               desc=f"process {pid} to exit")


def no_traceback(stderr: str) -> bool:
    return "Traceback" not in stderr


def elapsed(t0: float) -> float:
    return time.monotonic() - t0
