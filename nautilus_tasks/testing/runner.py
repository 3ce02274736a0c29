"""One engine on one bus inside a test: the worker's own parts, driven by polling.

An ``EngineRunner`` is a real ``Worker`` (its fetcher, prefetch queue, ack batcher, lease
table) with the real ``Executor``: delivery, validation, retries, dead letters, replies
and callbacks run the production code. Only the loop differs: instead of the worker's
blocking read, the test bus calls ``poll()`` (promote due delayed messages, then one
non-blocking priority read) until everything is done.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..aio import cancel_all
from ..broker.redis import RedisBroker
from ..config import WorkerConfig
from ..context import current_message
from ..engine import Engine
from ..message import Envelope
from ..task import Task
from ..worker import Worker
from ..worker.executor import Executor
from ..worker.maintenance import PROMOTE_BATCH
from .recording import HandlerError, Journal, Outcome

DEFAULT_CONFIG = WorkerConfig(concurrency=10, prefetch=10, ack_interval=0, sync_threads=4)
"""Workers of the test bus: 10 handlers at once per engine, acks sent at once."""


class RecordingExecutor(Executor):
    """The worker's executor, also recording each handler's result or exception."""

    journal: Journal

    async def _call(self, task: Task[Any, Any], kwargs: dict[str, Any], entry_id: str) -> Any:
        result = await super()._call(task, kwargs, entry_id)
        context = current_message()
        if context is not None:
            self.journal.outcomes.append(Outcome(task.qualified_name, context.envelope, result))
        return result

    async def _failed(
        self,
        task: Task[Any, Any],
        delivery: Any,
        envelope: Envelope,
        exc: BaseException,
    ) -> None:
        self.journal.errors.append(HandlerError(task.qualified_name, envelope, exc))
        await super()._failed(task, delivery, envelope, exc)


class EngineRunner:
    """Runs ``engine``'s tasks and event handlers from ``broker`` when polled."""

    def __init__(
        self,
        engine: Engine,
        broker: RedisBroker,
        patterns: list[str],
        journal: Journal,
        config: WorkerConfig = DEFAULT_CONFIG,
    ) -> None:
        consumer = f"test-{engine.name}-{os.urandom(3).hex()}"
        self.worker = worker = Worker(engine, broker, config, consumer, patterns)
        self.threads = ThreadPoolExecutor(config.sync_threads, f"nt-test-{engine.name}")
        self.executor = RecordingExecutor(
            engine, broker, consumer, worker.acks, worker.stats, self.threads,
            worker._finished, worker.publisher,
        )  # fmt: skip
        self.executor.journal = journal
        self._tasks: list[asyncio.Task[Any]] = []

    @property
    def engine(self) -> Engine:
        return self.worker.engine

    @property
    def idle(self) -> bool:
        """Nothing queued, running, or waiting for its ack."""
        return self.worker.fetcher.held <= 0

    @property
    def held(self) -> int:
        return self.worker.fetcher.held

    async def start(self) -> None:
        """Create the groups, register the subscriptions, start the handler slots."""
        worker = self.worker
        await worker.broker.ensure_groups(self.engine.name, worker.consumer)
        await worker.broker.register_subscriptions(self.engine.name, worker.patterns)
        self._tasks.append(asyncio.create_task(worker.acks.run()))
        for _ in range(worker.config.concurrency):
            self._tasks.append(asyncio.create_task(worker._slot(self.executor)))

    async def poll(self) -> int:
        """Promote due delayed messages, then take what the inbox holds (never blocks).
        Returns how many messages moved."""
        moved, _ = await self.worker.broker.promote_due(self.engine.name, PROMOTE_BATCH)
        return moved + await self.worker.fetcher.poll()

    async def stop(self) -> None:
        """Stop the slots and the ack batcher; hand back what was fetched and not run."""
        worker = self.worker
        worker.fetcher.stop()
        for _ in worker.queue.drain():
            worker.fetcher.release()
        await cancel_all(self._tasks[1:])  # the slots; the ack batcher sends what they ended
        await worker.acks.flush(5.0)
        await cancel_all(self._tasks[:1])
        await worker._hand_back(set(self.executor.in_threads))
        await asyncio.get_running_loop().run_in_executor(None, self.threads.shutdown)
