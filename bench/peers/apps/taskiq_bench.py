"""taskiq-redis: ``taskiq worker bench.peers.apps.taskiq_bench:broker --workers 1
--max-async-tasks 100 --log-level WARNING``.

``RedisStreamBroker`` (streams and a consumer group), reading from id 0 so that tasks sent
before the worker starts are seen. Producer: ``task.kiq()``, 100 awaited at a time with
``asyncio.gather`` (taskiq has no bulk enqueue API).
"""

from __future__ import annotations

from taskiq_redis import RedisStreamBroker

from .body import AsyncBody, url
from .producer import gather_chunks

_body = AsyncBody()
broker = RedisStreamBroker(url=url(), queue_name="bench", consumer_id="0")


@broker.task(task_name="bench.work")
async def work(ts: float = 0.0) -> None:
    await _body(ts)


class Producer:
    async def __aenter__(self) -> Producer:
        await broker.startup()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await broker.shutdown()

    async def enqueue(self, count: int) -> None:
        await gather_chunks(lambda: work.kiq(0.0), count)

    async def send(self, ts: float) -> None:
        await work.kiq(ts)

    async def finish(self) -> None:
        return None
