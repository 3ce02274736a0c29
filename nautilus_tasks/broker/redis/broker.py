"""RedisBroker: the Broker protocol on Redis Streams consumer groups."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Self, TypeVar

import redis.asyncio as aioredis
from redis import exceptions as rexc

from ...config import BusConfig
from ...priority import TIERS, Priority
from ..base import Delivery, Finish, ReadPlan, Reclaimed
from . import messaging, reads
from .errors import mapped_errors
from .inspect import AdminMixin
from .keys import Keys
from .scripts import Scripts
from .sending import SendMixin
from .ticks import TicksMixin

log = logging.getLogger("nautilus_tasks.broker")

T = TypeVar("T")

_str, _pairs = reads._str, reads._pairs


class RedisBroker(SendMixin, AdminMixin, TicksMixin):
    """One connection pool to one bus. Create with ``await RedisBroker.connect(config)``."""

    def __init__(self, config: BusConfig, redis: aioredis.Redis) -> None:
        self.config = config
        self._redis = redis
        self._scripts = Scripts(redis)
        self._keys: dict[str, Keys] = {}
        self._recreating: dict[str, asyncio.Lock] = {}

    @classmethod
    async def connect(cls, config: BusConfig) -> Self:
        """Open the pool and load the Lua scripts; BusUnavailable if unreachable."""
        # A blocking pool: when every connection is busy a command waits for one
        # (up to socket_timeout) instead of failing with "Too many connections".
        pool = aioredis.BlockingConnectionPool.from_url(
            config.url,
            socket_timeout=config.socket_timeout,
            socket_connect_timeout=config.connect_timeout,
            max_connections=config.max_connections,
            timeout=config.socket_timeout,
            decode_responses=False,
        )
        return await cls.attach(config, aioredis.Redis.from_pool(pool))

    @classmethod
    async def attach(cls, config: BusConfig, redis: aioredis.Redis) -> Self:
        """A broker on an open redis-py client (``nautilus_tasks.testing`` passes a fakeredis
        one): load the Lua scripts; on failure close ``redis`` and raise BusUnavailable."""
        broker = cls(config, redis)
        try:
            async with mapped_errors(f"connect to {config.url}"):
                await broker._scripts.load()
        except BaseException:
            await redis.aclose()
            raise
        return broker

    @property
    def prefix(self) -> str:
        return self.config.prefix

    @property
    def url(self) -> str:
        return self.config.url

    def stream_names(self, engine: str) -> tuple[str, ...]:
        return self.keys(engine).streams

    def keys(self, engine: str) -> Keys:
        """The key names of ``engine`` on this bus (cached)."""
        keys = self._keys.get(engine)
        if keys is None:
            keys = self._keys[engine] = Keys(self.config.prefix, engine)
        return keys

    async def close(self) -> None:
        await self._redis.aclose()

    async def ensure_groups(self, engine: str, consumer: str | None = None) -> int:
        """Create the engine's group on every tier stream (MKSTREAM); existing is fine.
        Returns how many groups had to be created."""
        keys = self.keys(engine)
        created = 0
        async with mapped_errors(f"create groups of {engine}"):
            for stream in keys.streams:
                if not await self._has_group(stream, keys.group):
                    created += await self._create_group(stream, keys.group)
                if consumer is not None:
                    try:  # denyoom; XREADGROUP creates the consumer anyway when it reads
                        await self._redis.xgroup_createconsumer(stream, keys.group, consumer)
                    except rexc.OutOfMemoryError:
                        log.warning("server out of memory: %s joins on its first read", consumer)
        return created

    async def _has_group(self, stream: str, group: str) -> bool:
        """Read-only check (XINFO GROUPS), so a worker can start on a server at maxmemory."""
        try:
            groups = await self._redis.xinfo_groups(stream)
        except rexc.ResponseError:  # no such stream yet
            return False
        return any(_str(g["name"]) == group for g in groups)

    async def _create_group(self, stream: str, group: str) -> int:
        try:
            await self._redis.xgroup_create(stream, group, id="0", mkstream=True)
        except rexc.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
            return 0
        return 1

    async def schedule(
        self,
        engine: str,
        tier: Priority,
        payload: bytes,
        *,
        eta_ms: int | None = None,
        delay_ms: int | None = None,
    ) -> int:
        member = tier.label.encode() + b"|" + payload
        async with mapped_errors(f"schedule for {engine}"):
            return await self._scripts.schedule(
                self.keys(engine), member, eta_ms=eta_ms, delay_ms=delay_ms
            )

    async def promote_due(self, engine: str, limit: int = 1000) -> tuple[int, int]:
        async with mapped_errors(f"promote delayed of {engine}"):
            return await self._scripts.promote(self.keys(engine), limit)

    async def read(
        self,
        engine: str,
        consumer: str,
        count: int,
        reserve: Sequence[int],
        block_ms: int,
    ) -> list[Delivery]:
        """Priority pass over the tiers; if it finds nothing, one blocking XREADGROUP."""
        got: list[Delivery] | None = await self._guard(
            f"read {engine}", engine, consumer,
            lambda: reads.read(self._redis, self._scripts, self.keys(engine), consumer,
                               count, reserve, block_ms, False),
            [],
        )  # fmt: skip
        return got or []

    async def read_below_critical(
        self, engine: str, consumer: str, count: int, reserve: Sequence[int], block_ms: int
    ) -> list[Delivery] | None:
        """``read`` of the high, normal and low tiers only; None, having read nothing,
        when the critical stream holds entries not yet delivered to the group."""
        return await self._guard(
            f"read {engine}", engine, consumer,
            lambda: reads.read(self._redis, self._scripts, self.keys(engine), consumer,
                               count, reserve, block_ms, True),
            [],
        )  # fmt: skip

    async def read_critical(
        self, engine: str, consumer: str, count: int, block_ms: int
    ) -> list[Delivery]:
        """Up to ``count`` new critical entries, blocking up to ``block_ms``."""
        return await self._guard(
            f"read critical {engine}", engine, consumer,
            lambda: reads.read_critical(self._redis, self.keys(engine), consumer, count, block_ms),
            [],
        )  # fmt: skip

    async def _recreate_groups(self, engine: str, consumer: str) -> None:
        """Recreate lost groups; warn once per loss. Loops that meet NOGROUP together
        queue on a lock: the first recreates the groups and warns, the others find them."""
        lock = self._recreating.setdefault(engine, asyncio.Lock())
        async with lock:
            created = await self.ensure_groups(engine, consumer)
        if created:
            log.warning(
                "consumer group %r was missing on %s: the server lost its data (restarted"
                " without persistence?); recreated it. Messages sent before the loss may be"
                " gone.",
                engine,
                self.url,
            )

    async def _guard(
        self, what: str, engine: str, consumer: str, call: Callable[[], Awaitable[T]], missing: T
    ) -> T:
        """Run a group script; on NOGROUP recreate the groups and return ``missing``."""
        async with mapped_errors(what):
            try:
                return await call()
            except rexc.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
        await self._recreate_groups(engine, consumer)
        return missing

    async def ack(
        self, engine: str, consumer: str, ids: Mapping[Priority, Sequence[str]]
    ) -> tuple[list[str], list[str]]:
        """XACK + XDEL of owned ids in one script. Returns (taken, gone): ids another
        consumer owns now, and ids no longer pending at all (nothing to do)."""
        everything: list[str] = [i for v in ids.values() for i in v]
        call = lambda: self._scripts.ack(self.keys(engine), consumer, ids)  # noqa: E731
        return await self._guard(f"ack {engine}", engine, consumer, call, ([], everything))

    async def ack_and_read(
        self, engine: str, consumer: str, ids: Mapping[Priority, Sequence[str]], read: ReadPlan
    ) -> tuple[list[str], list[str], list[Delivery] | None]:
        """``ack``, then ``read`` (``read_below_critical`` if ``read.skip_critical``)
        without blocking, in one script call: one round trip."""
        everything: list[str] = [i for v in ids.values() for i in v]
        keys = self.keys(engine)
        call = lambda: reads.ack_read(self._scripts, keys, consumer, ids, read)  # noqa: E731
        missing: tuple[list[str], list[str], list[Delivery] | None] = ([], everything, [])
        return await self._guard(f"ack {engine}", engine, consumer, call, missing)

    async def requeue(
        self, engine: str, consumer: str, ids: Mapping[Priority, Sequence[str]]
    ) -> int:
        call = lambda: self._scripts.requeue(self.keys(engine), consumer, ids)  # noqa: E731
        return await self._guard(f"requeue {engine}", engine, consumer, call, 0)

    async def retry(
        self, engine: str, consumer: str, delivery: Delivery, payload: bytes, delay_ms: int
    ) -> bool:
        """Ack the entry and schedule ``payload`` (its next attempt), if still owned."""
        member = delivery.tier.label.encode() + b"|" + payload
        keys = self.keys(engine)

        async def call() -> int:
            return await self._scripts.retry(
                keys, delivery.tier, consumer, delivery.entry_id, delay_ms, member
            )

        return bool(await self._guard(f"retry in {engine}", engine, consumer, call, 0))

    async def renew(
        self, engine: str, consumer: str, ids: Mapping[Priority, Sequence[str]]
    ) -> tuple[list[str], list[str]]:
        """Reset the idle time of owned entries (XCLAIM JUSTID). Returns (lost, gone): ids
        another consumer owns now, and ids no longer pending (acked meanwhile)."""
        everything: list[str] = [i for v in ids.values() for i in v]
        call = lambda: self._scripts.renew(self.keys(engine), consumer, ids)  # noqa: E731
        return await self._guard(
            f"renew leases in {engine}", engine, consumer, call, ([], everything)
        )

    async def reclaim(
        self,
        engine: str,
        consumer: str,
        tier: Priority,
        *,
        cursor: str,
        count: int,
        min_idle_ms: int,
        max_deliveries: int,
        now_ms: int,
    ) -> Reclaimed:
        """One XAUTOCLAIM step on one tier stream, with poison messages dead-lettered."""
        keys = self.keys(engine)

        async def call() -> list[Any]:
            return await self._scripts.reclaim(
                keys, tier, consumer, min_idle_ms=min_idle_ms, cursor=cursor, count=count,
                max_deliveries=max_deliveries, now_ms=now_ms,
            )  # fmt: skip

        found: list[Any] = await self._guard(f"reclaim in {engine}", engine, consumer, call, [])
        if not found:
            return Reclaimed("0-0", [], [], [])
        nxt, entries, deleted, poisoned = found
        return Reclaimed(
            cursor=_str(nxt),
            deliveries=[Delivery(tier, _str(i), _pairs(f), False, int(n)) for i, f, n in entries],
            deleted=[_str(d) for d in deleted],
            poisoned=[_str(p) for p in poisoned],
        )

    async def finish(
        self, engine: str, consumer: str, records: Sequence[Finish]
    ) -> tuple[list[str], list[str]]:
        """Run each record's actions and ack it, atomically, if still owned. Returns
        (taken, gone) as ``ack`` does; a refused record's actions do not happen."""
        everything: list[str] = [r.entry_id for r in records]
        keys = self.keys(engine)
        call = lambda: messaging.finish(self._scripts, keys, self.keys, consumer, records)  # noqa: E731
        return await self._guard(f"finish in {engine}", engine, consumer, call, ([], everything))

    async def register_subscriptions(self, engine: str, patterns: Sequence[str]) -> int:
        async with mapped_errors(f"register subscriptions of {engine}"):
            return await messaging.register(self._scripts, self.prefix, engine, patterns)

    async def subscriptions(self) -> tuple[int, dict[str, list[str]]]:
        async with mapped_errors("read subscriptions"):
            return await messaging.subscriptions(self._redis, self.prefix)

    async def publish(self, targets: Sequence[tuple[str, Priority]], payload: bytes) -> int:
        async with mapped_errors(f"publish to {len(targets)} inboxes"):
            return await messaging.publish(self._redis, self.prefix, self.keys, targets, payload)

    async def read_replies(
        self, client_id: str, after: str, block_ms: int
    ) -> list[tuple[str, dict[bytes, bytes]]]:
        async with mapped_errors("read replies"):
            return await messaging.read_replies(
                self._redis, self.prefix, client_id, after, block_ms
            )

    async def delete_replies(self, client_id: str, ids: Sequence[str], ttl_ms: int) -> None:
        async with mapped_errors("delete replies"):
            await messaging.delete_replies(self._redis, self.prefix, client_id, ids, ttl_ms)

    async def get_result(self, engine: str, message_id: str) -> bytes | None:
        async with mapped_errors(f"read result of {message_id}"):
            return await messaging.get_result(self._redis, self.keys(engine), message_id)

    async def trim_dead(self, engine: str, max_len: int | None, max_age_ms: int | None) -> int:
        async with mapped_errors(f"trim dead letters of {engine}"):
            return await self._scripts.trim_dead(self.keys(engine), max_len, max_age_ms)

    async def owned_pending(self, engine: str, consumer: str) -> dict[Priority, list[str]]:
        """Every entry id this consumer holds, per tier."""
        keys = self.keys(engine)
        out: dict[Priority, list[str]] = {}
        async with mapped_errors(f"XPENDING {engine}"):
            for tier, stream in zip(TIERS, keys.streams, strict=True):
                start = "-"
                while True:
                    rows: list[dict[str, Any]] = await self._redis.xpending_range(
                        stream, keys.group, min=start, max="+", count=1000, consumername=consumer
                    )
                    ids = [_str(r["message_id"]) for r in rows]
                    out.setdefault(tier, []).extend(ids)
                    if len(rows) < 1000:
                        break
                    start = "(" + ids[-1]
        return out

    async def release(self, engine: str, consumer: str) -> bool:
        async with mapped_errors(f"release consumer of {engine}"):
            return await self._scripts.release(self.keys(engine), consumer)
