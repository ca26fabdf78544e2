"""A small blocking RESP client for the CLI's own few commands (the library
itself has no way to send arbitrary commands): redis://, rediss:// and
unix:// URLs with user, password and db, as the engine reads them."""
import socket
import ssl
from urllib.parse import parse_qs, unquote, urlsplit


class RedisReplyError(Exception):
    """The server answered with an error reply."""


def _tls_context(q):
    """An ssl context from the URL's ssl_* parameters (the engine validated them)."""
    last = {k: v[-1] for k, v in q.items()}
    reqs = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL,
            "required": ssl.CERT_REQUIRED}[last.get("ssl_cert_reqs", "required").lower()]
    ctx = ssl.create_default_context(cafile=last.get("ssl_ca_certs"), capath=last.get("ssl_ca_path"))
    check = last.get("ssl_check_hostname")
    ctx.check_hostname = (reqs == ssl.CERT_REQUIRED if check is None
                          else check.lower() in ("1", "true", "yes")) and reqs != ssl.CERT_NONE
    ctx.verify_mode = reqs
    if last.get("ssl_certfile"):
        ctx.load_cert_chain(last["ssl_certfile"], last.get("ssl_keyfile"))
    return ctx


class RespConn:
    def __init__(self, url, timeout):
        u = urlsplit(url)
        q = parse_qs(u.query)
        scheme = u.scheme.lower()
        user = unquote(u.username) if u.username else None
        password = unquote(u.password) if u.password is not None else None
        if "password" in q:
            password = q["password"][-1]
        if "username" in q:
            user = q["username"][-1]
        db = 0
        if scheme == "unix":
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(unquote(u.path))
        elif scheme in ("redis", "rediss"):
            host = u.hostname or "127.0.0.1"
            port = u.port or 6379
            path = u.path.strip("/")
            if path:
                db = int(path)
            self.sock = socket.create_connection((host, port), timeout)
            if scheme == "rediss":
                self.sock = _tls_context(q).wrap_socket(self.sock, server_hostname=host)
        else:
            raise ValueError("unsupported URL scheme %r" % scheme)
        if "db" in q:
            db = int(q["db"][-1])
        self.buf = b""
        if password is not None:
            self.call(*(["AUTH", user, password] if user else ["AUTH", password]))
        if db:
            self.call("SELECT", str(db))

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def call(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            b = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(b), b))
        self.sock.sendall(b"".join(out))
        return self._reply()

    def _line(self):
        while b"\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("connection closed by the server")
            self.buf += data
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisReplyError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                data = self.sock.recv(65536)
                if not data:
                    raise ConnectionError("connection closed by the server")
                self.buf += data
            val, self.buf = self.buf[:n], self.buf[n + 2:]
            return val
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise ConnectionError("unexpected reply from the server: %r" % line[:40])

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
