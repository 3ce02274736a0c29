"""Read-only views of an engine's streams, groups and counters, for ``inspect``."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, cast

import redis.asyncio as aioredis
from redis import exceptions as rexc

from ...config import BusConfig
from ...errors import BusError
from ...priority import TIERS
from ..base import EngineInfo, TierInfo
from .errors import mapped_errors
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


class AdminMixin:
    """The broker's read-mostly operations: server facts, heartbeats, stats, inspection."""

    _redis: aioredis.Redis
    config: BusConfig

    @property
    def url(self) -> str:
        return self.config.url

    def keys(self, engine: str) -> Keys:
        raise NotImplementedError

    async def server_version(self) -> str:
        async with mapped_errors("INFO"):
            info: dict[str, Any] = await self._redis.info("server")
        name = "valkey" if "valkey_version" in info else "redis"
        return f"{name} {info.get('valkey_version') or info.get('redis_version')}"

    async def config_get(self, name: str) -> str | None:
        """One CONFIG GET value, or None when the server refuses CONFIG."""
        try:
            async with mapped_errors("CONFIG GET"):
                values: dict[Any, Any] = await self._redis.config_get(name)
        except BusError:
            return None
        for key, value in values.items():
            if _text(key) == name:
                return _text(value)
        return None

    async def heartbeat(self, engine: str, consumer: str, at_ms: int) -> None:
        async with mapped_errors(f"heartbeat {engine}"):
            await self._redis.zadd(self.keys(engine).workers, {consumer: at_ms})

    async def write_stats(self, engine: str, consumer: str, data: bytes) -> None:
        async with mapped_errors(f"stats of {engine}"):
            # redis-py types hset as sync-or-async; on the asyncio client it is async
            await cast(
                Awaitable[int], self._redis.hset(self.keys(engine).stats, mapping={consumer: data})
            )

    async def inspect(self, engine: str) -> EngineInfo:
        async with mapped_errors(f"inspect {engine}"):
            return await inspect_engine(self._redis, self.keys(engine))

    async def engines(self) -> list[str]:
        async with mapped_errors("list engines"):
            return await list_engines(self._redis, self.config.prefix)

    async def backlog(self, engine: str) -> int:
        """Entries in the engine's four tier streams, queued or pending, in one round trip.
        Acked entries are deleted, so 0 means everything sent so far has been handled."""
        async with mapped_errors(f"XLEN {engine}"):
            pipe = self._redis.pipeline(transaction=False)
            for stream in self.keys(engine).streams:
                pipe.xlen(stream)
            return sum(int(n) for n in await pipe.execute())

    async def delete_prefix(self) -> int:
        """Delete every key under this bus's prefix (benchmarks use a prefix of their own)."""
        deleted = 0
        async with mapped_errors(f"delete {self.config.prefix}:*"):
            batch: list[Any] = []
            async for key in self._redis.scan_iter(match=f"{self.config.prefix}:*", count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    deleted += int(await self._redis.unlink(*batch))
                    batch = []
            if batch:
                deleted += int(await self._redis.unlink(*batch))
        return deleted
