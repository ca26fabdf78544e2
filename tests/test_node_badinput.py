"""Bad arguments, bad URLs and server-side misconfiguration.

Rules checked here (from the API spec):
  * wrong types -> TypeError, bad values -> ValueError, at construction;
  * permanent misconfiguration (auth, db index, WRONGTYPE) -> a typed
    exception from the first blocking call (wait_for_leadership / leadership);
  * nothing hangs and nothing crashes: every call that could block is run
    with a hard bound.
"""
from __future__ import annotations

import math
import pickle

import pytest

from helpers.redis_server import free_port
from helpers.waiting import run_bounded
from helpers.terms import term_of

# ---------------------------------------------------------------------------
# constructor argument types and values
# ---------------------------------------------------------------------------
BAD_TYPES = [
    ("url-none", lambda u: dict(url=None, key="k")),
    ("url-int", lambda u: dict(url=123, key="k")),
    ("url-list", lambda u: dict(url=[u], key="k")),
    ("key-none", lambda u: dict(url=u, key=None)),
    ("key-int", lambda u: dict(url=u, key=123)),
    ("key-float", lambda u: dict(url=u, key=1.5)),
    ("key-list", lambda u: dict(url=u, key=["k"])),
    ("key-object", lambda u: dict(url=u, key=object())),
    ("node_id-int", lambda u: dict(url=u, key="k", node_id=123)),
    ("node_id-list", lambda u: dict(url=u, key="k", node_id=["a"])),
    ("ttl-str", lambda u: dict(url=u, key="k", ttl="1")),
    ("ttl-list", lambda u: dict(url=u, key="k", ttl=[1.0])),
    ("ttl-complex", lambda u: dict(url=u, key="k", ttl=1j)),
    ("renew-str", lambda u: dict(url=u, key="k", ttl=1.0, renew_interval="0.3")),
    ("retry-str", lambda u: dict(url=u, key="k", ttl=1.0, retry_interval="0.3")),
    ("connect_timeout-str", lambda u: dict(url=u, key="k", connect_timeout="1")),
    ("command_timeout-str", lambda u: dict(url=u, key="k", command_timeout="1")),
    ("on_elected-int", lambda u: dict(url=u, key="k", on_elected=5)),
    ("on_revoked-str", lambda u: dict(url=u, key="k", on_revoked="print")),
    ("on_leader_change-int", lambda u: dict(url=u, key="k", on_leader_change=1)),
]


@pytest.mark.parametrize("case", [c[1] for c in BAD_TYPES], ids=[c[0] for c in BAD_TYPES])
def test_wrong_types_raise_type_error(rl, case):
    kwargs = case(f"redis://127.0.0.1:{free_port()}")
    url, key = kwargs.pop("url"), kwargs.pop("key")
    with pytest.raises(TypeError):
        rl.DistributionNode(url, key, **kwargs)


def test_signature_misuse_raises_type_error(rl):
    url = f"redis://127.0.0.1:{free_port()}"
    with pytest.raises(TypeError):
        rl.DistributionNode()
    with pytest.raises(TypeError):
        rl.DistributionNode(url)
    with pytest.raises(TypeError):
        rl.DistributionNode(url, "k", "positional-node-id")  # keyword-only
    with pytest.raises(TypeError):
        rl.DistributionNode(url, "k", no_such_option=1)


BAD_NUMBERS = [0, 0.0, -1, -0.5, math.nan, math.inf, -math.inf]


@pytest.mark.parametrize("ttl", BAD_NUMBERS, ids=repr)
def test_bad_ttl_raises_value_error(rl, ttl):
    with pytest.raises(ValueError):
        rl.DistributionNode(f"redis://127.0.0.1:{free_port()}", "k", ttl=ttl)


@pytest.mark.parametrize("name", ["renew_interval", "retry_interval"])
@pytest.mark.parametrize("value", [1.0, 1.5, 100.0, 0, 0.0, -0.1, math.nan, math.inf],
                         ids=repr)
def test_bad_intervals_raise_value_error(rl, name, value):
    with pytest.raises(ValueError):
        rl.DistributionNode(f"redis://127.0.0.1:{free_port()}", "k", ttl=1.0, **{name: value})


