"""Dead-letter retention, run by a worker: by count and by age, set per engine
(``Engine(dead_retention=...)``) or by the worker (``WorkerConfig.dead_max_len`` /
``dead_max_age``); every removal counted as ``dead_trimmed`` and logged."""

from __future__ import annotations

import logging

import pytest
import redis.asyncio as aioredis

from nautilus_tasks import Client, DeadRetention, Engine, WorkerConfig
from tests.helpers import running_worker, wait_for

pytestmark = pytest.mark.integration

FAST_TRIM = {"trim_interval": 0.05, "grace": 5}


def _engine(name: str, retention: DeadRetention | None) -> Engine:
    engine = Engine(name, dead_retention=retention)

    @engine.task(retries=0)
    async def fails(n: int) -> None:
        raise RuntimeError(f"no {n}")

    return engine


async def _dead_letters(client: Client, raw: aioredis.Redis, engine: Engine, n: int) -> None:
    """``n`` dead letters of ``engine``, made by a worker that does not trim."""
    client.bind(engine)
    fails = engine.tasks["fails"]
    for i in range(n):
        await fails.send(i)
    keep = WorkerConfig(dead_max_len=None, dead_max_age=None, grace=5)
    dead = client.broker.keys(engine.name).dead
    async with running_worker(engine, client, keep):
        await wait_for(lambda: _xlen_is(raw, dead, n), 30)


async def _xlen_is(raw: aioredis.Redis, key: str, n: int) -> bool:
    return int(await raw.xlen(key)) == n


async def test_the_engines_retention_by_count_wins_over_the_workers(
    client: Client, raw: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    engine = _engine("keeps3", DeadRetention(max_len=3, max_age=None))
    await _dead_letters(client, raw, engine, 5)
    dead = client.broker.keys(engine.name).dead
    newest = [i for i, _ in await raw.xrange(dead)][-3:]
    # the worker's own setting (1) is not the engine's (3): the engine's applies
    config = WorkerConfig(dead_max_len=1, dead_max_age=None, **FAST_TRIM)
    with caplog.at_level(logging.INFO, logger="nautilus_tasks"):
        async with running_worker(engine, client, config) as worker:
            await wait_for(lambda: worker.stats.counts["dead_trimmed"] == 2, 30)
            assert [i for i, _ in await raw.xrange(dead)] == newest
    assert worker.stats.counts["dead_trimmed"] == 2  # nothing more once within the limit
    logged = [r.getMessage() for r in caplog.records]
    assert "retention removed 2 dead letters of keeps3" in logged


async def test_the_workers_retention_by_age_applies_without_a_declared_one(
    client: Client, raw: aioredis.Redis
) -> None:
    engine = _engine("ages", None)
    await _dead_letters(client, raw, engine, 4)
    dead = client.broker.keys(engine.name).dead
    config = WorkerConfig(dead_max_len=None, dead_max_age=0.5, **FAST_TRIM)
    async with running_worker(engine, client, config) as worker:
        # each dead letter goes once it is half a second old by Redis TIME
        await wait_for(lambda: worker.stats.counts["dead_trimmed"] == 4, 30)
        assert await raw.xlen(dead) == 0


def test_a_declared_retention_wins_and_the_worker_gives_the_default() -> None:
    config = WorkerConfig(dead_max_len=7, dead_max_age=None)
    assert config.retention(None) == DeadRetention(max_len=7, max_age=None)
    declared = DeadRetention(max_len=None, max_age=60.0)
    assert config.retention(declared) is declared
    assert DeadRetention() == DeadRetention(max_len=100_000, max_age=7 * 86400.0)
