"""Redis helpers of ``redlease demo``: a throwaway redis-server and a tiny
RESP client, so the demo can look at the key independently of the package
it demonstrates."""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse

from ._resp import RedisReplyError, RespConn  # noqa: F401 - RedisReplyError is used by the demo


class DemoError(Exception):
    """The demo cannot go on; the message says why."""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent():
    """preexec_fn: have the kernel kill the child if this process dies."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort
        pass


class ThrowawayRedis:
    """A redis-server on a free loopback port: no persistence, its own temp
    dir, its own session (Ctrl-C does not reach it; it is stopped last) and
    killed by the kernel if the demo dies."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="redlease-demo-")
        self.proc = None
        self.port = None

    def start(self):
        exe = shutil.which("redis-server")
        if not exe:
            self.close()
            raise DemoError("redis-server not found: apt-get install redis-server "
                            "(or run bash scripts/demo.sh), or pass --url redis://...")
        for _ in range(5):
            self.port = free_port()
            self.proc = subprocess.Popen(
                [exe, "--port", str(self.port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--dir", self.dir,
                 "--logfile", os.path.join(self.dir, "redis.log")],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                start_new_session=True, preexec_fn=_die_with_parent)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    with MiniRedis(self.url, timeout=0.2) as r:
                        if r.call("PING") == "PONG":
                            # A brand-new server nobody else knows: no earlier
                            # holder can exist, so its data-loss marker may be
                            # old at once (else the first election waits a ttl).
                            run_id = r.call("INFO", "server").split("run_id:", 1)[1].split()[0]
                            r.call("SET", "redlease:marker", "0:" + run_id)
                            return self
                except OSError:
                    time.sleep(0.02)
            self.stop()  # lost a port race or too slow: try another port
        log = os.path.join(self.dir, "redis.log")
        tail = ""
        try:
            with open(log) as f:
                tail = "".join(f.readlines()[-5:])
        except OSError:
            pass
        self.close()
        raise DemoError("could not start redis-server:\n%s" % tail)

    @property
    def url(self):
        return "redis://127.0.0.1:%d/0" % self.port

    def stop(self):
        p, self.proc = self.proc, None
        if p is not None and p.poll() is None:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class MiniRedis(RespConn):
    """Just enough RESP to PING, read a key's PTTL and clean up (bulk
    strings decoded to str)."""

    def __init__(self, url, timeout=2.0):
        if urllib.parse.urlsplit(url).scheme not in ("redis", "rediss", "unix"):
            raise DemoError("the demo supports redis://, rediss:// and unix:// URLs, not %s://"
                            % urllib.parse.urlsplit(url).scheme)
        super().__init__(url, timeout)

    def call(self, *args):
        r = super().call(*args)
        if isinstance(r, bytes):
            return r.decode(errors="replace")
        if isinstance(r, list):
            return [x.decode(errors="replace") if isinstance(x, bytes) else x for x in r]
        return r