@pytest.mark.parametrize("name", ["renew_interval", "retry_interval"])
def test_interval_against_default_ttl(rl, name):
    url = f"redis://127.0.0.1:{free_port()}"
    with pytest.raises(ValueError):
        rl.DistributionNode(url, "k", **{name: 10.0})  # == default ttl
    rl.DistributionNode(url, "k", **{name: 9.5})  # < default ttl: fine


def test_valid_intervals_accepted(rl):
    node = rl.DistributionNode(f"redis://127.0.0.1:{free_port()}", "k", ttl=1.0,
                               renew_interval=0.999, retry_interval=0.001)
    assert node.ttl == pytest.approx(1.0)


@pytest.mark.parametrize("name", ["connect_timeout", "command_timeout"])
@pytest.mark.parametrize("value", [-1.0, math.nan], ids=repr)
def test_bad_timeouts_raise_value_error(rl, name, value):
    with pytest.raises(ValueError):
        rl.DistributionNode(f"redis://127.0.0.1:{free_port()}", "k", **{name: value})


@pytest.mark.parametrize("key", ["", b""], ids=["str", "bytes"])
def test_empty_key_raises_value_error(rl, key):
    with pytest.raises(ValueError):
        rl.DistributionNode(f"redis://127.0.0.1:{free_port()}", key)


def test_megabyte_key_works_or_is_rejected_cleanly(rl, redis_server, make_node):
    big = b"K" * (1024 * 1024)
    try:
        node = make_node(redis_server.url(), node_key=big, ttl=1.0)
    except ValueError:
        return  # a clear refusal is fine
    node.start()
    outcome, value = run_bounded(node.wait_for_leadership, 30, 10)
    assert outcome != "hung"
    if outcome == "ok" and value:
        assert term_of(redis_server.cmd("GET", big)) == node.node_id.encode()
        node.stop()
        assert redis_server.cmd("EXISTS", big) == 0
    else:
        # not elected: must be a clear library error, not a crash
        assert outcome == "raised" and isinstance(value, (rl.RedleaseError, ValueError)), value
    assert redis_server.cmd("PING") == "PONG"


@pytest.mark.parametrize("key", [b"\x00", b"\x00\x00\x00", b"a\x00", "nul\x00in-str"],
                         ids=["nul", "nuls", "trailing-nul", "str-with-nul"])
def test_keys_with_nul_bytes_work(rl, redis_server, make_node, key):
    node = make_node(redis_server.url(), node_key=key, ttl=1.0)
    raw = key if isinstance(key, bytes) else key.encode()
    with node:
        assert node.wait_for_leadership(10)
        assert term_of(redis_server.cmd("GET", raw)) == node.node_id.encode()
    assert redis_server.cmd("EXISTS", raw) == 0


# ---------------------------------------------------------------------------
# URLs
# ---------------------------------------------------------------------------
def _assert_clear_failure(rl, url, wait=5.0, bound=30.0):
    """The URL is refused at construction/start, or the first blocking call
    raises a clear exception; never a hang and never a silent False."""
    allowed = (rl.RedleaseError, ValueError, TypeError, OSError)
    try:
        node = rl.DistributionNode(url, "bad-url-key", ttl=1.0)
    except allowed:
        return
    try:
        try:
            node.start()
        except allowed:
            return
        outcome, value = run_bounded(node.wait_for_leadership, bound, wait)
        assert outcome != "hung", f"{url!r}: wait_for_leadership hung"
        assert outcome == "raised", f"{url!r}: no clear error, wait_for_leadership returned {value!r}"
        assert isinstance(value, (rl.RedleaseError, ValueError, OSError)), repr(value)
        return value
    finally:
        outcome, _ = run_bounded(node.stop, bound)
        assert outcome != "hung", f"{url!r}: stop() hung"


MALFORMED_URLS = [
    "",
    "not a url",
    "127.0.0.1:6379",
    "redis://127.0.0.1:notaport",
    "redis://127.0.0.1:6379/notadb",
    "redis://[::1",
    "unix://",
]
UNKNOWN_SCHEMES = ["http://127.0.0.1:6379", "ftp://127.0.0.1", "redis+sentinel://127.0.0.1:26379",
                   "tcp://127.0.0.1:6379"]
