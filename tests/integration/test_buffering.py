"""Buffered sending: per-tier batches, one round trip each, failures raised to every caller."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from nautilus_tasks import BusConfig, BusUnavailable, Client, Engine, Priority
from nautilus_tasks.buffer import BufferConfig
from nautilus_tasks.embedded import EmbeddedServer

pytestmark = pytest.mark.integration


def engine() -> Engine:
    e = Engine("buf")

    @e.task
    def job(n: int) -> None: ...

    return e


def spy(client: Client) -> list[int]:
    """Record the size of every pipelined XADD call the buffer makes."""
    calls: list[int] = []
    real = client.broker.enqueue_many

    async def counting(items: Sequence[tuple[str, Priority, bytes]]) -> list[str]:
        calls.append(len(items))
        return await real(items)

    client.broker.enqueue_many = counting  # type: ignore[method-assign]
    return calls


async def test_concurrent_sends_of_a_tier_share_one_round_trip(
    client: Client, raw: aioredis.Redis
) -> None:
    e = engine()
    job = e.tasks["job"]
    client.bind(e)
    calls = spy(client)
    ids = await asyncio.gather(*(job.send(n) for n in range(200)))
    assert len(set(ids)) == 200
    assert await raw.xlen(client.broker.keys("buf").stream(Priority.NORMAL)) == 200
    assert sum(calls) == 200 and len(calls) <= 3, calls  # batched, not 200 round trips
    calls.clear()
    await job.send_with(priority="critical")(1)  # critical flushes at once, alone
    assert calls == [1]


async def test_send_nowait_then_flush_stores_everything(
    client: Client, raw: aioredis.Redis
) -> None:
    e = engine()
    job = e.tasks["job"]
    client.bind(e)
    handles = [job.send_nowait(n) for n in range(300)]
    await client.flush()
    assert len(set(handles)) == 300
    assert await raw.xlen(client.broker.keys("buf").stream(Priority.NORMAL)) == 300


async def test_a_failed_flush_raises_in_every_awaiting_caller(tmp_path: Path) -> None:
    server = EmbeddedServer(tmp_path)
    server.start()
    config = BufferConfig(intervals={p: 0.05 for p in Priority})
    client = await Client.connect(BusConfig.from_url(server.url, prefix="b"), buffering=config)
    e = engine()
    job = e.tasks["job"]
    client.bind(e)
    try:
        await job.send(0)  # the bus works
        await asyncio.to_thread(server.stop)  # then the flushes find the server gone
        sends = [asyncio.create_task(job.send(n)) for n in range(50)]
        nowait = job.send_nowait(99)
        results: list[Any] = await asyncio.gather(*sends, return_exceptions=True)
        assert all(isinstance(r, BusUnavailable) for r in results), results
        with pytest.raises(BusUnavailable):
            await client.flush()  # the send_nowait failure is reported here
        assert isinstance(nowait, str)
    finally:
        await client.broker.close()


async def test_one_flush_for_several_engines_and_tiers_keeps_each_stream_in_order(
    client: Client, raw: aioredis.Redis, prefix: str, redis_url: str
) -> None:
    engines = [Engine("bufa"), Engine("bufb")]
    jobs = []
    for e in engines:

        @e.task(priority=Priority.LOW)
        def job(n: int) -> None: ...

        jobs.append(job)
    client.bind(*engines)
    items = [(e.name, Priority.LOW if n % 3 else Priority.HIGH, b'{"n":%d}' % n) for n in range(40)
             for e in engines]  # fmt: skip
    ids = await client.broker.enqueue_many(items)
    assert len(ids) == len(items)  # stream ids: unique per stream, in the order sent
    for name in ("bufa", "bufb"):
        for tier in (Priority.LOW, Priority.HIGH):
            entries = await raw.xrange(f"{prefix}:{{{name}}}:q:{tier.label}")
            wanted = [
                (i, p) for i, (e, t, p) in zip(ids, items, strict=True) if (e, t) == (name, tier)
            ]
            assert [(k.decode(), f[b"envelope"]) for k, f in entries] == wanted
    # the script is unknown to the server (as after a restart): the batch loads it again
    client.broker._scripts._scripts["enqueue_many"].sha = "0" * 40
    more = await client.broker.enqueue_many(items[:4])
    assert len(more) == 4 and all(more)
    single = await client.broker.enqueue_many(items[:1])
    assert len(single) == 1
