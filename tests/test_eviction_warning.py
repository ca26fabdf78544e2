"""The eviction guard: a server whose maxmemory-policy may evict keys with a
TTL gets one WARNING per endpoint (lease keys could vanish before their ttl:
two leaders); noeviction and a refused CONFIG say nothing."""
from __future__ import annotations

import logging
import time

import pytest

from helpers.waiting import wait_until


def _warnings(caplog):
    return [r.getMessage() for r in caplog.records
            if r.name == "redlease" and r.levelno == logging.WARNING and "maxmemory-policy" in r.getMessage()]


@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-ttl"])
def test_an_evicting_policy_is_warned_once_per_endpoint(rl, redis_factory, make_node, key, caplog, policy):
    caplog.set_level(logging.WARNING, logger="redlease")
    srv = redis_factory(extra_args=["--maxmemory-policy", policy])
    a = make_node(srv.url(), ttl=2.0)
    b = make_node(srv.url(), node_key=key + ":other", ttl=2.0)
    a.start()
    b.start()
    assert a.wait_for_leadership(timeout=10) and b.wait_for_leadership(timeout=10)
    wait_until(lambda: _warnings(caplog), 10, desc="the eviction warning")
    time.sleep(0.3)
    msgs = _warnings(caplog)
    assert len(msgs) == 1, msgs                 # one per endpoint, not per lease
    assert policy in msgs[0] and "noeviction" in msgs[0]
    assert f"127.0.0.1:{srv.port}" in msgs[0]


def test_noeviction_and_a_refused_config_say_nothing(rl, redis_factory, make_node, key, caplog):
    caplog.set_level(logging.WARNING, logger="redlease")
    quiet = redis_factory()                                    # noeviction is the default
    renamed = redis_factory(extra_args=["--maxmemory-policy", "allkeys-lru",
                                        "--rename-command", "CONFIG", ""])
    for i, srv in enumerate((quiet, renamed)):
        n = make_node(srv.url(), node_key=f"{key}:{i}", ttl=2.0)
        n.start()
        assert n.wait_for_leadership(timeout=10)
    time.sleep(0.5)
    assert _warnings(caplog) == []
