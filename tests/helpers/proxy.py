"""A loopback TCP proxy (one thread) used to inject network faults.

Modes:
  * ``"pass"``      forward bytes both ways;
  * ``"blackhole"`` keep every connection open but silently drop all bytes in
                    both directions; new connections are accepted and then
                    ignored (a network partition as seen from the client: its
                    writes succeed, no reply ever comes);
  * ``"refuse"``    new connections are closed right after accept.

``close_all()`` resets every current connection (RST), like a server or
middlebox dropping them.  ``stall_existing()`` holds back what the current
connections send (new ones pass); when the client gives up and closes, the
held bytes stay queued towards Redis like a kernel still retransmitting them,
until ``release_stalled()`` delivers them (and drops the replies).  ``heal()`` goes back to ``"pass"`` and, by default,
resets the connections that lived through the partition.
"""
from __future__ import annotations

import selectors
import socket
import struct
import threading


def _rst_close(sock: socket.socket):
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class _Pair:
    __slots__ = ("client", "upstream", "stalled", "held")

    def __init__(self, client, upstream):
        self.client = client
        self.upstream = upstream  # None for a connection accepted while blackholed
        self.stalled = False      # client -> upstream bytes are held back
        self.held = bytearray()


class TcpProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1"):
        self.target = (target_host, target_port)
        self.mode = "pass"
        self._lock = threading.Lock()
        self._pairs: list[_Pair] = []
        self._sel = selectors.DefaultSelector()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.setblocking(False)
        self.port = self._listener.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._sel.register(self._listener, selectors.EVENT_READ, ("accept", None))
        self._sel.register(self._wake_r, selectors.EVENT_READ, ("wake", None))
        self._stop = False
        self._pending: list = []  # callables run on the proxy thread
        self.connections_accepted = 0
        self.bytes_forwarded = 0
        self._thread = threading.Thread(target=self._run, name="test-tcp-proxy", daemon=True)
        self._thread.start()

    # -- public API (thread safe; each call completes before it returns) --
    def _call(self, fn):
        done = threading.Event()

        def job():
            try:
                fn()
            finally:
                done.set()
        with self._lock:
            self._pending.append(job)
        self._wake_w.send(b"x")
        if not done.wait(10):
            raise RuntimeError("proxy thread did not respond")

    def set_mode(self, mode: str):
        assert mode in ("pass", "blackhole", "refuse"), mode

        def job():
            self.mode = mode
        self._call(job)

    def blackhole(self):
        self.set_mode("blackhole")

    def heal(self, close_existing: bool = True):
        def job():
            if close_existing:
                self._close_all_now()
            self.mode = "pass"
        self._call(job)

    def close_all(self):
        self._call(self._close_all_now)

    def stall_existing(self):
        """Hold back every byte the current connections send from now on."""
        def job():
            for pair in self._pairs:
                pair.stalled = True
        self._call(job)

    def stalled_bytes(self) -> int:
        return sum(len(p.held) for p in list(self._pairs) if p.stalled)

    def release_stalled(self):
        """Deliver the held bytes to Redis (the stale commands land now);
        their replies are dropped.  Returns how many bytes were delivered."""
        out = []

        def job():
            n = 0
            for pair in list(self._pairs):
                if not pair.stalled:
                    continue
                if pair.upstream is not None and pair.held:
                    try:
                        pair.upstream.sendall(bytes(pair.held))
                        n += len(pair.held)
                    except OSError:
                        pass
                pair.held.clear()
                pair.stalled = False
                if pair.client is None:      # the client gave up: only replies left
                    pass
            out.append(n)
        self._call(job)
        return out[0]

    def connection_count(self) -> int:
        return len(self._pairs)

    def url(self, db=None) -> str:
        return f"redis://127.0.0.1:{self.port}" + ("" if db is None else f"/{db}")

    def stop(self):
        if self._stop:
            return
        self._stop = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        self._thread.join(10)
        for s in (self._wake_r, self._wake_w, self._listener):
            try:
                s.close()
            except OSError:
                pass

    # -- proxy thread ------------------------------------------------------
    def _close_pair(self, pair: _Pair, rst: bool = True):
        for s in (pair.client, pair.upstream):
            if s is None:
                continue
            try:
                self._sel.unregister(s)
            except (KeyError, ValueError):
                pass
            if rst:
                _rst_close(s)
            else:
                s.close()
        if pair in self._pairs:
            self._pairs.remove(pair)

    def _close_all_now(self):
        for pair in list(self._pairs):
            self._close_pair(pair)

    def _accept(self):
        try:
            client, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        self.connections_accepted += 1
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.mode == "refuse":
            _rst_close(client)
            return
        upstream = None
        if self.mode == "pass":
            try:
                upstream = socket.create_connection(self.target, timeout=2.0)
                upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                upstream.settimeout(2.0)
            except OSError:
                _rst_close(client)
                return
        client.settimeout(2.0)
        pair = _Pair(client, upstream)
        self._pairs.append(pair)
        self._sel.register(client, selectors.EVENT_READ, ("client", pair))
        if upstream is not None:
            self._sel.register(upstream, selectors.EVENT_READ, ("upstream", pair))

    def _forward(self, role: str, pair: _Pair):
        src = pair.client if role == "client" else pair.upstream
        dst = pair.upstream if role == "client" else pair.client
        try:
            data = src.recv(65536)
        except OSError:
            data = b""
        if not data and role == "client" and pair.stalled:
            # The client gave up; its unsent bytes stay on their way.
            try:
                self._sel.unregister(pair.client)
            except (KeyError, ValueError):
                pass
            pair.client.close()
            pair.client = None
            return
        if not data:
            self._close_pair(pair, rst=False)
            return
        if role == "client" and pair.stalled:
            pair.held += data
            return
        if self.mode == "blackhole" or dst is None:
            return  # dropped on the floor
        try:
            dst.sendall(data)
            self.bytes_forwarded += len(data)
        except OSError:
            self._close_pair(pair)

    def _run(self):
        try:
            while not self._stop:
                with self._lock:
                    jobs, self._pending = self._pending, []
                for job in jobs:
                    job()
                for key, _ in self._sel.select(0.05):
                    role, pair = key.data
                    if role == "accept":
                        self._accept()
                    elif role == "wake":
                        try:
                            self._wake_r.recv(4096)
                        except OSError:
                            pass
                    elif pair in self._pairs:
                        self._forward(role, pair)
        finally:
            self._close_all_now()
            with self._lock:
                jobs, self._pending = self._pending, []
            for job in jobs:
                job()
            self._sel.close()
