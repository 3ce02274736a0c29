"""A test engine with a poison task, run by real worker processes.

``crash`` kills the worker process that runs it (``os._exit(1)``), every time.
``good`` records its execution like ``tests.apps.recorder``. Keys (under the run's
NT_PREFIX): ``P:test:runs`` hash n -> executions of ``good`` (the Ledger's key),
``P:test:crash_starts`` counter and ``P:test:crash_deliveries`` list (the delivery
count each start of ``crash`` saw). The connection is opened on first use, per process.
"""

from __future__ import annotations

import asyncio
import os

import redis.asyncio as aioredis

from nautilus_tasks import Engine, current_message


class _Conn:
    """This app's own connection, made lazily in the worker process."""

    redis: aioredis.Redis | None = None

    @classmethod
    def get(cls) -> aioredis.Redis:
        if cls.redis is None:
            cls.redis = aioredis.Redis.from_url(os.environ["NT_REDIS_URL"])
        return cls.redis


def key(name: str) -> str:
    return f"{os.environ['NT_PREFIX']}:test:{name}"


poison = Engine("poison")

CRASH_PAUSE = 0.2
"""Seconds ``crash`` waits before killing its process: the other slots finish and ack."""


@poison.task
async def good(n: int, pause: float = 0.0) -> int:
    """Take ``pause`` seconds of work, then record the execution."""
    if pause:
        await asyncio.sleep(pause)
    await _Conn.get().hincrby(key("runs"), str(n), 1)
    return n


@poison.task(retries=0)
async def crash(n: int) -> None:
    """Record the start (and the delivery count), then kill the worker process."""
    context = current_message()
    conn = _Conn.get()
    await conn.incr(key("crash_starts"))
    await conn.rpush(key("crash_deliveries"), -1 if context is None else context.deliveries)
    await asyncio.sleep(CRASH_PAUSE)
    os._exit(1)
