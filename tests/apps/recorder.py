"""A test engine run by real worker processes: it records every execution in Redis.

Keys (under the run's NT_PREFIX): ``P:test:runs`` hash n -> executions,
``P:test:started`` counter. The connection is opened on first use, per process.
"""

from __future__ import annotations

import asyncio

from nautilus_tasks import Engine
from tests.apps.common import conn as connection
from tests.apps.common import key

recorder = Engine("recorder")


@recorder.task
async def record(n: int, pause: float = 0.0) -> int:
    """Count a start, take ``pause`` seconds of work, then record the execution."""
    conn = connection()
    await conn.incr(key("started"))
    if pause:
        await asyncio.sleep(pause)
    await conn.hincrby(key("runs"), str(n), 1)
    return n
