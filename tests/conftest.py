"""Fixtures for the redlease node tests.

Everything runs against real redis-server processes on loopback ports; faults
are real (signals, restarts, a TCP proxy).  Every process, proxy and node a
test starts is torn down by a fixture, even when the test fails.

Safety nets (pytest-timeout is not assumed to be installed):
  * each test gets a soft time limit (SIGALRM -> TestTimeLimit in the main
    thread; default 120 s, ``@pytest.mark.node_timeout(seconds)`` to change);
  * a watchdog thread kills every registered child process and exits the run
    if a test overstays its limit by another 60 s (a true hang).
"""
from __future__ import annotations

import faulthandler
import gc
import os
import signal
import sys
import threading
import time

import pytest

_TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

from helpers import procs  # noqa: E402
from helpers.proxy import TcpProxy  # noqa: E402
from helpers.redis_server import REDIS_SERVER, RedisServer  # noqa: E402
from helpers.waiting import run_bounded, wait_until  # noqa: E402
from helpers.workers import Worker  # noqa: E402

try:  # guarded: collection must work (and say why) before the package exists
    import redlease as _redlease
    _REDLEASE_IMPORT_ERROR = None
except Exception as _exc:  # noqa: BLE001
    _redlease = None
    _REDLEASE_IMPORT_ERROR = f"{type(_exc).__name__}: {_exc}"

DEFAULT_TEST_LIMIT = float(os.environ.get("REDLEASE_TEST_LIMIT", "120"))
HARD_EXTRA = 60.0


def pytest_configure(config):
    config.addinivalue_line("markers", "node_timeout(seconds): soft time limit of one test")
    config.addinivalue_line("markers", "allow_thread_growth: skip the thread-leak check")
    config.addinivalue_line(
        "markers", "deployment: a server deployment (TLS, Sentinel, replicas, DNS in a network "
        "namespace) whose logic is all in the C core; .ci/run runs these once, on the default "
        "Python, and the other Pythons with -m 'not deployment'")


def pytest_report_header(config):
    if _redlease is None:
        return f"redlease: NOT importable ({_REDLEASE_IMPORT_ERROR})"
    return (f"redlease {getattr(_redlease, '__version__', '?')} from "
            f"{getattr(_redlease, '__file__', '?')}, hiredis "
            f"{getattr(_redlease, 'hiredis_version', '?')}")


# ---------------------------------------------------------------------------
# time limits
# ---------------------------------------------------------------------------
class TestTimeLimit(Exception):
    """Raised in the main thread when a test exceeds its soft time limit."""

    __test__ = False


class _Watchdog:
    def __init__(self):
        self.deadline = None
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._run, name="test-watchdog", daemon=True)
        self.thread.start()

    def arm(self, seconds, name):
        with self.cond:
            self.deadline = (time.monotonic() + seconds, name)
            self.cond.notify_all()

    def disarm(self):
        with self.cond:
            self.deadline = None
            self.cond.notify_all()

    def _run(self):
        while True:
            with self.cond:
                if self.deadline is None:
                    self.cond.wait(5)
                    continue
                when, name = self.deadline
                left = when - time.monotonic()
                if left > 0:
                    self.cond.wait(min(left, 5))
                    continue
            sys.stderr.write(f"\n*** test {name} hung past its hard limit; "
                             f"killing children and exiting ***\n")
            faulthandler.dump_traceback(all_threads=True)
            procs.kill_all_registered()
            os._exit(70)


_watchdog = None


@pytest.fixture(autouse=True)
def _time_limit(request):
    global _watchdog
    marker = request.node.get_closest_marker("node_timeout")
    limit = float(marker.args[0]) if marker else DEFAULT_TEST_LIMIT
    if _watchdog is None:
        _watchdog = _Watchdog()
    _watchdog.arm(limit + HARD_EXTRA, request.node.nodeid)
    in_main = threading.current_thread() is threading.main_thread()
    old = None
    if in_main:
        def on_alarm(signum, frame):
            raise TestTimeLimit(f"test exceeded its {limit:.0f}s limit")
        old = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        yield
    finally:
        if in_main:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
        _watchdog.disarm()


def pytest_sessionfinish(session, exitstatus):
    if _watchdog is not None:
        _watchdog.disarm()
    procs.kill_all_registered()


EXIT_GRACE = 60.0


def pytest_unconfigure(config):
    """Guard the interpreter exit: a library that hangs in its atexit/thread
    shutdown must not hang the whole run.  Exit code 71 flags it."""
    def guard():
        time.sleep(EXIT_GRACE)
        sys.stderr.write(f"\n*** interpreter exit hung for {EXIT_GRACE:.0f}s after the test run "
                         f"(atexit handlers or non-daemon threads); forcing exit 71 ***\n")
        faulthandler.dump_traceback(all_threads=True)
        procs.kill_all_registered()
        os._exit(71)

    threading.Thread(target=guard, name="test-exit-guard", daemon=True).start()


# ---------------------------------------------------------------------------
# thread-leak check
# ---------------------------------------------------------------------------
def os_thread_count() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return 0


_session_threads = {}

