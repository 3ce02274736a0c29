"""A test engine whose handler writes through ``engine.redis`` (the auto-pipeline), run by a
worker process. ``bump`` INCRs ``P:test:done`` and then SETs ``P:test:batches`` to the
handle's round-trip count as it reads it (P from NT_PREFIX)."""

from __future__ import annotations

from nautilus_tasks import Engine
from tests.apps.common import key

autopiped = Engine("autopiped")


@autopiped.task
async def bump(n: int) -> int:
    handle = autopiped.redis
    done = await handle.incr(key("done"))
    await handle.set(key("batches"), handle.batches)
    return done
