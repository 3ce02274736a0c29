"""nautilus-tasks: engine ``bench``, run by ``nautilus-tasks worker MODULE:engine``.

Producer: ``send_nowait()`` (the buffered send) for every task, yielding to the event loop after
each chunk so the buffer's flushes go out, then ``client.flush()``; latency: ``await send()``.
"""

from __future__ import annotations

import asyncio

from nautilus_tasks import Client, Engine

from .body import AsyncBody, url

engine = Engine("bench")
_body = AsyncBody()


@engine.task()
async def work(ts: float = 0.0) -> None:
    await _body(ts)


class Producer:
    """The producer of this app; ``nt_autopipe_bench`` reuses it with its own engine."""

    engine = engine
    task = work

    async def __aenter__(self) -> Producer:
        self.client = await Client.connect(url())
        self.client.bind(self.engine)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.close()

    async def enqueue(self, count: int) -> None:
        for _ in range(count):
            self.task.send_nowait(0.0)
        await asyncio.sleep(0)

    async def send(self, ts: float) -> None:
        await self.task.send(ts)

    async def finish(self) -> None:
        await self.client.flush()
