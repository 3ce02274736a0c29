"""Request/reply, stored results, callbacks and events on Redis: the finish script's
arguments, the reply streams and the subscription registry."""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Any, cast

import orjson
import redis.asyncio as aioredis

from ...priority import TIERS, Priority
from ..base import DeadLetter, Finish, Publish, Reply, StoreResult
from .keys import Keys, reply_stream, subs_keys
from .scripts import Scripts


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class FinishArgs:
    """Builds KEYS and ARGV of ``finish.lua`` for a batch of records of one engine."""

    def __init__(self, keys: Keys, keys_of: Any, prefix: str, group: str, consumer: str) -> None:
        self.keys = keys
        self._keys_of = keys_of
        self._prefix = prefix
        self.targets: list[str] = []
        self._index: dict[str, int] = {}
        self.args: list[Any] = [group, consumer]

    def _target(self, key: str) -> int:
        index = self._index.get(key)
        if index is None:
            self.targets.append(key)
            index = self._index[key] = 4 + len(self.targets)  # after the four tier streams
        return index

    def add(self, record: Finish) -> None:
        self.args += [TIERS.index(record.tier) + 1, record.entry_id, len(record.actions)]
        for action in record.actions:
            self.args += self._action(action)

    def _action(self, action: Any) -> list[Any]:
        if isinstance(action, Reply):
            key = reply_stream(self._prefix, action.client_id)
            return ["x", self._target(key), action.payload, action.ttl_ms]
        if isinstance(action, StoreResult):
            key = self._keys_of(action.engine).result(action.message_id)
            return ["s", self._target(key), action.payload, action.ttl_ms]
        if isinstance(action, Publish):
            key = self._keys_of(action.engine).stream(action.tier)
            return ["x", self._target(key), action.payload, 0]
        if isinstance(action, DeadLetter):
            return ["d", self._target(self.keys.dead), orjson.dumps(action.meta), 0]
        raise TypeError(f"unknown finish action {action!r}")


async def finish(
    scripts: Scripts, keys: Keys, keys_of: Any, consumer: str, records: Sequence[Finish]
) -> tuple[list[str], list[str]]:
    """Run the records' actions and ack them, in one script call."""
    built = FinishArgs(keys, keys_of, keys.prefix, keys.group, consumer)
    for record in records:
        built.add(record)
    return await scripts.finish(keys.streams, built.targets, built.args)


async def register(scripts: Scripts, prefix: str, engine: str, patterns: Sequence[str]) -> int:
    registry, version = subs_keys(prefix)
    return await scripts.register(registry, version, engine, sorted(set(patterns)))


async def subscriptions(redis: aioredis.Redis, prefix: str) -> tuple[int, dict[str, list[str]]]:
    """The registry's version and its patterns -> engines."""
    registry, version = subs_keys(prefix)
    pipe = redis.pipeline(transaction=True)
    pipe.get(version)
    pipe.hkeys(registry)
    raw_version, fields = await pipe.execute()
    out: dict[str, list[str]] = {}
    for field in fields:
        engine, _, pattern = _text(field).partition(" ")
        out.setdefault(pattern, []).append(engine)
    return int(raw_version or 0), out


async def publish(
    redis: aioredis.Redis, prefix: str, keys_of: Any, targets: Sequence[tuple[str, Priority]],
    payload: bytes,
) -> int:  # fmt: skip
    """XADD the event to each target inbox and read the registry version, in one round trip."""
    pipe = redis.pipeline(transaction=False)
    pipe.get(subs_keys(prefix)[1])
    for engine, tier in targets:
        pipe.xadd(keys_of(engine).stream(tier), {"envelope": payload})
    results = await pipe.execute()
    return int(results[0] or 0)


async def read_replies(
    redis: aioredis.Redis, prefix: str, client_id: str, after: str, block_ms: int
) -> list[tuple[str, dict[bytes, bytes]]]:
    got: Any = await redis.xread(
        {reply_stream(prefix, client_id): after}, count=1000, block=block_ms
    )
    return [(_text(i), dict(f)) for _, entries in got or [] for i, f in entries]


async def delete_replies(
    redis: aioredis.Redis, prefix: str, client_id: str, ids: Sequence[str], ttl_ms: int
) -> None:
    """Delete read replies and refresh the stream's TTL (the live client keeps it)."""
    key = reply_stream(prefix, client_id)
    pipe = redis.pipeline(transaction=False)
    if ids:
        pipe.xdel(key, *ids)
    pipe.pexpire(key, ttl_ms)
    await pipe.execute()


async def get_result(redis: aioredis.Redis, keys: Keys, message_id: str) -> bytes | None:
    return await cast(Awaitable[bytes | None], redis.get(keys.result(message_id)))
