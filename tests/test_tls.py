"""rediss:// against real TLS redis-servers (certificates made with the
openssl command line in a temp dir, see helpers/tls.py)."""
from __future__ import annotations

import subprocess
import time

import pytest

from helpers.cli_fixtures import cli_argv
from helpers.tls import Certs, TLSRedisServer
from helpers.waiting import wait_until


pytestmark = pytest.mark.deployment


@pytest.fixture(scope="module")
def certs():
    c = Certs()
    yield c
    c.cleanup()


@pytest.fixture
def tls_factory(certs):
    """``make(auth_clients="no", cert="server")`` -> a started TLSRedisServer."""
    servers = []

    def make(**kw):
        s = TLSRedisServer(certs, **kw)
        servers.append(s)
        return s.start()

    yield make
    for s in servers:
        s.cleanup()


@pytest.fixture
def tls_server(tls_factory):
    return tls_factory()


@pytest.fixture
def make_lock(rl):
    locks = []

    def make(url, key, **kw):
        lk = rl.Lock(url, key, **kw)
        locks.append(lk)
        return lk

    yield make
    for lk in locks:
        try:
            lk.release()
        except Exception:
            pass


def ca(certs, name="ca.pem"):
    return "ssl_ca_certs=" + certs.path(name)


def raises_on_wait(rl, node, exc, timeout=15.0):
    """start(), then the first blocking call raises exc (within bounds, not a hang)."""
    node.start()
    t0 = time.monotonic()
    with pytest.raises(exc) as info:
        node.wait_for_leadership(timeout=timeout)
    assert time.monotonic() - t0 < timeout
    return str(info.value)


# ---------------------------------------------------------------------------
# server-only TLS
# ---------------------------------------------------------------------------
def test_leads_and_takes_over(rl, tls_server, certs, make_node, key):
    url = tls_server.tls_url() + "?" + ca(certs)
    a = make_node(url, ttl=1.0)
    a.start()
    assert a.wait_for_leadership(timeout=15) is True
    b = make_node(tls_server.tls_url(host="localhost") + "?" + ca(certs), ttl=1.0)
    b.start()
    assert b.is_leader is False
    tok = a.token
    a.stop()
    assert b.wait_for_leadership(timeout=15) is True
    assert b.token > tok
    assert not a.is_leader


def test_lock_over_tls(rl, tls_server, certs, make_lock, key):
    url = tls_server.tls_url() + "?" + ca(certs)
    lk = make_lock(url, key, ttl=2.0)
    assert lk.acquire(timeout=15) is True
    other = make_lock(url, key, ttl=2.0)
    assert other.acquire(blocking=False) is False
    lk.release()
    assert other.acquire(timeout=15) is True


