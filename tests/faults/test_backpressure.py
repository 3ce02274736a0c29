"""Backpressure: max_backlog, MessageTooLarge and a server out of memory (acceptance test 12).

- ``Engine(name, max_backlog=N)``: a send beyond N raises BacklogFull and writes nothing;
  with ``send_with(backlog_wait=...)`` it waits for a worker to make room. A bulk send
  (``client.send_many``) is all or nothing: stored whole if it fits, else nothing, and with
  ``backlog_wait`` it waits until the whole batch fits.
- A payload over ``BusConfig.max_message_bytes`` raises MessageTooLarge before any
  write: nothing partial is stored (a bulk send with one too large stores none of its
  messages), and no command is even tried.
- A server out of memory: ``test_full_server.py``.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from nautilus_tasks import (
    BacklogFull,
    BusConfig,
    BusUnavailable,
    Client,
    ConfigurationError,
    Engine,
    MessageTooLarge,
    Priority,
    Task,
    WorkerConfig,
)
from nautilus_tasks.embedded import EmbeddedServer
from tests.apps.gated import QUIET, _gated_engine, _job
from tests.helpers import running_worker, wait_for

pytestmark = pytest.mark.integration

BACKLOG = 50
MAX_BYTES = 1024


async def _pending(client: Client, engine: str) -> int:
    info = await client.broker.inspect(engine)
    return sum(t.pending for t in info.tiers)


# -- max_backlog ------------------------------------------------------------------------


@dataclass
class Bounded:
    """The ``bounded`` engine (``max_backlog=BACKLOG``), bound to the test's client: its
    task waits for ``gate``, then records its argument in ``ran``."""

    gate: asyncio.Event
    ran: list[int]
    engine: Engine
    job: Task[..., None]
    normal: str
    """Its normal tier stream."""


@pytest.fixture
def bounded(client: Client) -> Bounded:
    gate, ran = asyncio.Event(), list[int]()
    engine = _gated_engine("bounded", gate, ran, max_backlog=BACKLOG)
    client.bind(engine)
    normal = client.broker.keys("bounded").stream(Priority.NORMAL)
    return Bounded(gate, ran, engine, _job(engine), normal)


async def test_sends_beyond_max_backlog_raise_and_write_nothing(
    client: Client, raw: aioredis.Redis, bounded: Bounded
) -> None:
    job, normal = bounded.job, bounded.normal
    keys = client.broker.keys("bounded")
    for n in range(BACKLOG):
        await job.send(n)
    assert await raw.xlen(normal) == BACKLOG
    before = await raw.xrange(normal)
    for n in range(BACKLOG, BACKLOG + 10):
        with pytest.raises(BacklogFull):
            await job.send(n)
    with pytest.raises(BacklogFull):
        await client.send_many(job, [((n,), {}) for n in range(100, 110)])
    with pytest.raises(BacklogFull):  # waiting with no worker to drain: still refused
        await job.send_with(backlog_wait=0.2)(999)
    assert await raw.xrange(normal) == before, "nothing was written, nothing was dropped"
    # the bound is per tier stream: another tier of the same engine still has room
    await job.send_with(priority="high")(200)
    assert await raw.xlen(keys.stream(Priority.HIGH)) == 1
    assert await raw.xlen(normal) == BACKLOG


async def test_backlog_wait_send_succeeds_once_a_worker_drains(
    client: Client, raw: aioredis.Redis, bounded: Bounded
) -> None:
    job, normal = bounded.job, bounded.normal
    for n in range(BACKLOG):
        await job.send(n)
    config = WorkerConfig(concurrency=5, prefetch=0, grace=5, **QUIET)
    async with running_worker(bounded.engine, client, config):
        # the worker holds 5 entries, its handlers stuck at the gate; held entries stay in
        # the stream until acked, so the inbox is still full
        await wait_for(lambda: _pending_is(client, "bounded", 5), 10)
        with pytest.raises(BacklogFull):
            await job.send_with(backlog_wait=0.2)(998)
        waiting = asyncio.create_task(job.send_with(backlog_wait=30)(BACKLOG))
        # a negative observation: over half a second the send neither fails nor succeeds
        done, _ = await asyncio.wait({waiting}, timeout=0.5)
        assert not done, "the send waits for room"
        assert await raw.xlen(normal) == BACKLOG
        bounded.gate.set()
        await asyncio.wait_for(waiting, 30)
        await wait_for(lambda: len(bounded.ran) >= BACKLOG + 1, 30)
    assert sorted(bounded.ran) == list(range(BACKLOG + 1)), "each acknowledged send ran once"
    assert await raw.xlen(normal) == 0


async def _pending_is(client: Client, engine: str, n: int) -> bool:
    return await _pending(client, engine) == n


async def _args_in(raw: aioredis.Redis, stream: str) -> list[int]:
    """The first argument of every message in ``stream``, in stream order."""
    return [json.loads(f[b"envelope"])["body"]["args"][0] for _, f in await raw.xrange(stream)]


async def test_bulk_send_is_stored_whole_or_not_at_all(
    client: Client, raw: aioredis.Redis, bounded: Bounded
) -> None:
    job, normal = bounded.job, bounded.normal
    await client.send_many(job, [((n,), {}) for n in range(45)])  # fits: all written
    assert await _args_in(raw, normal) == list(range(45))
    before = await raw.xrange(normal)
    with pytest.raises(BacklogFull):  # 45 + 10 > 50: none of the 10, though 5 would fit
        await client.send_many(job, [((n,), {}) for n in range(100, 110)])
    with pytest.raises(BacklogFull):  # waiting with no worker to drain: still refused
        await client.send_many(job, [((n,), {}) for n in range(200, 210)], backlog_wait=0.2)
    assert await raw.xrange(normal) == before, "nothing was written, nothing was dropped"
    ids = await client.send_many(job, [((n,), {}) for n in range(45, 50)])  # 45 + 5 = 50 fits
    assert await _args_in(raw, normal) == list(range(50))
    stored = [json.loads(f[b"envelope"])["id"] for _, f in await raw.xrange(normal)]
    assert stored[45:] == ids, "the ids returned are those stored, in order"
    with pytest.raises(BacklogFull):
        await client.send_many(job, [((50,), {})])
    assert await raw.xlen(normal) == BACKLOG


async def test_bulk_send_larger_than_max_backlog_raises_without_waiting(
    client: Client, raw: aioredis.Redis, bounded: Bounded
) -> None:
    calls = [((n,), {}) for n in range(BACKLOG + 1)]
    with pytest.raises(BacklogFull, match="never fit"):  # the empty inbox cannot hold 51
        await client.send_many(bounded.job, calls, backlog_wait=300)
    assert await raw.xlen(bounded.normal) == 0


async def test_bulk_send_waits_until_the_whole_batch_fits(
    client: Client, raw: aioredis.Redis, bounded: Bounded
) -> None:
    job, normal = bounded.job, bounded.normal
    await client.send_many(job, [((n,), {}) for n in range(45)])
    config = WorkerConfig(concurrency=5, prefetch=0, grace=5, **QUIET)
    async with running_worker(bounded.engine, client, config):
        await wait_for(lambda: _pending_is(client, "bounded", 5), 10)
        batch = [((n,), {}) for n in range(45, 55)]
        waiting = asyncio.create_task(client.send_many(job, batch, backlog_wait=30))
        # a negative observation: over half a second the bulk send neither fails nor
        # succeeds, and writes none of its messages although 5 of them would fit
        done, _ = await asyncio.wait({waiting}, timeout=0.5)
        assert not done, "the bulk send waits for room for all of it"
        assert await raw.xlen(normal) == 45
        bounded.gate.set()
        ids = await asyncio.wait_for(waiting, 30)
        assert len(ids) == 10
        await wait_for(lambda: len(bounded.ran) >= 55, 30)
    assert sorted(bounded.ran) == list(range(55)), "each acknowledged send ran once"


async def test_send_nowait_is_refused_on_a_bounded_engine(
    client: Client, raw: aioredis.Redis, bounded: Bounded
) -> None:
    """The buffered path cannot check the bound, so it refuses the engine and buffers nothing."""
    with pytest.raises(ConfigurationError, match="max_backlog"):
        bounded.job.send_nowait(1)
    await client.flush()
    assert await raw.xlen(bounded.normal) == 0


# -- MessageTooLarge --------------------------------------------------------------------


async def test_message_too_large_is_refused_before_any_write(
    redis_url: str, prefix: str, raw: aioredis.Redis
) -> None:
    bus = BusConfig.from_url(redis_url, prefix=prefix, max_message_bytes=MAX_BYTES)
    ran: list[int] = []
    gate = asyncio.Event()
    plain = _gated_engine("sized", gate, ran)
    bounded = _gated_engine("sizedbounded", gate, ran, max_backlog=BACKLOG)
    async with await Client.connect(bus, source="tests") as client:
        client.bind(plain, bounded)
        job, bjob = _job(plain), _job(bounded)
        await job.send(1, "x" * 100)  # fits
        big = "x" * (MAX_BYTES + 1)
        with pytest.raises(MessageTooLarge):
            await job.send(2, big)
        with pytest.raises(MessageTooLarge):
            await job.send_with(countdown=1.0)(3, big)
        with pytest.raises(MessageTooLarge):
            await job.send_with(priority="critical", ttl=5.0)(4, big)
        with pytest.raises(MessageTooLarge):  # a bulk send with one too large: none written
            await client.send_many(
                job, [((n, "small"), {}) for n in range(10, 20)] + [((5, big), {})]
            )
        with pytest.raises(MessageTooLarge):
            await bjob.send(6, big)
        with pytest.raises(MessageTooLarge):  # the same on an engine with max_backlog
            await client.send_many(
                bjob, [((n, "small"), {}) for n in range(30, 40)] + [((7, big), {})]
            )
    keys = [k.decode() async for k in raw.scan_iter(match=f"{prefix}:*", count=1000)]
    assert keys == [f"{prefix}:{{sized}}:q:normal"], "the one small send, nothing else"
    [(_, fields)] = await raw.xrange(keys[0])
    assert b'"args":[1,' in fields[b"envelope"]


async def test_message_too_large_never_reaches_the_bus(tmp_path: Path) -> None:
    """Refused before any I/O: with the server gone a small send fails as unreachable,
    while a large one still raises MessageTooLarge."""
    ran: list[int] = []
    engine = _gated_engine("sized", asyncio.Event(), ran)
    server = EmbeddedServer(tmp_path / "valkey")
    server.start()
    try:
        bus = BusConfig.from_url(server.url, prefix="p", max_message_bytes=MAX_BYTES)
        client = await Client.connect(bus)
    finally:
        server.stop()
    async with client:
        client.bind(engine)
        job = _job(engine)
        with pytest.raises(BusUnavailable):
            await job.send(1, "small")
        with pytest.raises(MessageTooLarge):
            await job.send(2, "x" * (MAX_BYTES + 1))
        with pytest.raises(MessageTooLarge):
            await client.send_many(job, [((3, "small"), {}), ((4, "x" * (MAX_BYTES + 1)), {})])


# -- a server out of memory -------------------------------------------------------------
