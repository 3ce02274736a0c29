"""The ack and the next read in one script call (``Broker.ack_and_read``), on a real server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis

from nautilus_tasks import Client, Engine, Priority, WorkerConfig
from nautilus_tasks.broker.base import ReadPlan
from tests.helpers import running_worker, wait_for

pytestmark = pytest.mark.integration

NORMAL, CRITICAL = Priority.NORMAL, Priority.CRITICAL


async def _backlog(client: Client, normal: int, critical: int) -> str:
    engine = Engine("ackread")

    @engine.task
    def job(i: int) -> None: ...

    client.bind(engine)
    await client.broker.ensure_groups(engine.name, "a")
    await client.send_many(job, [((i,), {}) for i in range(normal)])
    urgent = job.send_with(priority=CRITICAL)
    for i in range(critical):
        await urgent(i)
    return engine.name


async def _pending(raw: aioredis.Redis, client: Client, engine: str, consumer: str) -> int:
    total = 0
    for tier in (CRITICAL, NORMAL):
        stream = client.broker.keys(engine).stream(tier)
        rows = await raw.xpending_range(stream, engine, "-", "+", 1000, consumername=consumer)
        total += len(rows)
    return total


async def test_acks_then_reads_in_tier_order(client: Client, raw: aioredis.Redis) -> None:
    engine = await _backlog(client, normal=10, critical=0)
    broker = client.broker
    first = await broker.read(engine, "a", 4, (0, 0, 0), block_ms=0)
    await _backlog(client, normal=0, critical=2)  # arrive after the first read
    ids = {NORMAL: [d.entry_id for d in first]}
    taken, gone, got = await broker.ack_and_read(engine, "a", ids, ReadPlan(4, (0, 0, 0), False))
    assert (taken, gone) == ([], [])
    assert got is not None
    assert [d.tier for d in got] == [CRITICAL, CRITICAL, NORMAL, NORMAL]
    assert not {d.entry_id for d in got} & set(ids[NORMAL])
    assert await raw.xlen(broker.keys(engine).stream(NORMAL)) == 6  # the 4 acked are deleted
    assert await _pending(raw, client, engine, "a") == 4  # what it read, nothing more


async def test_refused_acks_still_read(client: Client, raw: aioredis.Redis) -> None:
    engine = await _backlog(client, normal=6, critical=0)
    broker = client.broker
    await broker.ensure_groups(engine, "b")
    theirs = await broker.read(engine, "b", 2, (0, 0, 0), block_ms=0)
    ids = {NORMAL: [d.entry_id for d in theirs]}
    taken, gone, got = await broker.ack_and_read(engine, "a", ids, ReadPlan(3, (0, 0, 0), False))
    assert (taken, gone) == (ids[NORMAL], [])  # another consumer owns them: untouched
    assert got is not None and len(got) == 3
    assert await raw.xlen(broker.keys(engine).stream(NORMAL)) == 6
    assert await _pending(raw, client, engine, "b") == 2


async def test_below_critical_reads_nothing_while_critical_waits(
    client: Client, raw: aioredis.Redis
) -> None:
    engine = await _backlog(client, normal=4, critical=1)
    broker = client.broker
    held = await broker.read_below_critical(engine, "a", 2, (0, 0, 0), block_ms=0)
    assert held is None  # the critical entry waits undelivered: nothing was read
    held = await broker.read(engine, "a", 3, (0, 0, 0), block_ms=0)
    await _backlog(client, normal=0, critical=1)
    ids = {CRITICAL: [held[0].entry_id], NORMAL: [d.entry_id for d in held[1:]]}
    taken, gone, got = await broker.ack_and_read(engine, "a", ids, ReadPlan(3, (0, 0, 0), True))
    assert (taken, gone, got) == ([], [], None)  # acked, then read nothing
    assert await _pending(raw, client, engine, "a") == 0
    assert await raw.xlen(broker.keys(engine).stream(NORMAL)) == 2


async def test_a_full_worker_reads_with_its_acks_and_never_holds_more(
    client: Client, raw: aioredis.Redis
) -> None:
    """A worker drains a backlog, its reads going out with its acks once it is full; after
    each of those calls the server holds no more for it than its capacity."""
    engine = Engine("ackread")
    done: list[int] = []

    @engine.task
    async def job(i: int) -> None:
        done.append(i)

    client.bind(engine)
    await client.send_many(job, [((i,), {}) for i in range(2_000)])
    config = WorkerConfig(concurrency=10, prefetch=5, grace=5)
    broker = client.broker
    held_after: list[int] = []
    ack_and_read = broker.ack_and_read

    async def watched(engine_: str, consumer: str, *args: Any) -> Any:
        out = await ack_and_read(engine_, consumer, *args)
        held_after.append(await _pending(raw, client, engine_, consumer))
        return out

    broker.ack_and_read = watched  # type: ignore[method-assign]
    async with running_worker(engine, client, config):
        await wait_for(lambda: len(done) == 2_000)
    assert sorted(done) == list(range(2_000))
    assert len(held_after) > 10  # the reads rode with the acks
    assert max(held_after) <= config.capacity
    assert await raw.xlen(broker.keys(engine.name).stream(NORMAL)) == 0


async def test_while_critical_messages_arrive_a_full_worker_acks_and_reads_apart(
    client: Client,
) -> None:
    """Every place held by slow LOW handlers; a CRITICAL message is taken in by the
    blocking read. The ack that then frees the places goes alone (the read follows in its
    own call), so the blocking read is not held back behind a longer script."""
    engine = Engine("ackread")
    go = asyncio.Event()
    calls: list[str] = []

    @engine.task(priority=Priority.LOW)
    async def job(i: int) -> None:
        await go.wait()  # the task's own work, released by the test

    @engine.task(priority=CRITICAL)
    async def urgent() -> None: ...

    client.bind(engine)
    await client.send_many(job, [((i,), {}) for i in range(20)])
    broker = client.broker
    for name in ("ack", "ack_and_read"):
        method = getattr(broker, name)

        async def watched(*args: Any, _method: Any = method, _name: str = name) -> Any:
            calls.append(_name)
            return await _method(*args)

        setattr(broker, name, watched)
    config = WorkerConfig(concurrency=2, prefetch=2, low_share=0, grace=5)
    async with running_worker(engine, client, config) as worker:
        await wait_for(lambda: worker.fetcher.held == config.capacity)
        await urgent.send()
        await wait_for(lambda: worker.fetcher.held == config.capacity + 1)
        assert calls == []  # nothing finished yet
        go.set()
        await wait_for(lambda: len(calls) > 0)
    assert calls[0] == "ack"
