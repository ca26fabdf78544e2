"""A real Sentinel deployment on loopback: one master, replicas, sentinels.

    with SentinelSetup(replicas=2, sentinels=3) as s:
        url = s.url(db=0)               # redis+sentinel://127.0.0.1:P1,.../mymaster/0
        s.failover()                    # SENTINEL FAILOVER, waits for the switch
        s.master                        # the RedisServer that is master now

Every process is a ``redis-server`` (sentinels with ``--sentinel``); the
sentinel config files live in their own temp directories (sentinels rewrite
them).  ``cleanup()`` kills everything, also after a failed start.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time

from . import procs
from .redis_server import REDIS_SERVER, RedisServer, free_port
from .resp import RespClient, RespError

SERVICE = "mymaster"


def _text(v):
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, list):
        return [_text(x) for x in v]
    return v


class Sentinel:
    """One ``redis-server --sentinel`` process."""

    def __init__(self, master_port: int, quorum: int, down_after_ms: int,
                 failover_timeout_ms: int, service: str = SERVICE):
        self.dir = tempfile.mkdtemp(prefix="rlsn-", dir="/tmp")
        self.conf = os.path.join(self.dir, "sentinel.conf")
        self.port = free_port()
        self.proc = None
        with open(self.conf, "w") as f:
            f.write(f"port {self.port}\n"
                    "bind 127.0.0.1\n"
                    f"dir {self.dir}\n"
                    f"logfile {os.path.join(self.dir, 'sentinel.log')}\n"
                    "sentinel resolve-hostnames no\n"
                    f"sentinel monitor {service} 127.0.0.1 {master_port} {quorum}\n"
                    f"sentinel down-after-milliseconds {service} {down_after_ms}\n"
                    f"sentinel failover-timeout {service} {failover_timeout_ms}\n"
                    f"sentinel parallel-syncs {service} 2\n")

    def start(self):
        self.proc = procs.spawn([REDIS_SERVER, self.conf, "--sentinel"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        return self

    def cmd(self, *args, timeout: float = 3.0):
        with RespClient("127.0.0.1", self.port, timeout=timeout) as c:
            return _text(c.execute(*args))

    def kill(self):
        if self.proc is not None:
            procs.kill(self.proc)
            self.proc = None

    def cleanup(self):
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, n: int = 3000) -> str:
        try:
            with open(os.path.join(self.dir, "sentinel.log"), "rb") as f:
                return f.read()[-n:].decode(errors="replace")
        except OSError:
            return ""


def role(server: RedisServer) -> str:
    try:
        return _text(server.cmd("ROLE"))[0]
    except (OSError, ConnectionError, RespError):
        return "down"


class SentinelSetup:
    def __init__(self, replicas: int = 2, sentinels: int = 3, down_after_ms: int = 1000,
                 failover_timeout_ms: int = 3000, service: str = SERVICE):
        self.service = service
        self.servers: list[RedisServer] = []
        self.sentinels: list[Sentinel] = []
        self.n_replicas = replicas
        self.n_sentinels = sentinels
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms

    # -- set-up --------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> "SentinelSetup":
        try:
            # A replica that may be promoted must accept writes afterwards and
            # the demoted master must follow whoever sentinel names.
            common = ["--replica-read-only", "yes"]
            master = RedisServer(unix_socket=False, extra_args=common).start()
            self.servers.append(master)
            for _ in range(self.n_replicas):
                r = RedisServer(unix_socket=False, extra_args=common + [
                    "--replicaof", "127.0.0.1", str(master.port)])
                self.servers.append(r.start(seed_marker=False))
            deadline = time.monotonic() + timeout
            for r in self.servers[1:]:
                self._wait(lambda: "master_link_status:up" in _text(r.cmd("INFO", "replication")),
                           deadline, "replica to sync")
            quorum = self.n_sentinels // 2 + 1
            for _ in range(self.n_sentinels):
                self.sentinels.append(Sentinel(master.port, quorum, self.down_after_ms,
                                               self.failover_timeout_ms, self.service).start())
            self.wait_healthy(deadline)
            return self
        except BaseException:
            self.cleanup()
            raise

    def _wait(self, cond, deadline: float, what: str):
        last = None
        while time.monotonic() < deadline:
            try:
                if cond():
                    return
            except (OSError, ConnectionError, RespError) as e:
                last = e
            time.sleep(0.05)
        logs = "\n".join(s.log_tail(800) for s in self.sentinels)
        raise RuntimeError(f"sentinel set-up: timed out waiting for {what} ({last!r})\n{logs}")

    def _master_info(self, s: Sentinel) -> dict:
        flat = s.cmd("SENTINEL", "MASTER", self.service)
        return dict(zip(flat[0::2], flat[1::2]))

    def wait_healthy(self, deadline: float | None = None, replicas: int | None = None):
        """Every live sentinel names the same master, knows the replicas and
        the other sentinels."""
        if deadline is None:
            deadline = time.monotonic() + 30.0
        want_replicas = self.n_replicas if replicas is None else replicas
        live = [s for s in self.sentinels if s.proc is not None]

        def ok():
            addrs = {tuple(s.cmd("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)) for s in live}
            if len(addrs) != 1:
                return False
            for s in live:
                info = self._master_info(s)
                if "s_down" in info.get("flags", "") or "o_down" in info.get("flags", ""):
                    return False
                if int(info["num-slaves"]) < want_replicas:
                    return False
                if int(info["num-other-sentinels"]) < len(live) - 1:
                    return False
            return role(self.master) == "master"
        self._wait(ok, deadline, "sentinels to agree")

    # -- state ---------------------------------------------------------------
    def master_port(self) -> int:
        for s in self.sentinels:
            if s.proc is None:
                continue
            try:
                return int(s.cmd("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)[1])
            except (OSError, ConnectionError, RespError):
                continue
        raise RuntimeError("no sentinel answers")

    @property
    def master(self) -> RedisServer:
        port = self.master_port()
        for s in self.servers:
            if s.port == port:
                return s
        raise RuntimeError(f"sentinels name an unknown master port {port}")

    def url(self, db: int | None = 0, scheme: str = "redis+sentinel", query: str = "") -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        tail = "" if db is None else f"/{db}"
        q = f"?{query}" if query else ""
        return f"{scheme}://{hosts}/{self.service}{tail}{q}"

    # -- faults --------------------------------------------------------------
    def failover(self, timeout: float = 30.0) -> RedisServer:
        """SENTINEL FAILOVER; returns the new master once every sentinel names
        it and it answers ROLE as master."""
        old = self.master_port()
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sentinels[0].cmd("SENTINEL", "FAILOVER", self.service)
                break
            except RespError as e:           # NOGOODSLAVE while replicas sync: retry
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        return self.wait_switch(old, deadline)

    def wait_switch(self, old_port: int, deadline: float) -> RedisServer:
        live = [s for s in self.sentinels if s.proc is not None]

        def switched():
            ports = {int(s.cmd("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)[1]) for s in live}
            return len(ports) == 1 and old_port not in ports and role(self.master) == "master"
        self._wait(switched, deadline, "the master to switch")
        return self.master

    def cleanup(self):
        for s in self.sentinels:
            s.cleanup()
        for r in self.servers:
            r.cleanup()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()
