"""Runs tests/c/test_tls.c (OpenSSL streams, ASan/UBSan) against real TLS
redis-servers: server-only TLS, mutual TLS and a plain port."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from helpers.tls import Certs, TLSRedisServer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
C_TESTS = os.path.join(REPO, "tests", "c")


pytestmark = pytest.mark.deployment


@pytest.fixture(scope="module")
def certs():
    c = Certs()
    yield c
    c.cleanup()


@pytest.mark.node_timeout(600)
def test_tls_streams_against_servers(certs):
    if shutil.which("make") is None or shutil.which("gcc") is None:
        pytest.skip("make and gcc are needed to build the C tests")
    build = subprocess.run(["make", "-C", C_TESTS, "build/test_tls"], capture_output=True,
                           text=True, timeout=540)
    assert build.returncode == 0, build.stdout + build.stderr
    one = TLSRedisServer(certs, auth_clients="no")
    mutual = TLSRedisServer(certs, auth_clients="yes")
    try:
        one.start()
        mutual.start()
        env = dict(os.environ, RL_TLS_TEST_DIR=certs.dir, RL_TLS_TEST_PORT=str(one.tls_port),
                   RL_TLS_TEST_MTLS_PORT=str(mutual.tls_port),
                   RL_TLS_TEST_PLAIN_PORT=str(one.port),
                   ASAN_OPTIONS="detect_leaks=1", UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1")
        p = subprocess.run([os.path.join(C_TESTS, "build", "test_tls")], env=env,
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stdout + p.stderr
        assert "0 failed" in p.stdout
    finally:
        one.cleanup()
        mutual.cleanup()
