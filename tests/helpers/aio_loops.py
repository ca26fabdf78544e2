"""Event-loop plumbing for the asyncio tests: the default loop and (when
installed) uvloop, each run with a hard bound so a stuck await fails the test
instead of hanging it."""
from __future__ import annotations

import asyncio

import pytest

try:  # optional
    import uvloop as _uvloop
except Exception:  # noqa: BLE001 - any import problem means "not available"
    _uvloop = None

HAVE_UVLOOP = _uvloop is not None

LOOP_KINDS = [
    pytest.param("asyncio", id="asyncio"),
    pytest.param("uvloop", id="uvloop",
                 marks=pytest.mark.skipif(not HAVE_UVLOOP, reason="uvloop is not installed")),
]


def loop_factory(kind: str):
    if kind == "asyncio":
        return asyncio.new_event_loop
    if kind == "uvloop":
        if _uvloop is None:
            pytest.skip("uvloop is not installed")
        return _uvloop.new_event_loop
    raise ValueError(f"unknown loop kind {kind!r}")


def run(coro, kind: str = "asyncio", timeout: float = 30.0):
    """Run ``coro`` to completion on a fresh loop of ``kind``, at most ``timeout`` s."""
    factory = loop_factory(kind)

    async def bounded():
        try:
            return await asyncio.wait_for(coro, timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"the test coroutine did not finish within {timeout}s") from None

    if hasattr(asyncio, "Runner"):  # Python 3.11+
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(bounded())
    loop = factory()
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(bounded())
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


async def wait_for_cond(pred, timeout: float = 10.0, interval: float = 0.01, desc: str = ""):
    """Async counterpart of waiting.wait_until (sleeps on the loop)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = pred()
        if value:
            return value
        if loop.time() >= deadline:
            raise AssertionError(f"condition not met within {timeout:.1f}s: {desc or pred}")
        await asyncio.sleep(interval)


def cancel_when_ready(loop, task, ready, skew):
    """Cancel ``task`` ``skew`` loop turns after ``ready()`` first holds (the
    turn a grant becomes visible, or a turn or two later).  Returns a list
    that gets ``task.cancel()``'s result once the cancel was sent."""
    sent = []
    turns = [0]

    def spin():
        if task.done():
            return
        if ready():
            if turns[0] >= skew:
                sent.append(task.cancel())
                return
            turns[0] += 1
        loop.call_soon(spin)
    loop.call_soon(spin)
    return sent
