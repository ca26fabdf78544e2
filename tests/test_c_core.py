"""Runs the plain-C tests of ext/core (tests/c, built with ASan/UBSan) via ``make check``."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
C_TESTS = os.path.join(REPO, "tests", "c")
MAKE_TIMEOUT = 840  # seconds; building every core file with sanitizers takes a while


def _redis_port(request):
    """Port of the ``redis_server`` fixture when the conftest provides one (and redis-server
    exists); None otherwise.  The C tests that need a server read REDLEASE_TEST_REDIS_PORT."""
    try:
        server = request.getfixturevalue("redis_server")
    except (pytest.FixtureLookupError, pytest.skip.Exception):
        return None
    return getattr(server, "port", None)


@pytest.mark.node_timeout(MAKE_TIMEOUT + 30)
def test_c_core(request):
    missing = [tool for tool in ("make", "gcc") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"cannot build the C tests: {' and '.join(missing)} not found on PATH")

    env = dict(os.environ)
    port = _redis_port(request)
    if port is not None:
        env["REDLEASE_TEST_REDIS_PORT"] = str(port)

    cmd = ["make", "-C", C_TESTS, "check"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, errors="replace", start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=MAKE_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # make and the test programs it started
        out, _ = proc.communicate()
        pytest.fail(f"{' '.join(cmd)} did not finish within {MAKE_TIMEOUT}s; output:\n{out}",
                    pytrace=False)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    if proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited with {proc.returncode}; output:\n{out}", pytrace=False)