BAD_PORTS = ["redis://127.0.0.1:0", "redis://127.0.0.1:70000", "redis://127.0.0.1:-5",
             "redis://127.0.0.1:65536"]


@pytest.mark.parametrize("url", MALFORMED_URLS + UNKNOWN_SCHEMES + BAD_PORTS)
def test_bad_urls_fail_clearly(rl, url):
    _assert_clear_failure(rl, url)


def test_unknown_scheme_is_value_error_at_construction(rl):
    with pytest.raises(ValueError):
        rl.DistributionNode("http://127.0.0.1:6379", "k")


def _unreachable_outcomes(rl, url):
    """What each public entry point does for a server that cannot be
    reached: construction, wait_for_leadership(timeout), last_error,
    Lock.acquire(blocking=False), Lock.acquire(blocking=True)."""
    out = {}
    node = rl.DistributionNode(url, "unreach-key", ttl=1.0, connect_timeout=0.3)
    try:
        node.start()
        outcome, value = run_bounded(node.wait_for_leadership, 30, 1.5)
        out["wait"] = (outcome, value if outcome == "ok" else type(value).__name__)
        out["last_error"] = node.last_error
    finally:
        outcome, _ = run_bounded(node.stop, 30)
        assert outcome != "hung", "stop() hung"
    for blocking in (False, True):
        lock = rl.Lock(url, "unreach-lock", ttl=1.0, connect_timeout=0.3)
        outcome, value = run_bounded(lock.acquire, 30, blocking)
        assert outcome != "hung", f"acquire(blocking={blocking}) hung"
        out["acquire", blocking] = (outcome, value if outcome == "ok" else type(value).__name__)
    return out


def test_unresolvable_host_behaves_like_a_refused_port(rl):
    """One rule (README, Errors): a host name that does not resolve is not an
    error at construction; the node retries in the background, last_error
    says why, and blocking calls behave as for a refused port."""
    bad_name = _unreachable_outcomes(rl, "redis://nonexistent-host.invalid:6379/0")
    refused = _unreachable_outcomes(rl, f"redis://127.0.0.1:{free_port()}/0")
    err = bad_name.pop("last_error")
    assert err.startswith("cannot resolve host 'nonexistent-host.invalid': "), err
    assert err.endswith("; check the host name in the URL"), err
    assert refused.pop("last_error").startswith("cannot connect to ")
    assert bad_name == refused
    assert bad_name["wait"] == ("ok", False)
    assert bad_name["acquire", False] == ("raised", "ConnectionError")
    assert bad_name["acquire", True] == ("raised", "ConnectionError")


def test_rediss_is_supported_with_any_hiredis(rl):
    """TLS is OpenSSL's (the core owns its sockets), not hiredis_ssl's: a
    rediss:// URL is accepted whatever hiredis the core was built against
    (tests/test_tls.py talks to real TLS servers)."""
    assert rl._redlease.HAS_TLS == 1
    node = rl.DistributionNode("rediss://127.0.0.1:6380", "k", ttl=1.0)
    assert node.url == "rediss://127.0.0.1:6380/0"


# ---------------------------------------------------------------------------
# server-side misconfiguration
# ---------------------------------------------------------------------------
def _first_blocking_call_raises(rl, node, exc_type, bound=30.0):
    want = exc_type.__name__ if isinstance(exc_type, type) else \
        " or ".join(t.__name__ for t in exc_type)
    node.start()
    outcome, value = run_bounded(node.wait_for_leadership, bound, 10)
    assert outcome != "hung", "wait_for_leadership hung"
    assert outcome == "raised", f"expected {want}, got return value {value!r}"
    assert isinstance(value, exc_type), f"expected {want}, got {value!r}"
    assert not node.is_leader
    return value


def test_db_out_of_range(rl, redis_server, make_node):
    node = make_node(redis_server.url(db=99999), ttl=1.0)
    _first_blocking_call_raises(rl, node, rl.RedleaseError)


def test_db_out_of_range_unix(rl, redis_server, make_node):
    node = make_node(redis_server.unix_url(db=99999), ttl=1.0)
    _first_blocking_call_raises(rl, node, rl.RedleaseError)


