"""SAQ: ``saq bench.peers.apps.saq_bench.settings --workers 1 --quiet`` (concurrency 100).

Producer: ``queue.enqueue()``, 100 awaited at a time with ``asyncio.gather`` (SAQ's ``map``
waits for the results, so it is not an enqueue API).
"""

from __future__ import annotations

from typing import Any

from saq import Queue

from .body import AsyncBody, url
from .producer import gather_chunks

_body = AsyncBody()
queue = Queue.from_url(url(), name="bench")


async def work(ctx: dict[str, Any], *, ts: float = 0.0) -> None:
    await _body(ts)


settings = {"queue": queue, "functions": [work], "concurrency": 100}


class Producer:
    async def __aenter__(self) -> Producer:
        await queue.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await queue.disconnect()

    async def enqueue(self, count: int) -> None:
        await gather_chunks(lambda: queue.enqueue("work", ts=0.0), count)

    async def send(self, ts: float) -> None:
        await queue.enqueue("work", ts=ts)

    async def finish(self) -> None:
        return None
