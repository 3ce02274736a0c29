"""engine.redis inside handlers run by the test bus: in memory (fakeredis) and on a server."""

from __future__ import annotations

import asyncio

import pytest

from nautilus_tasks import Engine
from nautilus_tasks.testing import TestBus

tally = Engine("tally")


@tally.task
async def count(key: str) -> int:
    return await tally.redis.incr(key)


@pytest.mark.nt_engines(tally)
async def test_handlers_write_through_engine_redis(nt_any_bus: TestBus) -> None:
    key = f"{nt_any_bus.client.broker.prefix}:app:count"  # the test's own prefix: cleaned up
    await asyncio.gather(*(count.send(key) for _ in range(20)))
    await nt_any_bus.drain()
    assert sorted(nt_any_bus.results(count)) == list(range(1, 21))
    handle = tally.redis
    assert await handle.get(key) == b"20"
    assert handle.commands == 21 and handle.batches < 21
    await handle.delete(key)
