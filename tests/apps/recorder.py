"""A test engine run by real worker processes: it records every execution in Redis.

Keys (under the run's NT_PREFIX): ``P:test:runs`` hash n -> executions,
``P:test:started`` counter. The connection is opened on first use, per process.
"""

from __future__ import annotations

import asyncio
import os

import redis.asyncio as aioredis

from nautilus_tasks import Engine


class _Conn:
    """The recorder's own connection, made lazily in the worker process."""

    redis: aioredis.Redis | None = None

    @classmethod
    def get(cls) -> aioredis.Redis:
        if cls.redis is None:
            cls.redis = aioredis.Redis.from_url(os.environ["NT_REDIS_URL"])
        return cls.redis


def key(name: str) -> str:
    return f"{os.environ['NT_PREFIX']}:test:{name}"


recorder = Engine("recorder")


@recorder.task
async def record(n: int, pause: float = 0.0) -> int:
    """Count a start, take ``pause`` seconds of work, then record the execution."""
    conn = _Conn.get()
    await conn.incr(key("started"))
    if pause:
        await asyncio.sleep(pause)
    await conn.hincrby(key("runs"), str(n), 1)
    return n
