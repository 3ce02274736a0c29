"""streaq: ``streaq run bench.peers.apps.streaq_bench:worker`` (``Worker(concurrency=100)``).

The task is ``silent`` (no log line per task) and keeps no result (``ttl=0``). Producer:
``worker.enqueue_many()`` (bulk, one pipeline per call); latency: ``await task.enqueue(ts)``.
"""

from __future__ import annotations

from typing import Any

from streaq import Worker

from .body import AsyncBody, url

_body = AsyncBody()
worker: Any = Worker(redis_url=url(), concurrency=100)


@worker.task(silent=True, ttl=0)
async def work(ts: float = 0.0) -> None:
    await _body(ts)


class Producer:
    async def __aenter__(self) -> Producer:
        await worker.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await worker.__aexit__(*exc)

    async def enqueue(self, count: int) -> None:
        await worker.enqueue_many([work.enqueue(0.0) for _ in range(count)])

    async def send(self, ts: float) -> None:
        await work.enqueue(ts)

    async def finish(self) -> None:
        return None
