"""Redis operations that only ``nautilus_tasks.testing`` uses on a real server.

* ``shift_delayed``: the scripts judge due times by Redis TIME, which a real server cannot
  shift, so the test bus's ``advance(seconds)`` moves every message already in
  ``P:{E}:delayed`` that much earlier instead (on fakeredis it shifts the server's TIME;
  see docs/testing.md).
* ``delete_bus``: remove every key under the bus prefix when a test is over.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import mapped_errors

if TYPE_CHECKING:
    from .broker import RedisBroker


async def shift_delayed(broker: RedisBroker, engine: str, ms: int) -> int:
    """Make every delayed message of ``engine`` due ``ms`` milliseconds earlier; returns
    how many moved. Not atomic against a concurrent promotion: for tests only."""
    key = broker.keys(engine).delayed
    async with mapped_errors(f"shift delayed of {engine}"):
        members: list[tuple[Any, float]] = await broker._redis.zrange(key, 0, -1, withscores=True)
        if members:
            await broker._redis.zadd(key, {m: int(score) - ms for m, score in members})
    return len(members)


async def delete_bus(broker: RedisBroker) -> int:
    """Delete every key of the bus (all of them start with ``<prefix>:``); returns how many."""
    async with mapped_errors(f"delete keys of {broker.prefix}"):
        keys = [k async for k in broker._redis.scan_iter(match=f"{broker.prefix}:*", count=1000)]
        if keys:
            await broker._redis.delete(*keys)
    return len(keys)
