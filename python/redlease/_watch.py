"""Watch a key's holder without campaigning, and read a key's status."""
from . import _dispatch
from . import _redlease as _c

_CAUSES = {
    _c.WATCH_INITIAL: "initial",
    _c.WATCH_ELECTED: "elected",
    _c.WATCH_RELEASED: "released",
    _c.WATCH_EXPIRED: "expired",
}


class Watch(_c.LeaseBase):
    """Follows who holds ``key``: release notices arrive at once (pub/sub),
    expiry is noticed by a timer aimed at the key's PTTL.

    ``on_change(kind, holder)`` runs on the dispatcher thread; kind is one of
    "initial", "elected", "released", "expired"; holder is the holder id or
    None.
    """

    def __init__(self, url, key, *, on_change=None, poll_interval=1.0,
                 connect_timeout=1.0, command_timeout=1.0):
        if on_change is not None and not callable(on_change):
            raise TypeError("on_change must be callable or None")
        if isinstance(poll_interval, bool) or not isinstance(poll_interval, (int, float)):
            raise TypeError("poll_interval must be a number of seconds")
        if not 0 < poll_interval < 3600:
            raise ValueError("poll_interval must be > 0 and < 3600 s, got %r" % (poll_interval,))
        super().__init__(url, key, ttl=3600.0, retry_interval=poll_interval,
                         connect_timeout=connect_timeout, command_timeout=command_timeout,
                         _mode=_c.MODE_WATCH)
        self.on_change = on_change

    def start(self):
        _dispatch.register(self)
        super().start()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        self.stop()
        return False

    def __repr__(self):
        return "<%s key=%r url=%r>" % (type(self).__name__, self.key, self.url)

    def _on_event(self, kind, token, text):
        if kind == _c.EV_LEADER and self.on_change is not None:
            try:
                self.on_change(_CAUSES.get(token, "changed"), text)
            except Exception:
                _dispatch.log.exception("on_change callback of watch on %r raised", self.key)
        elif kind == _c.EV_ERROR:
            _dispatch.log.warning("watch key=%r: %s", self.key, text)


def key_status(url, key, *, timeout=5.0, connect_timeout=1.0, command_timeout=1.0):
    """One round trip: {"key", "exists", "holder", "ttl" (s or None), "token" (last issued)}."""
    probe = _c.LeaseBase(url, key, ttl=10.0, connect_timeout=connect_timeout,
                         command_timeout=command_timeout, _mode=_c.MODE_LOCK)
    holder, pttl, token = probe._query(timeout)
    return {
        "key": key,
        "exists": holder is not None,
        "holder": holder,
        "ttl": pttl / 1000.0 if pttl >= 0 else None,
        "token": token,
    }
