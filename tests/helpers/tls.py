"""Certificates made with the ``openssl`` command line, and redis-server
processes that speak TLS, for the rediss:// tests."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time

from . import procs
from .redis_server import RedisServer, free_port

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"


def _run(*args, cwd):
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)


class Certs:
    """In a temp dir: ``ca.pem`` (the CA), ``server.pem``/``server.key``
    (SAN DNS:localhost, IP:127.0.0.1), ``other.pem``/``other.key`` (signed by
    the same CA, for DNS:other.test only), ``client.pem``/``client.key``,
    ``ca2.pem`` (an unrelated CA) and ``ca2-client.pem``/``.key`` (a client
    certificate from the unrelated CA).  ``path(name)`` gives the full path."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="rltls-", dir="/tmp")
        d = self.dir
        for ca in ("ca", "ca2"):
            _run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                 "-subj", "/CN=redlease test %s" % ca, "-keyout", ca + ".key", "-out", ca + ".pem",
                 cwd=d)
        self._leaf("server", "ca", "localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1")
        self._leaf("other", "ca", "other.test", "subjectAltName=DNS:other.test")
        self._leaf("client", "ca", "redlease client", None)
        self._leaf("ca2-client", "ca2", "stranger", None)

    def _leaf(self, name, ca, cn, ext):
        d = self.dir
        _run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=" + cn,
             "-keyout", name + ".key", "-out", name + ".csr", cwd=d)
        args = ["x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
                "-CAcreateserial", "-days", "2", "-out", name + ".pem"]
        if ext:
            with open(os.path.join(d, name + ".ext"), "w") as f:
                f.write(ext + "\n")
            args += ["-extfile", name + ".ext"]
        _run(*args, cwd=d)

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


class TLSRedisServer(RedisServer):
    """redis-server with a plain port (``port``, for seeding and for the
    plain-port cases) and a TLS port (``tls_port``)."""

    def __init__(self, certs: Certs, auth_clients: str = "no", cert: str = "server"):
        self.certs = certs
        self.tls_port = None
        self.auth_clients = auth_clients
        self.cert = cert
        super().__init__(unix_socket=False)

    def _argv(self):
        c = self.certs
        return super()._argv() + [
            "--tls-port", str(self.tls_port),
            "--tls-cert-file", c.path(self.cert + ".pem"),
            "--tls-key-file", c.path(self.cert + ".key"),
            "--tls-ca-cert-file", c.path("ca.pem"),
            "--tls-auth-clients", self.auth_clients,
        ]

    def start(self, timeout: float = 10.0, seed_marker: bool = True):
        for _ in range(5):
            self.tls_port = free_port()
            try:
                super().start(timeout, seed_marker=seed_marker)
            except RuntimeError:
                continue
            if self._tls_ready(timeout):
                return self
            self.kill()
        raise RuntimeError("TLS redis-server did not start:\n" + self.log_tail())

    def _tls_ready(self, timeout):
        c = self.certs
        argv = [REDIS_CLI, "--tls", "--cacert", c.path("ca.pem"), "-h", "127.0.0.1",
                "-p", str(self.tls_port)]
        if self.auth_clients != "no":
            argv += ["--cert", c.path("client.pem"), "--key", c.path("client.key")]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            p = subprocess.run(argv + ["ping"], capture_output=True, text=True, timeout=10,
                               stdin=subprocess.DEVNULL)
            if p.stdout.strip() == "PONG":
                return True
            if self.proc is None or self.proc.poll() is not None:
                return False
            time.sleep(0.05)
        return False

    def tls_url(self, host: str = "127.0.0.1", db: int | None = 0, **params) -> str:
        tail = "" if db is None else "/%d" % db
        url = "rediss://%s:%d%s" % (host, self.tls_port, tail)
        if params:
            url += "?" + "&".join("%s=%s" % kv for kv in params.items())
        return url


__all__ = ["Certs", "TLSRedisServer", "procs"]
