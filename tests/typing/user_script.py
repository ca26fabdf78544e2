"""A user's script written against redlease's documented API: it must pass
``mypy --strict`` (tests/test_typing.py checks it; it is never run)."""
from __future__ import annotations

import asyncio
from typing import Optional

import redlease

URL = "redis://127.0.0.1:6379/0"


def on_elected(token: int) -> None:
    print("leading with", token)


def on_revoked(reason: str) -> None:
    print("no longer leading:", reason)


def on_leader_change(leader: Optional[str]) -> None:
    print("leader is", leader)


def leader_work(lease: redlease.Lease, rounds: int) -> int:
    for _ in range(rounds):
        lease.check()
        if lease.remaining < 1.0:
            break
    return lease.token


def main() -> None:
    node = redlease.DistributionNode(URL, "jobs:scheduler", ttl=10.0, node_id="web-1",
                                     on_elected=on_elected, on_revoked=on_revoked,
                                     on_leader_change=on_leader_change)
    key: redlease.Key = b"raw-key"
    print(key)
    with node.leadership(timeout=30) as lease:
        token: int = lease.token
        valid: bool = lease.valid
        print(token, valid, node.is_leader, node.token, node.leader, node.lease_remaining)
    if node.wait_for_leadership(timeout=5.0):
        node.resign()
    result: int = node.run_as_leader(leader_work, 3)
    print(result, node.stats(), node.last_error)
    node.stop()

    lock = redlease.Lock(URL, "invoice:4711", ttl=10.0)
    with lock:
        print(lock.token, lock.owned)
    if lock.acquire(blocking=True, timeout=5):
        lock.release()
    print(lock.locked())
    try:
        lock.release()
    except redlease.LockNotOwnedError as exc:
        print(exc)

    st = redlease.key_status(URL, "jobs:scheduler")
    print(st)
    print(redlease.engine_stats(), redlease.__version__, redlease.hiredis_version)
    try:
        redlease.DistributionNode("redis://:wrong@127.0.0.1:6379/0", "k").wait_for_leadership(1)
    except redlease.PermissionError:
        pass
    except redlease.AuthenticationError:
        pass
    except redlease.ConnectionError:
        pass
    except redlease.RedleaseError:
        pass


async def amain() -> None:
    node = redlease.DistributionNode(URL, "api:leader", ttl=10)

    async def refresh(lease: redlease.Lease) -> None:
        await asyncio.sleep(lease.remaining / 2)

    task = asyncio.create_task(node.run_as_leader_async(refresh))
    async with node.leadership() as lease:
        print(lease.token)
    ok: bool = await node.wait_for_leadership_async(timeout=5)
    print(ok)
    await node.resign_async()
    await node.stop_async()
    task.cancel()
    lock = redlease.Lock(URL, "k")
    if await lock.acquire_async(timeout=5):
        await lock.release_async()
    async with lock:
        pass


if __name__ == "__main__":
    main()
    asyncio.run(amain())