# The library may keep an engine thread and a dispatcher thread alive between
# nodes; nothing beyond that may accumulate.
ALLOWED_EXTRA_PY_THREADS = 2
ALLOWED_EXTRA_OS_THREADS = 6


@pytest.fixture(autouse=True)
def _no_thread_leak(request):
    if not _session_threads:
        _session_threads["py"] = threading.active_count()
        _session_threads["os"] = os_thread_count()
    yield
    if request.node.get_closest_marker("allow_thread_growth"):
        return
    gc.collect()
    py_limit = _session_threads["py"] + ALLOWED_EXTRA_PY_THREADS
    os_limit = _session_threads["os"] + ALLOWED_EXTRA_OS_THREADS
    try:
        wait_until(lambda: threading.active_count() <= py_limit
                   and os_thread_count() <= os_limit, timeout=10, interval=0.05)
    except AssertionError:
        names = sorted(t.name for t in threading.enumerate())
        pytest.fail(f"threads leaked: python {threading.active_count()} (limit {py_limit}) "
                    f"{names}; OS threads {os_thread_count()} (limit {os_limit})")


# ---------------------------------------------------------------------------
# the package under test
# ---------------------------------------------------------------------------
@pytest.fixture
def rl():
    """The ``redlease`` module; fails (not skips) with the import error when missing."""
    if _redlease is None:
        pytest.fail(f"cannot import redlease: {_REDLEASE_IMPORT_ERROR}", pytrace=False)
    return _redlease


def get_redlease():
    """For module-level use (e.g. in helpers); None when not importable."""
    return _redlease


@pytest.fixture
def key(request):
    """A key unique to this test."""
    return f"redlease-test:{request.node.name}"


# ---------------------------------------------------------------------------
# redis servers, proxies
# ---------------------------------------------------------------------------
@pytest.fixture
def redis_factory():
    """``make(password=None, unix_socket=True, extra_args=())`` -> started RedisServer.

    Every server is SIGKILLed (after SIGCONT) and its directory removed at teardown.
    """
    if not os.path.exists(REDIS_SERVER):
        pytest.skip(f"redis-server not found at {REDIS_SERVER}")
    servers = []

    def make(**kwargs) -> RedisServer:
        srv = RedisServer(**kwargs)
        servers.append(srv)
        return srv.start()

    yield make
    for srv in servers:
        srv.cleanup()


@pytest.fixture
def redis_server(redis_factory) -> RedisServer:
    """A fresh redis-server (TCP on 127.0.0.1 + unix socket), no password."""
    return redis_factory()


@pytest.fixture
def proxy_factory():
    """``make(target_port)`` -> TcpProxy on a free loopback port; stopped at teardown."""
    proxies = []

    def make(target_port: int) -> TcpProxy:
        p = TcpProxy(target_port)
        proxies.append(p)
        return p

    yield make
    for p in proxies:
        p.stop()


# ---------------------------------------------------------------------------
# in-process nodes
# ---------------------------------------------------------------------------
@pytest.fixture
def make_node(rl, redis_factory, proxy_factory, key):
    """``make_node(url, key=<test key>, **kwargs)`` -> DistributionNode.

    Nodes are stopped at teardown (bounded: a stop() that hangs fails the
    test).  Depends on the server/proxy factories so nodes stop before the
    servers and proxies go away.
    """
    nodes = []

    def make(url, node_key=None, **kwargs):
        node = rl.DistributionNode(url, key if node_key is None else node_key, **kwargs)
        nodes.append(node)
        return node

    yield make
    hung = []
    for node in nodes:
        outcome, _ = run_bounded(node.stop, 30)
        if outcome == "hung":
            hung.append(repr(node))
    nodes.clear()
    if hung:
        pytest.fail(f"node.stop() hung at teardown: {hung}")


# ---------------------------------------------------------------------------
# worker processes
# ---------------------------------------------------------------------------
@pytest.fixture
def spawn_worker(rl, key):
    """``spawn_worker(url, key=<test key>, ttl=1.0, **cfg)`` -> Worker (node_worker.py).

    ``key`` may be bytes (sent as hex).  All workers are SIGKILLed at teardown.
    """
    workers = []

    def spawn(url, node_key=None, ttl=1.0, name=None, **cfg):
        k = key if node_key is None else node_key
        conf = {"url": url, "ttl": ttl, **cfg}
        if isinstance(k, bytes):
            conf["key_hex"] = k.hex()
        else:
            conf["key"] = k
        w = Worker(conf, name=name or f"worker{len(workers)}")
        workers.append(w)
        return w

    yield spawn
    for w in workers:
        w.kill()


@pytest.fixture
def run_script(tmp_path):
    """``run_script(source, *args, timeout=30)`` -> started Popen of a Python script.

    The child runs with this interpreter; it is killed at teardown.
    """
    import subprocess
    started = []

    def run(source: str, *args, env=None):
        path = tmp_path / f"script{len(started)}.py"
        path.write_text(source)
        p = procs.spawn([sys.executable, "-u", str(path), *map(str, args)],
                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, env=env)
        started.append(p)
        return p

    yield run
    for p in started:
        procs.kill(p)
        for f in (p.stdout, p.stderr):
            try:
                f.close()
            except (OSError, ValueError):
                pass
