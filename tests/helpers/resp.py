"""A tiny, binary-safe RESP2 client used by the tests to look at Redis directly.

It is deliberately independent from redlease (and from redis-py, which may
not be installed).  One blocking socket, one command at a time.
"""
from __future__ import annotations

import socket


class RespError(Exception):
    """An error reply from the server (e.g. ``WRONGTYPE ...``)."""


def _enc(arg) -> bytes:
    if isinstance(arg, bytes):
        return arg
    if isinstance(arg, str):
        return arg.encode()
    if isinstance(arg, (int, float)):
        return str(arg).encode()
    raise TypeError(f"cannot send {type(arg).__name__}")


class RespClient:
    def __init__(self, host="127.0.0.1", port=None, unix_path=None, timeout=5.0,
                 password=None, username=None):
        if unix_path is not None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(unix_path)
        else:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        if password is not None:
            if username is not None:
                self.execute("AUTH", username, password)
            else:
                self.execute("AUTH", password)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed by server")
        self.buf += chunk

    def _line(self) -> bytes:
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line, self.buf = self.buf[:i], self.buf[i + 2:]
                return line
            self._fill()

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n + 2:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def _reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RespError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise ConnectionError(f"bad RESP reply: {line[:80]!r}")

    def execute(self, *args):
        """Send one command; return the reply, raise RespError on an error reply."""
        parts = [b"*%d\r\n" % len(args)]
        for a in args:
            b = _enc(a)
            parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
        self.sock.sendall(b"".join(parts))
        reply = self._reply()
        if isinstance(reply, RespError):
            raise reply
        return reply

    __call__ = execute
