"""The connection layer on its own socket: CLIENT SETNAME after AUTH on both
connections of an endpoint, and a refused SETNAME is not fatal."""
from __future__ import annotations

from helpers.terms import term_of
from helpers.waiting import wait_until


def _names(server):
    listing = server.cmd("CLIENT", "LIST")
    if isinstance(listing, bytes):
        listing = listing.decode()
    return [dict(f.split("=", 1) for f in line.split() if "=" in f)
            for line in listing.splitlines() if line.strip()]


def test_client_list_names_both_connections_redlease(redis_server, make_node):
    node = make_node(redis_server.url(), ttl=1.0)
    node.start()
    assert node.wait_for_leadership(20)
    # the command connection and the subscriber connection
    wait_until(lambda: sum(c.get("name") == "redlease" for c in _names(redis_server)) >= 2,
               timeout=20)


def test_client_list_name_with_password(redis_factory, make_node):
    srv = redis_factory(password="s3cret")
    node = make_node(srv.url(), ttl=1.0)
    node.start()
    assert node.wait_for_leadership(20)
    wait_until(lambda: sum(c.get("name") == "redlease" for c in _names(srv)) >= 2, timeout=20)


def test_setname_refused_is_not_fatal(redis_factory, make_node, key):
    # CLIENT renamed away: SETNAME gets "ERR unknown command"; the node leads anyway.
    srv = redis_factory(extra_args=["--rename-command", "CLIENT", "CLIENT-HIDDEN"])
    node = make_node(srv.url(), ttl=1.0)
    node.start()
    assert node.wait_for_leadership(20)
    assert term_of(srv.cmd("GET", key)) == node.node_id.encode()
    assert node.last_error is None or "SETNAME" not in node.last_error
