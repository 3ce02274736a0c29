"""Buffered sending: per-tier batches, one round trip each, failures raised to every caller."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from nautilus_tasks import BusConfig, BusUnavailable, Client, Engine, Priority
from nautilus_tasks.buffer import DEFAULT_INTERVALS, DEFAULT_MAX_BATCH, BufferConfig
from nautilus_tasks.embedded import EmbeddedServer
from tests.helpers import wait_for

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


def test_the_default_intervals_and_batch_sizes_per_tier() -> None:
    config = BufferConfig()
    assert config.intervals == {
        Priority.CRITICAL: 0.0,
        Priority.HIGH: 0.001,
        Priority.NORMAL: 0.005,
        Priority.LOW: 0.020,
    }
    assert [config.batch_limit(t) for t in Priority] == [DEFAULT_MAX_BATCH] * 4 == [500] * 4
    per_tier = BufferConfig(max_batch={Priority.LOW: 50})
    assert per_tier.batch_limit(Priority.LOW) == 50
    assert per_tier.batch_limit(Priority.HIGH) == DEFAULT_MAX_BATCH
    assert BufferConfig(max_batch=7).batch_limit(Priority.CRITICAL) == 7


class Gated:
    """A spy on the buffer's pipelined XADD calls that holds the first call of each tier
    until ``release`` is set: a flush stays in flight as long as the test wants. Leaving
    the ``with`` block releases them all (so a failed test does not hang on close)."""

    def __init__(self, client: Client) -> None:
        self.calls: list[tuple[str, int]] = []  # (tier of the batch, its size)
        self.holding = asyncio.Event()
        self.release = asyncio.Event()
        real = client.broker.enqueue_many

        async def gated(items: Sequence[tuple[str, Priority, bytes]]) -> list[str]:
            tier = items[0][1].label
            first = all(t != tier for t, _ in self.calls)
            self.calls.append((tier, len(items)))
            if first:
                self.holding.set()
                await self.release.wait()
            return await real(items)

        client.broker.enqueue_many = gated  # type: ignore[method-assign]

    def __enter__(self) -> Gated:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()


async def test_a_critical_send_goes_at_once_while_a_low_one_waits_for_its_batch(
    bus: BusConfig, raw: aioredis.Redis
) -> None:
    e = engine()
    job = e.tasks["job"]
    # the default CRITICAL interval; LOW gathers for up to 60 s behind a flush in flight
    config = BufferConfig(intervals={**DEFAULT_INTERVALS, Priority.LOW: 60.0})
    async with await Client.connect(bus, buffering=config) as client:
        client.bind(e)
        with Gated(client) as gate:
            keys = client.broker.keys("buf")
            critical, low = job.send_with(priority="critical"), job.send_with(priority="low")
            held = asyncio.create_task(critical(0))  # a CRITICAL flush in flight...
            await gate.holding.wait()
            second = asyncio.create_task(critical(1))
            await wait_for(second.done)  # ...does not hold the next CRITICAL send back
            assert await raw.xlen(keys.stream(Priority.CRITICAL)) == 1
            first = asyncio.create_task(low(0))  # an idle tier flushes at once...
            await wait_for(lambda: len(gate.calls) == 3)  # ...and stays in flight
            waiting = [asyncio.create_task(low(n)) for n in range(1, 6)]
            await critical(2)  # stored in a call of its own, while the LOW sends wait
            assert gate.calls == [("critical", 1), ("critical", 1), ("low", 1), ("critical", 1)]
            assert not any(t.done() for t in [held, first, *waiting])
            assert await raw.xlen(keys.stream(Priority.LOW)) == 0
            gate.release.set()  # the flushes return: the gathered LOW batch goes, in one call
            await asyncio.gather(held, first, *waiting)
            assert gate.calls[4:] == [("low", 5)]
            assert await raw.xlen(keys.stream(Priority.LOW)) == 6
            assert await raw.xlen(keys.stream(Priority.CRITICAL)) == 3


async def test_max_batch_splits_the_waiting_sends(bus: BusConfig, raw: aioredis.Redis) -> None:
    e = engine()
    job = e.tasks["job"]
    config = BufferConfig(intervals={Priority.NORMAL: 60.0}, max_batch={Priority.NORMAL: 10})
    async with await Client.connect(bus, buffering=config) as client:
        client.bind(e)
        with Gated(client) as gate:
            first = asyncio.create_task(job.send(0))
            await gate.holding.wait()  # a flush in flight: the next sends gather
            rest = [asyncio.create_task(job.send(n)) for n in range(1, 25)]
            await wait_for(lambda: sum(n for _, n in gate.calls) == 21)  # two full batches went
            gate.release.set()
            await asyncio.gather(first, *rest)
            sizes = [n for _, n in gate.calls]
            assert sizes == [1, 10, 10, 4], sizes  # each full batch at once, the rest after
            assert await raw.xlen(client.broker.keys("buf").stream(Priority.NORMAL)) == 25
            handles = [job.send_nowait(n) for n in range(25)]  # flush() splits as well
            await client.flush()
            assert len(handles) == 25 and max(n for _, n in gate.calls[4:]) <= 10
            assert await raw.xlen(client.broker.keys("buf").stream(Priority.NORMAL)) == 50


async def test_closing_the_client_stores_what_send_nowait_buffered(
    bus: BusConfig, raw: aioredis.Redis
) -> None:
    e = engine()
    job = e.tasks["job"]
    config = BufferConfig(intervals={p: 60.0 for p in Priority})
    client = await Client.connect(bus, buffering=config)
    client.bind(e)
    with Gated(client) as gate:
        handles = [job.send_nowait(n) for n in range(120)]  # the first goes, the rest wait
        await gate.holding.wait()
        closing = asyncio.create_task(client.close())  # no flush(): closing flushes...
        await wait_for(lambda: gate.calls == [("normal", 1), ("normal", 119)])  # ...the rest now
        gate.release.set()
        await closing  # and waits for every flush
        assert len(set(handles)) == 120
        assert await raw.xlen(client.broker.keys("buf").stream(Priority.NORMAL)) == 120


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
