"""Resources stay bounded (issue 7 point 6): a status query against a server
that cannot be reached, many asyncio event loops, huge timeouts and PTTLs,
many sockets across fork.

Real redis-server only.  Time checks are wide liveness bounds; counts (leases,
connections, fds, attempts) are exact or bounded by what the settings allow.
"""
from __future__ import annotations

import time

import pytest

from helpers.redis_server import free_port
from helpers.waiting import wait_until


def _engine(rl):
    return rl.engine_stats()


# ---------------------------------------------------------------------------
# 1. a status query against an unreachable server
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["refused", "blackhole"])
def test_status_query_unreachable_frees_everything(rl, redis_server, proxy_factory, key, how):
    if how == "refused":
        url = f"redis://127.0.0.1:{free_port()}"
    else:
        proxy = proxy_factory(redis_server.port)
        proxy.blackhole()
        url = proxy.url()
    before = _engine(rl)
    connect_timeout = 0.5
    t0 = time.monotonic()
    with pytest.raises(rl.ConnectionError):
        rl.key_status(url, key, timeout=30.0, connect_timeout=connect_timeout,
                      command_timeout=connect_timeout)
    took = time.monotonic() - t0
    # connect_timeout (or command_timeout for a server that accepts and
    # never answers), plus a wide margin; far from the 30 s timeout
    assert took < connect_timeout + 5.0, took
    # the lease is given back and no connection stays open or reconnects
    try:
        wait_until(lambda: _engine(rl)["leases"] == before["leases"]
                   and _engine(rl)["connections"] == before["connections"], 10)
    except AssertionError:
        raise AssertionError(f"lease or connections not freed: {_engine(rl)} vs {before}") from None
    opened = _engine(rl)["connections_opened"]
    time.sleep(1.5)      # the connection backoff would have retried by now
    after = _engine(rl)
    assert after["connections_opened"] == opened, (after, before)
    assert after["leases"] == before["leases"] and after["connections"] == before["connections"], after
