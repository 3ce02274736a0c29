"""A sync handler still in its thread after the grace period is not handed back."""

from __future__ import annotations

import asyncio
import threading

import pytest
import redis.asyncio as aioredis

from nautilus_tasks import Client, Engine, WorkerConfig
from nautilus_tasks.worker import Worker
from tests.helpers import wait_for

pytestmark = pytest.mark.integration


async def test_sync_handler_past_grace_stays_pending_not_requeued(
    client: Client, raw: aioredis.Redis
) -> None:
    engine = Engine("slowsync")
    entered = threading.Event()
    release = threading.Event()
    runs: list[int] = []

    @engine.task
    def block(n: int) -> None:
        runs.append(n)
        entered.set()
        release.wait(30)

    client.bind(engine)
    await block.send(1)
    await block.send(2)  # prefetched behind it (concurrency 1): handed back
    worker = Worker(engine, client.broker, WorkerConfig(concurrency=1, prefetch=1, grace=0.1))
    task = asyncio.create_task(worker.run())
    await wait_for(entered.is_set)
    worker.stop()
    stream = client.broker.keys("slowsync").streams[2]

    async def handed_back() -> bool:
        pending = await raw.xpending(stream, "slowsync")
        return int(await raw.xlen(stream)) == 2 and int(pending["pending"]) == 1

    await wait_for(handed_back)  # message 2 back in the stream, message 1 still pending
    release.set()
    await asyncio.wait_for(task, 30)
    assert runs == [1]
