"""arq: ``arq bench.peers.apps.arq_bench.WorkerSettings`` (``max_jobs = 100``).

Results are not kept (``keep_result = 0``); the worker logs at WARNING through arq's documented
``--custom-log-dict`` (its default logs two INFO lines per job). Producer: ``enqueue_job()``,
100 awaited at a time with ``asyncio.gather`` (arq has no bulk enqueue API).
"""

from __future__ import annotations

from typing import Any

from arq.connections import RedisSettings, create_pool

from .body import AsyncBody, url
from .producer import gather_chunks

_body = AsyncBody()

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler", "level": "WARNING"}},
    "loggers": {"arq": {"handlers": ["stderr"], "level": "WARNING"}},
}


async def work(ctx: dict[str, Any], ts: float = 0.0) -> None:
    await _body(ts)


class WorkerSettings:
    functions = (work,)
    redis_settings = RedisSettings.from_dsn(url())
    max_jobs = 100
    keep_result = 0


class Producer:
    async def __aenter__(self) -> Producer:
        self.redis: Any = await create_pool(RedisSettings.from_dsn(url()))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.redis.aclose()

    async def enqueue(self, count: int) -> None:
        await gather_chunks(lambda: self.redis.enqueue_job("work", 0.0), count)

    async def send(self, ts: float) -> None:
        await self.redis.enqueue_job("work", ts)

    async def finish(self) -> None:
        return None
