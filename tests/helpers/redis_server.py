"""Real redis-server processes on free loopback ports, for fault injection."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse

from . import procs
from .resp import RespClient, RespError

REDIS_SERVER = os.environ.get("REDIS_SERVER", shutil.which("redis-server") or "/usr/bin/redis-server")


def free_port() -> int:
    """A loopback TCP port that is free right now (small race accepted)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """One redis-server child process.

    ``restart()`` brings it back on the same port with empty data (no RDB, no
    AOF).  ``pause()``/``resume()`` send SIGSTOP/SIGCONT.  ``cleanup()`` kills it
    and removes its directory; it is safe to call several times.
    """

    def __init__(self, password: str | None = None, unix_socket: bool = True,
                 extra_args=(), port: int | None = None):
        self.password = password
        self.extra_args = list(extra_args)
        self.dir = tempfile.mkdtemp(prefix="rlrs-", dir="/tmp")
        self.unix_path = os.path.join(self.dir, "r.sock") if unix_socket else None
        self.port = port
        self.proc: subprocess.Popen | None = None
        self._fixed_port = port is not None
        self.paused = False

    # -- process control -------------------------------------------------
    def _argv(self):
        argv = [REDIS_SERVER,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--daemonize", "no",
                "--dir", self.dir,
                "--dbfilename", "never-written.rdb",
                "--logfile", os.path.join(self.dir, "redis.log")]
        if self.unix_path:
            argv += ["--unixsocket", self.unix_path, "--unixsocketperm", "700"]
        if self.password is not None:
            argv += ["--requirepass", self.password]
        return argv + self.extra_args

    def start(self, timeout: float = 10.0, seed_marker: bool = True) -> "RedisServer":
        """Start the server.  ``seed_marker``: give every database an old
        ``redlease:marker``, as a database in service for longer than a ttl
        has (without it, the first grant on each database waits one ttl:
        redlease cannot tell a new database from one that lost its data)."""
        last_log = ""
        for attempt in range(5):
            if not self._fixed_port and (self.port is None or attempt > 0):
                self.port = free_port()
            self.proc = procs.spawn(self._argv(), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if self._wait_ready(timeout):
                self.paused = False
                if seed_marker:
                    self.seed_markers()
                return self
            last_log = self.log_tail()
            procs.kill(self.proc)
            self.proc = None
            # Same port (restart): the old socket may linger briefly; retry.
            time.sleep(0.2)
        raise RuntimeError(f"redis-server did not start on port {self.port}:\n{last_log}")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with self.client(timeout=1.0) as c:
                    if c.execute("PING") == "PONG":
                        return True
            except (OSError, ConnectionError, RespError):
                pass
            time.sleep(0.02)
        return False

    def kill(self):
        """SIGKILL the server (data lost: it never persists anything)."""
        if self.proc is not None:
            procs.kill(self.proc)
            self.proc = None
        self.paused = False

    def seed_markers(self, databases: int = 16):
        """Mark every database as in service since long ago by this server
        process (marker "0:<run_id>")."""
        with self.client() as c:
            info = c.execute("INFO", "server")
            info = info.decode() if isinstance(info, bytes) else info
            run_id = info.split("run_id:", 1)[1].split()[0]
            for db in range(databases):
                c.execute("SELECT", str(db))
                c.execute("SET", "redlease:marker", "0:" + run_id)

    def restart(self, timeout: float = 10.0, seed_marker: bool = False):
        """Kill and start again on the same port with empty data: like a
        real restart without persistence, no marker (the first grant on each
        database waits one ttl) unless ``seed_marker``."""
        self.kill()
        for name in os.listdir(self.dir):
            p = os.path.join(self.dir, name)
            if name != "redis.log" and os.path.isfile(p):
                os.unlink(p)
        self._fixed_port = True
        return self.start(timeout, seed_marker=seed_marker)

    def pause(self):
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self):
        os.kill(self.proc.pid, signal.SIGCONT)
        self.paused = False

    def cleanup(self):
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, n: int = 4000) -> str:
        try:
            with open(os.path.join(self.dir, "redis.log"), "rb") as f:
                return f.read()[-n:].decode(errors="replace")
        except OSError:
            return ""

    # -- access ----------------------------------------------------------
    def client(self, timeout: float = 5.0) -> RespClient:
        return RespClient("127.0.0.1", self.port, timeout=timeout, password=self.password)

    def cmd(self, *args):
        """Run one command on a fresh connection (binary safe)."""
        with self.client() as c:
            return c.execute(*args)

    def url(self, db: int | str | None = None, password: str | None = None,
            user: str | None = None, host: str = "127.0.0.1") -> str:
        """``redis://[[user]:password@]host:port[/db]``; by default the server's own password."""
        if password is None:
            password = self.password
        auth = ""
        if password is not None:
            auth = (urllib.parse.quote(user, safe="") if user else "") + ":" + \
                urllib.parse.quote(password, safe="") + "@"
        elif user is not None:
            auth = urllib.parse.quote(user, safe="") + "@"
        tail = "" if db is None else f"/{db}"
        return f"redis://{auth}{host}:{self.port}{tail}"

    def unix_url(self, db: int | None = None) -> str:
        assert self.unix_path, "server started without a unix socket"
        q = "" if db is None else f"?db={db}"
        return f"unix://{self.unix_path}{q}"
