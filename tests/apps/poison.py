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

from nautilus_tasks import Engine, current_message
from tests.apps.common import conn as connection
from tests.apps.common import key

poison = Engine("poison")

CRASH_PAUSE = 0.2
"""Seconds ``crash`` waits before killing its process: the other slots finish and ack."""


@poison.task
async def good(n: int, pause: float = 0.0) -> int:
    """Take ``pause`` seconds of work, then record the execution."""
    if pause:
        await asyncio.sleep(pause)
    await connection().hincrby(key("runs"), str(n), 1)
    return n


@poison.task(retries=0)
async def crash(n: int) -> None:
    """Record the start (and the delivery count), then kill the worker process."""
    context = current_message()
    conn = connection()
    await conn.incr(key("crash_starts"))
    await conn.rpush(key("crash_deliveries"), -1 if context is None else context.deliveries)
    await asyncio.sleep(CRASH_PAUSE)
    os._exit(1)
