"""Read-only views of an engine's streams, groups and counters, for ``inspect``."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, cast

import redis.asyncio as aioredis
from redis import exceptions as rexc

from ...priority import TIERS
from ..base import EngineInfo, TierInfo
from .keys import Keys, engine_of, inbox_pattern


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def _tier(redis: aioredis.Redis, keys: Keys, index: int, now_ms: int) -> TierInfo:
    tier = TIERS[index]
    stream = keys.streams[index]
    length = int(await redis.xlen(stream))
    try:
        groups = await redis.xinfo_groups(stream)
    except rexc.ResponseError:  # no such stream yet
        groups = []
    group = next((g for g in groups if _text(g["name"]) == keys.group), None)
    if group is None:
        return TierInfo(tier, length, 0, 0, None, None)
    pending = int(group["pending"])
    lag = group.get("lag")
    oldest = None
    if pending:
        summary = await redis.xpending(stream, keys.group)
        if summary["min"] is not None:  # it may have been acked since XINFO
            first = _text(summary["min"])
            oldest = max(0, now_ms - int(first.split("-", 1)[0]))
    return TierInfo(
        tier=tier,
        length=length,
        pending=pending,
        consumers=int(group["consumers"]),
        lag=None if lag is None else int(lag),
        oldest_pending_age_ms=oldest,
    )


async def inspect_engine(redis: aioredis.Redis, keys: Keys) -> EngineInfo:
    """Lengths, pending counts, consumers, oldest pending age and lag of each tier."""
    seconds, micros = await redis.time()
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    tiers = [await _tier(redis, keys, i, now_ms) for i in range(len(TIERS))]
    stats = await cast(Awaitable[dict[Any, Any]], redis.hgetall(keys.stats))
    return EngineInfo(
        engine=keys.engine,
        tiers=tiers,
        delayed=int(await redis.zcard(keys.delayed)),
        dead=int(await redis.xlen(keys.dead)),
        stats={_text(k): v for k, v in stats.items()},
    )


async def list_engines(redis: aioredis.Redis, prefix: str) -> list[str]:
    """Engines that have at least one inbox stream on this bus."""
    found: set[str] = set()
    async for key in redis.scan_iter(match=inbox_pattern(prefix), count=1000, _type="stream"):
        engine = engine_of(prefix, _text(key))
        if engine is not None:
            found.add(engine)
    return sorted(found)
