"""A server out of memory (acceptance test 12, continued from test_backpressure.py).

On a server at ``maxmemory`` with ``noeviction`` a send fails with a clear error
(``BusFull``, a bulk send writing nothing) while workers keep draining (the read, ack and
reclaim scripts are flagged allow-oom); a worker warns at start when the eviction policy is
anything but ``noeviction``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from nautilus_tasks import (
    BusConfig,
    BusError,
    BusFull,
    Client,
    Priority,
    Task,
    WorkerConfig,
)
from nautilus_tasks.embedded import EmbeddedServer
from tests.apps.gated import FILL_LIMIT, FILL_PAYLOAD, QUIET, _gated_engine, _job
from tests.helpers import running_worker, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.own_server]


@pytest.fixture
async def full_server(tmp_path: Path) -> AsyncIterator[EmbeddedServer]:
    """A server of our own with a small maxmemory and noeviction."""
    server = EmbeddedServer(
        tmp_path / "valkey", extra_args=["--maxmemory", "4mb", "--maxmemory-policy", "noeviction"]
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def _fill(job: Task[..., None], sent: set[int]) -> BusError:
    """Send until the server refuses; the acknowledged sends go into ``sent``."""
    for n in range(FILL_LIMIT):
        try:
            await job.send(n, FILL_PAYLOAD)
        except BusError as exc:
            return exc
        sent.add(n)
    raise AssertionError(f"{FILL_LIMIT} sends of {len(FILL_PAYLOAD)} bytes and not full")


async def test_send_to_a_full_server_raises_bus_full(full_server: EmbeddedServer) -> None:
    engine = _gated_engine("full", asyncio.Event(), [])
    async with await Client.connect(BusConfig.from_url(full_server.url, prefix="p")) as client:
        client.bind(engine)
        exc = await _fill(_job(engine), set())
    assert isinstance(exc, BusFull), f"{type(exc).__name__}: {exc}"


async def test_bulk_send_to_a_full_server_raises_bus_full_and_writes_nothing(
    full_server: EmbeddedServer,
) -> None:
    plain = _gated_engine("full", asyncio.Event(), [])
    bounded = _gated_engine("fullbounded", asyncio.Event(), [], max_backlog=FILL_LIMIT)
    raw = aioredis.Redis.from_url(full_server.url)
    try:
        async with await Client.connect(BusConfig.from_url(full_server.url, prefix="p")) as client:
            client.bind(plain, bounded)
            stream = client.broker.keys("full").stream(Priority.NORMAL)
            sent: set[int] = set()
            await _fill(_job(plain), sent)
            assert int(await raw.xlen(stream)) == len(sent)
            small = [((n, "small"), {}) for n in range(10)]
            with pytest.raises(BusFull):
                await client.send_many(_job(plain), small)
            with pytest.raises(BusFull):
                await client.send_many(_job(bounded), small)
            assert int(await raw.xlen(stream)) == len(sent), "no partial bulk write"
            bstream = client.broker.keys("fullbounded").stream(Priority.NORMAL)
            assert int(await raw.xlen(bstream)) == 0
    finally:
        await raw.aclose()


async def test_running_worker_keeps_draining_a_full_server(full_server: EmbeddedServer) -> None:
    gate = asyncio.Event()
    ran: list[int] = []
    engine = _gated_engine("full", gate, ran)
    job = _job(engine)
    sent: set[int] = set()
    raw = aioredis.Redis.from_url(full_server.url)
    config = WorkerConfig(concurrency=5, prefetch=0, grace=5, **QUIET)
    try:
        async with await Client.connect(BusConfig.from_url(full_server.url, prefix="p")) as client:
            client.bind(engine)
            stream = client.broker.keys("full").stream(Priority.NORMAL)
            async with running_worker(engine, client, config):
                await _fill(job, sent)  # the worker holds 5, stuck at the gate
                length = int(await raw.xlen(stream))
                assert length == len(sent) > 100
                gate.set()  # now it reads and acks on a server out of memory
                await wait_for(lambda: set(ran) >= sent, 60)
                await wait_for(lambda: _xlen_is(raw, stream, 0), 10)
                assert len(ran) == len(sent), "nothing ran twice"
                # the server has room again: sending works
                await job.send(-1, "small")
                await wait_for(lambda: -1 in ran, 10)
    finally:
        await raw.aclose()


async def _xlen_is(raw: aioredis.Redis, stream: str, n: int) -> bool:
    return int(await raw.xlen(stream)) == n


async def test_worker_started_on_a_full_server_drains_it(full_server: EmbeddedServer) -> None:
    gate = asyncio.Event()
    gate.set()
    ran: list[int] = []
    engine = _gated_engine("full", gate, ran)
    job = _job(engine)
    sent: set[int] = set()
    raw = aioredis.Redis.from_url(full_server.url)
    try:
        async with await Client.connect(BusConfig.from_url(full_server.url, prefix="p")) as client:
            client.bind(engine)
            stream = client.broker.keys("full").stream(Priority.NORMAL)
            await client.broker.ensure_groups("full")  # a worker ran here before
            await _fill(job, sent)
            full = int(await raw.xlen(stream))
            assert full == len(sent) > 100
            async with running_worker(engine, client, WorkerConfig(grace=5, **QUIET)):
                await wait_for(lambda: _xlen_below(raw, stream, full), 10)
                await wait_for(lambda: set(ran) >= sent, 60)
                await wait_for(lambda: _xlen_is(raw, stream, 0), 10)
    finally:
        await raw.aclose()
    assert len(ran) == len(sent)


async def _xlen_below(raw: aioredis.Redis, stream: str, n: int) -> bool:
    return int(await raw.xlen(stream)) < n


@pytest.mark.parametrize(("policy", "warned"), [("allkeys-lru", True), ("noeviction", False)])
async def test_worker_warns_unless_noeviction(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, policy: str, warned: bool
) -> None:
    server = EmbeddedServer(tmp_path / "valkey", extra_args=["--maxmemory-policy", policy])
    server.start()
    try:
        engine = _gated_engine("evicting", asyncio.Event(), [])
        async with await Client.connect(BusConfig.from_url(server.url, prefix="p")) as client:
            with caplog.at_level(logging.WARNING, logger="nautilus_tasks"):
                async with running_worker(engine, client, WorkerConfig(grace=5, **QUIET)):
                    pass
    finally:
        server.stop()
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "maxmemory-policy" in r.getMessage()
    ]
    if warned:
        [message] = warnings
        assert repr(policy) in message and "noeviction" in message
    else:
        assert warnings == []