def test_wrong_password(rl, redis_factory, make_node):
    srv = redis_factory(password="right-password")
    node = make_node(srv.url(password="wrong-password"), ttl=1.0)
    exc = _first_blocking_call_raises(rl, node, rl.AuthenticationError)
    assert "wrong-password" not in str(exc) and "right-password" not in str(exc)
    assert "wrong-password" not in repr(node)


def test_wrong_password_via_leadership(rl, redis_factory, make_node):
    srv = redis_factory(password="right-password")
    node = make_node(srv.url(password="wrong-password"), ttl=1.0)

    def enter():
        with node.leadership(timeout=10):
            pass

    outcome, value = run_bounded(enter, 30)
    assert outcome == "raised" and isinstance(value, rl.AuthenticationError), value


def test_missing_password(rl, redis_factory, make_node):
    srv = redis_factory(password="right-password")
    node = make_node(f"redis://127.0.0.1:{srv.port}", ttl=1.0)
    # NOAUTH: an authentication problem (AuthenticationError preferred; any typed error accepted)
    _first_blocking_call_raises(rl, node, (rl.AuthenticationError, rl.RedisError))


def test_unknown_acl_user(rl, redis_server, make_node):
    node = make_node(redis_server.url(user="ghost", password="boo"), ttl=1.0)
    _first_blocking_call_raises(rl, node, rl.AuthenticationError)


def test_acl_user_wrong_password(rl, redis_server, make_node):
    redis_server.cmd("ACL", "SETUSER", "bob", "on", ">bobpw", "~*", "&*", "+@all")
    node = make_node(redis_server.url(user="bob", password="not-bobs"), ttl=1.0)
    _first_blocking_call_raises(rl, node, rl.AuthenticationError)


@pytest.mark.parametrize("rules", [
    ("~*", "&*", "+@all", "-evalsha", "-eval"),      # no scripts
    ("~other:*", "&*", "+@all"),                      # not the lease key
], ids=["no-scripts", "no-key"])
def test_acl_denial_is_a_permission_error_not_a_connection_error(rl, redis_server, make_node,
                                                                 key, rules):
    redis_server.cmd("ACL", "SETUSER", "carol", "on", ">carolpw", *rules)
    node = make_node(redis_server.url(user="carol", password="carolpw"), ttl=1.0)
    exc = _first_blocking_call_raises(rl, node, rl.PermissionError)
    assert isinstance(exc, rl.RedisError)
    assert not isinstance(exc, ConnectionError), "retry code must not retry an ACL denial"
    assert not isinstance(exc, rl.AuthenticationError)
    msg = str(exc)
    assert "NOPERM" in msg and "127.0.0.1" in msg and "carolpw" not in msg, msg
    assert "ACL user needs" in msg, msg


@pytest.mark.parametrize("setup", [("RPUSH", "x"), ("HSET", "f", "v"), ("SADD", "m")],
                         ids=["list", "hash", "set"])
def test_key_of_wrong_type(rl, redis_server, make_node, key, setup):
    redis_server.cmd(setup[0], key, *setup[1:])
    node = make_node(redis_server.url(), ttl=1.0)
    _first_blocking_call_raises(rl, node, rl.RedisError)
    # the library never destroys the foreign value
    assert redis_server.cmd("TYPE", key) in ("list", "hash", "set")


# ---------------------------------------------------------------------------
# method arguments
# ---------------------------------------------------------------------------
def test_wait_for_leadership_bad_timeout(rl, redis_server, make_node):
    node = make_node(redis_server.url(), ttl=1.0)
    with pytest.raises(TypeError):
        node.wait_for_leadership("1")
    with pytest.raises(TypeError):
        node.leadership(timeout="1").__enter__()
    # a negative timeout: either rejected or an immediate False
    outcome, value = run_bounded(node.wait_for_leadership, 10, -1)
    assert outcome != "hung"
    if outcome == "raised":
        assert isinstance(value, ValueError), value
    else:
        assert value is False


def test_pickling_raises_type_error(rl, redis_server, make_node):
    node = make_node(redis_server.url(), ttl=1.0)
    for proto in range(pickle.HIGHEST_PROTOCOL + 1):
        with pytest.raises(TypeError):
            pickle.dumps(node, protocol=proto)
    node.start()
    with pytest.raises(TypeError):
        pickle.dumps(node)