def test_cli_status_over_tls(rl, tls_server, certs, make_node, key):
    url = tls_server.tls_url() + "?" + ca(certs)
    node = make_node(url, ttl=2.0, node_id="tls-holder")
    node.start()
    assert node.wait_for_leadership(timeout=15)
    p = subprocess.run(cli_argv() + ["--url", url, "status", key, "--json"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "tls-holder" in p.stdout


def test_cert_reqs_none_accepts_unknown_ca(rl, tls_server, certs, make_node):
    url = tls_server.tls_url() + "?" + ca(certs, "ca2.pem") + "&ssl_cert_reqs=none"
    node = make_node(url, ttl=1.0)
    node.start()
    assert node.wait_for_leadership(timeout=15) is True


def test_check_hostname_false_accepts_other_name(rl, tls_factory, certs, make_node):
    srv = tls_factory(cert="other")          # a certificate for other.test only
    url = srv.tls_url() + "?" + ca(certs) + "&ssl_check_hostname=false"
    node = make_node(url, ttl=1.0)
    node.start()
    assert node.wait_for_leadership(timeout=15) is True


# ---------------------------------------------------------------------------
# refusals: TLSError from the first blocking call, never a hang
# ---------------------------------------------------------------------------
def test_unknown_ca_is_tls_error(rl, tls_server, certs, make_node):
    node = make_node(tls_server.tls_url() + "?" + ca(certs, "ca2.pem"), ttl=1.0)
    msg = raises_on_wait(rl, node, rl.TLSError)
    assert "certificate verify failed" in msg
    assert "check ssl_ca_certs" in msg
    assert isinstance(node.last_error, str)


def test_wrong_host_name_is_tls_error(rl, tls_factory, certs, make_node):
    srv = tls_factory(cert="other")
    for host in ("127.0.0.1", "localhost"):
        node = make_node(srv.tls_url(host=host) + "?" + ca(certs), ttl=1.0)
        msg = raises_on_wait(rl, node, rl.TLSError)
        assert "the server's certificate is for 'other.test', not '%s'" % host in msg, msg
        node.stop()


def test_mutual_tls_with_client_cert(rl, tls_factory, certs, make_node):
    srv = tls_factory(auth_clients="yes")
    url = (srv.tls_url() + "?" + ca(certs) + "&ssl_certfile=" + certs.path("client.pem")
           + "&ssl_keyfile=" + certs.path("client.key"))
    node = make_node(url, ttl=1.0)
    node.start()
    assert node.wait_for_leadership(timeout=15) is True


@pytest.mark.parametrize("client", [None, "ca2-client"])
def test_mutual_tls_refused_client_is_tls_error(rl, tls_factory, certs, make_node, client):
    srv = tls_factory(auth_clients="yes")
    url = srv.tls_url() + "?" + ca(certs)
    if client:
        url += "&ssl_certfile=%s&ssl_keyfile=%s" % (certs.path(client + ".pem"),
                                                     certs.path(client + ".key"))
    node = make_node(url, ttl=1.0)
    msg = raises_on_wait(rl, node, rl.TLSError)
    assert "the server refused the client certificate" in msg, msg


def test_lock_acquire_raises_tls_error(rl, tls_server, certs, make_lock, key):
    lk = make_lock(tls_server.tls_url() + "?" + ca(certs, "ca2.pem"), key)
    t0 = time.monotonic()
    with pytest.raises(rl.TLSError):
        lk.acquire(timeout=15)
    assert time.monotonic() - t0 < 15


def test_rediss_to_plain_port_fails_within_bounds(rl, tls_server, certs, make_lock, key):
    """A plain Redis port never answers a ClientHello (it waits for a newline
    the hello does not have before its first NUL): the connect timeout ends
    it, and a blocking acquire raises ConnectionError, not a hang."""
    url = "rediss://127.0.0.1:%d/0?%s&socket_connect_timeout=1" % (tls_server.port, ca(certs))
    lk = make_lock(url, key)
    t0 = time.monotonic()
    with pytest.raises(rl.ConnectionError):
        lk.acquire()
    assert time.monotonic() - t0 < 20


def test_rediss_to_plain_port_says_the_port_may_not_speak_tls(rl, tls_server, certs, make_node):
    """A plain port never answers a ClientHello -- like a frozen TLS server,
    so it stays a transient ConnectionError, retried, with a message that
    says what is likely wrong."""
    url = "rediss://127.0.0.1:%d/0?%s&socket_connect_timeout=0.5" % (tls_server.port, ca(certs))
    node = make_node(url, ttl=1.0)
    node.start()
    assert node.wait_for_leadership(timeout=1.5) is False
    wait_until(lambda: node.last_error and "no TLS answer" in node.last_error, 20,
               desc="last_error says the port may not speak TLS")
    assert "tls-port" in node.last_error or "TLS" in node.last_error


def test_plain_client_to_tls_port_is_connection_error(rl, tls_server, make_lock, key):
    lk = make_lock("redis://127.0.0.1:%d/0" % tls_server.tls_port, key, connect_timeout=1.0)
    t0 = time.monotonic()
    with pytest.raises(rl.ConnectionError):
        lk.acquire()
    assert time.monotonic() - t0 < 20


def test_tls_error_is_connection_error(rl):
    assert issubclass(rl.TLSError, rl.ConnectionError)
    assert issubclass(rl.TLSError, ConnectionError)
    assert not issubclass(rl.TLSError, rl.AuthenticationError)
    assert rl.TLSError.__module__ == "redlease"
    assert rl._redlease.HAS_TLS == 1


# ---------------------------------------------------------------------------
# configuration errors at construction (no server needed)
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("param,fname,needle", [
    ("ssl_ca_certs", "/nonexistent/ca.pem", "ssl_ca_certs: cannot read '/nonexistent/ca.pem'"),
    ("ssl_ca_path", "/nonexistent-dir", "ssl_ca_path: cannot read the directory '/nonexistent-dir'"),
    ("ssl_certfile", "/nonexistent/c.pem", "ssl_certfile: cannot read '/nonexistent/c.pem'"),
])
def test_missing_files_are_value_errors(rl, param, fname, needle):
    url = "rediss://:S3CRET@127.0.0.1:1/0?%s=%s" % (param, fname)
    for cls in (rl.DistributionNode, rl.Lock):
        with pytest.raises(ValueError) as info:
            cls(url, "k")
        assert needle in str(info.value)
        assert "S3CRET" not in str(info.value)


def test_key_mismatch_is_value_error(rl, certs):
    url = "rediss://127.0.0.1:1/0?ssl_certfile=%s&ssl_keyfile=%s" % (
        certs.path("client.pem"), certs.path("server.key"))
    with pytest.raises(ValueError, match="does not match the certificate"):
        rl.DistributionNode(url, "k")
    with pytest.raises(ValueError, match="ssl_keyfile is given without ssl_certfile"):
        rl.DistributionNode("rediss://h?ssl_keyfile=" + certs.path("client.key"), "k")


def test_unreadable_ca_is_value_error(rl, certs):
    with pytest.raises(ValueError, match="holds no usable PEM certificate"):
        rl.Lock("rediss://h?ssl_ca_certs=" + certs.path("ca.key"), "k")


@pytest.mark.parametrize("url,needle", [
    ("redis://h?ssl_ca_certs=/x", "ssl_ca_certs is only meaningful with TLS"),
    ("redis://h?ssl_cert_reqs=none", "use rediss://"),
    ("unix:///tmp/x.sock?ssl_check_hostname=false", "ssl_check_hostname is only meaningful with TLS"),
    ("rediss://h?ssl_cert_reqs=sometimes", "is not none, optional or required"),
    ("rediss://h?ssl_check_hostname=maybe", "is not a boolean"),
    ("rediss://h?ssl_cert_reqs=none&ssl_check_hostname=true", "needs certificate verification"),
    ("redis://h?socket_timeout=0", "socket_timeout '0' is not a positive number"),
    ("redis://h?socket_connect_timeout=x", "socket_connect_timeout 'x' is not a positive"),
    ("redis://h?socket_timeout=100000", "socket_timeout (in the URL) must be at most"),
    ("redis://h?client_name=a%20b", "holds a character Redis refuses"),
    ("redis://h?protocol=4", "protocol '4' is not 2 or 3"),
    ("redis://h?health_check_interval=3", "known query parameters are db, password, username"),
    ("redis://h?sentinel_password=S3CRET", "only meaningful in redis+sentinel:// URLs"),
])
def test_url_parameter_errors(rl, url, needle):
    with pytest.raises(ValueError) as info:
        rl.DistributionNode(url, "k")
    assert needle in str(info.value)
    assert "S3CRET" not in str(info.value)


@pytest.mark.parametrize("url", ["redis+sentinel://:S3CRET@s1:26379,s2/mymaster/0?sentinel_password=S3CRET2",
                                 "rediss+sentinel://s1/mymaster"])
def test_sentinel_urls_are_accepted_and_masked(rl, url):
    # served by the Sentinel topology (tests/test_sentinel.py); nothing connects before start()
    node = rl.DistributionNode(url, "k")
    assert "S3CRET" not in node.url and "S3CRET" not in repr(node)


def test_url_timeouts_win_over_keywords(rl):
    lk = rl.Lock("redis://127.0.0.1:1/0?socket_timeout=2.5&socket_connect_timeout=0.25", "k",
                 connect_timeout=5, command_timeout=7)
    assert lk.connect_timeout == pytest.approx(0.25)
    assert lk.command_timeout == pytest.approx(2.5)
    node = rl.DistributionNode("redis://127.0.0.1:1/0", "k", connect_timeout=5, command_timeout=7)
    assert node.connect_timeout == pytest.approx(5)
    assert node.command_timeout == pytest.approx(7)


def test_protocol_and_client_name_accepted(rl, redis_server, make_node):
    url = redis_server.url(db=0) + "?protocol=3&client_name=tls-test-name"
    node = make_node(url, ttl=1.0)
    node.start()
    assert node.wait_for_leadership(timeout=15)
    def named():
        out = redis_server.cmd("CLIENT", "LIST")
        return "name=tls-test-name" in (out.decode() if isinstance(out, bytes) else out)
    wait_until(named, 10, desc="a connection named by client_name")
