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
                            r.call("SET", "redlease:marker", "0")
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


class RedisReplyError(Exception):
    pass


class MiniRedis:
    """Just enough RESP to PING, read a key's PTTL and clean up."""

    def __init__(self, url, timeout=2.0):
        u = urllib.parse.urlsplit(url)
        q = urllib.parse.parse_qs(u.query)
        if u.scheme == "redis":
            self.sock = socket.create_connection((u.hostname or "127.0.0.1", u.port or 6379),
                                                 timeout=timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        elif u.scheme == "unix":
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.settimeout(timeout)
            self.sock.connect(urllib.parse.unquote(u.path))
        else:
            raise DemoError("the demo supports redis:// and unix:// URLs, not %s://"
                            % u.scheme)
        self.buf = self.sock.makefile("rb")
        user = urllib.parse.unquote(u.username) if u.username else None
        password = urllib.parse.unquote(u.password) if u.password else None
        password = q.get("password", [password])[0]
        user = q.get("username", [user])[0]
        if password:
            self.call(*(("AUTH", user, password) if user else ("AUTH", password)))
        db = q.get("db", [(u.path.lstrip("/") if u.scheme != "unix" else "") or "0"])[0]
        if db != "0":
            self.call("SELECT", db)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        for closer in (self.buf.close, self.sock.close):
            try:
                closer()
            except OSError:
                pass

    def call(self, *args):
        parts = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(parts))
        return self._read()

    def _read(self):
        line = self.buf.readline()
        if not line:
            raise ConnectionError("connection closed by redis")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisReplyError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self.buf.read(n + 2)[:-2].decode(errors="replace")
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise ConnectionError("bad reply from redis: %r" % line)
