"""``redlease run --once-per PERIOD``: the marker of a completed run.

A completed run leaves ``marker_key(KEY)`` (JSON: token, exit code, node id,
time) with PERIOD as its TTL; a later host that sees it skips CMD.  The
marker is written by one Lua script that checks, inside Redis, that the
lease is still this run's term (the key holds ``<node_id>#<16 hex>`` and the
token counter still holds the run's fencing token), so a runner that lost the
lease, however late its write arrives, cannot write it.  A plain SET while
``node.is_leader`` would leave a window between the check and the write
(a paused process, a retransmitted packet) in which the lease may already be
someone else's.

The library has no command API, so this module speaks RESP itself: one short
blocking connection per call, with the URL forms the engine accepts for
``redis://``, ``rediss://`` and ``unix://`` (user, password, db).
"""
import json
import time

from ._resp import RedisReplyError, RespConn  # noqa: F401 - RedisReplyError is re-exported

MARK_LUA = """
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local id = ARGV[1]
if #v ~= #id + 17 or string.sub(v, 1, #id + 1) ~= id .. '#' then return 0 end
if redis.call('GET', KEYS[2]) ~= ARGV[2] then return 0 end
redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[4])
return 1
"""


def _tagged(key):
    """``key`` with a hash tag that keeps derived keys in its cluster slot
    (the same rule as the engine's token key)."""
    o = key.find("{")
    c = key.find("}", o + 1) if o >= 0 else -1
    if o >= 0 and c > o + 1:
        return key
    if "}" in key:
        return key
    return "{" + key + "}"


def token_key(key):
    return _tagged(key) + ":redlease-token"


def marker_key(key):
    return _tagged(key) + ":redlease-once"




def _with_conn(url, timeout, fn):
    c = RespConn(url, timeout)
    try:
        return fn(c)
    finally:
        c.close()


def read_marker(url, key, timeout):
    """The marker of the last completed run (a dict), or None."""
    raw = _with_conn(url, timeout, lambda c: c.call("GET", marker_key(key)))
    if raw is None:
        return None
    try:
        m = json.loads(raw)
        return m if isinstance(m, dict) else {"value": raw.decode(errors="replace")}
    except ValueError:
        return {"value": raw.decode(errors="replace")}


def write_marker(url, key, node_id, token, code, period, timeout):
    """Record a completed run if the lease is still this run's term.
    True when written, False when the lease was no longer ours."""
    value = json.dumps({"token": token, "exit": code, "node_id": node_id,
                        "time": round(time.time(), 3), "period": period})
    ms = max(1, int(round(period * 1000)))
    r = _with_conn(url, timeout, lambda c: c.call(
        "EVAL", MARK_LUA, "3", key, token_key(key), marker_key(key),
        node_id, str(token), value, str(ms)))
    return r == 1


def describe(m):
    if "token" in m:
        return "fencing token %s, exit code %s, by %s" % (m.get("token"), m.get("exit"),
                                                         m.get("node_id"))
    return "value %r" % m.get("value")


_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text):
    """'24h', '90m', '1.5d', '30s', '250ms' or a plain number of seconds."""
    import re
    t = text.strip().lower()
    m = re.fullmatch(r"([0-9]*\.?[0-9]+)\s*(ms|s|m|h|d|w)?", t)
    if not m:
        raise ValueError("not a duration: %r (e.g. 24h, 90m, 30s)" % text)
    v = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    if not v >= 0.001:
        raise ValueError("duration must be at least 1 ms: %r" % text)
    return v
