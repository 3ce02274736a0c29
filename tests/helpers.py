"""Test helpers: an in-process worker, and polling with a deadline (never a bare sleep)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from nautilus_tasks import Client, Engine, WorkerConfig
from nautilus_tasks.worker import Worker


async def wait_for(
    condition: Callable[[], Awaitable[bool] | bool], timeout: float = 20.0, interval: float = 0.02
) -> None:
    """Poll ``condition`` until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


@asynccontextmanager
async def running_worker(
    engine: Engine, client: Client, config: WorkerConfig | None = None, audit: Any = None
) -> AsyncIterator[Worker]:
    """A worker of ``engine`` running in this event loop until the block ends (with
    ``audit``, a StoreConfig: its audit writer too, flushed when the block ends)."""
    config = config or WorkerConfig(concurrency=10, grace=5)
    worker = Worker(engine, client.broker, config, audit=audit)
    task = asyncio.create_task(worker.run())
    started = asyncio.create_task(worker.started.wait())
    done, _ = await asyncio.wait({task, started}, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        started.cancel()
        task.result()
    try:
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)
