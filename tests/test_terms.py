"""A term owns only itself: the value in the key names one acquisition
("<node_id>#<16 hex>"), and renew/release act on that exact value."""
from __future__ import annotations

import re
import time

from helpers.terms import is_term, term_of
from helpers.waiting import stays_true, wait_until


def test_stored_value_names_the_term(rl, redis_server, make_node, key):
    node = make_node(redis_server.url(), node_id="worker-7", ttl=2.0, retry_interval=0.05)
    node.start()
    assert node.wait_for_leadership(10)
    v1 = redis_server.cmd("GET", key)
    assert re.fullmatch(rb"worker-7#[0-9a-f]{16}", v1), v1
    assert node.leader == "worker-7"
    node.resign()
    assert node.wait_for_leadership(10)
    v2 = redis_server.cmd("GET", key)
    assert is_term(v2) and term_of(v2) == b"worker-7"
    assert v2 != v1, "a new acquisition must be a new term value"
    node.stop()
    node.start()
    assert node.wait_for_leadership(10)
    v3 = redis_server.cmd("GET", key)
    assert v3 not in (v1, v2)


def test_two_objects_with_the_same_node_id_contend(rl, redis_server, make_node, key):
    a = make_node(redis_server.url(), node_id="same-host", ttl=1.0, retry_interval=0.05)
    b = make_node(redis_server.url(), node_id="same-host", ttl=1.0, retry_interval=0.05)
    a.start()
    b.start()
    wait_until(lambda: a.is_leader or b.is_leader, 10, desc="one of them leads")
    assert stays_true(lambda: not (a.is_leader and b.is_leader), 1.5), "both lead"
    first, second = (a, b) if a.is_leader else (b, a)
    first.stop()
    assert second.wait_for_leadership(10)
    assert not first.is_leader


def test_a_late_release_of_an_earlier_term_does_not_delete_the_new_one(
        rl, redis_server, proxy_factory, make_node, key):
    # The release of term 1 is held back on its connection (as a kernel
    # retransmitting it would); the node gives up on it, reconnects and is
    # elected again; then the stale release lands.  It must not delete the
    # new term -- with one value per node it did, and a peer was elected
    # while the node still led.
    proxy = proxy_factory(redis_server.port)
    a = make_node(proxy.url(), ttl=1.5, command_timeout=0.3, retry_interval=0.05)
    a.start()
    assert a.wait_for_leadership(10)
    term1 = redis_server.cmd("GET", key)
    proxy.stall_existing()
    a.resign()                      # its release is held back; a times out
    assert proxy.stalled_bytes() > 0
    assert redis_server.cmd("GET", key) == term1
    assert a.wait_for_leadership(15), "a was not elected again"
    term2 = redis_server.cmd("GET", key)
    assert term2 != term1 and term_of(term2) == a.node_id.encode()
    b = make_node(redis_server.url(), ttl=1.5, retry_interval=0.05)
    b.start()
    time.sleep(0.1)
    assert proxy.release_stalled() > 0   # the stale release lands now
    assert stays_true(lambda: not (a.is_leader and b.is_leader), 1.0), "two leaders"
    assert a.is_leader and not b.is_leader
    assert redis_server.cmd("GET", key) == term2


def test_leader_of_a_same_node_id_object_is_shown(rl, redis_server, make_node, key):
    # Another object with this node_id leads: this follower's node.leader
    # names it (only this object's own, ended term is hidden).
    a = make_node(redis_server.url(), node_id="twin", ttl=2.0, retry_interval=0.05)
    b = make_node(redis_server.url(), node_id="twin", ttl=2.0, retry_interval=0.05)
    a.start()
    assert a.wait_for_leadership(10)
    b.start()
    wait_until(lambda: b.leader == "twin", 10, desc="the follower sees its twin lead")
    assert a.is_leader and not b.is_leader
