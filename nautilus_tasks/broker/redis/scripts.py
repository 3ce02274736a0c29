"""Typed async wrappers over the Lua scripts in ``lua/``, loaded at connect time.

Every key a script touches is passed in KEYS (never built inside Lua), so the
scripts run on Redis Cluster and managed Redis. See each ``.lua`` file's header
for its KEYS, ARGV and reply.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript

from ...priority import TIERS, Priority
from ..base import ReadPlan
from .keys import Keys

NAMES = (
    "read",
    "ack",
    "requeue",
    "schedule",
    "promote",
    "release",
    "retry",
    "renew",
    "reclaim",
    "enqueue",
    "trim_dead",
    "finish",
    "register",
    "tick",
    "enqueue_many",
    "enqueue_many_bounded",
)


def _source(name: str) -> str:
    return resources.files(__package__).joinpath("lua", f"{name}.lua").read_text("utf-8")


COMPOSED = {"ack_read": ("ack", "read")}
"""Scripts made of others, run one after the other in one call (``_composed``)."""


def _composed(parts: Sequence[str]) -> str:
    """One script that runs each of ``parts`` in turn on the same KEYS, and returns their
    replies in a list. ARGV: for each part, how many arguments it takes, then those.
    Each part's header (flags, KEYS, ARGV, reply) still holds for its share; the flags
    line of the first part is the whole script's (every part must carry the same)."""
    heads, bodies = zip(*(_source(name).split("\n", 1) for name in parts), strict=True)
    if len(set(heads)) != 1 or not heads[0].startswith("#!lua"):
        raise ValueError(f"scripts {parts} must start with the same flags line")
    lines = [heads[0]]
    for name, body in zip(parts, bodies, strict=True):
        lines.append(f"local function {name}(KEYS, ARGV)\n{body}\nend")
    lines.append(
        "local out, pos = {}, 1\n"
        f"for _, part in ipairs({{{', '.join(parts)}}}) do\n"
        "  local n = tonumber(ARGV[pos])\n"
        "  out[#out + 1] = part(KEYS, {unpack(ARGV, pos + 1, pos + n)})\n"
        "  pos = pos + n + 1\n"
        "end\n"
        "return out"
    )
    return "\n".join(lines)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _ids_args(ids: Mapping[Priority, Sequence[str]]) -> list[str]:
    counts = [str(len(ids.get(p, ()))) for p in TIERS]
    flat = [i for p in TIERS for i in ids.get(p, ())]
    return counts + flat


def _read_args(keys: Keys, consumer: str, read: ReadPlan) -> list[Any]:
    return [keys.group, consumer, read.size, *read.reserve, int(read.skip_critical)]


def _tier_pairs(items: Sequence[tuple[Priority, bytes]]) -> list[Any]:
    args: list[Any] = []
    for tier, payload in items:
        args += (int(tier) + 1, payload)
    return args


class Scripts:
    """The scripts of one connection, registered and loaded."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._scripts: dict[str, AsyncScript] = {
            name: redis.register_script(_source(name)) for name in NAMES
        }
        for name, parts in COMPOSED.items():
            self._scripts[name] = redis.register_script(_composed(parts))

    async def load(self) -> None:
        """SCRIPT LOAD every script, so the first call is already an EVALSHA."""
        for script in self._scripts.values():
            script.sha = await self._redis.script_load(script.script)

    async def _run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        return await self._scripts[name](keys=list(keys), args=list(args))

    async def read(
        self, keys: Keys, consumer: str, count: int, reserve: Sequence[int], skip_critical: bool
    ) -> list[Any] | int:
        args = _read_args(keys, consumer, ReadPlan(count, reserve, skip_critical))
        result: list[Any] | int = await self._run("read", keys.streams, args)
        return result

    async def ack(
        self, keys: Keys, consumer: str, ids: Mapping[Priority, Sequence[str]]
    ) -> tuple[list[str], list[str]]:
        args = [keys.group, consumer, *_ids_args(ids)]
        taken, gone = await self._run("ack", keys.streams, args)
        return [_text(i) for i in taken], [_text(i) for i in gone]

    async def ack_read(
        self, keys: Keys, consumer: str, ids: Mapping[Priority, Sequence[str]], read: ReadPlan
    ) -> tuple[list[str], list[str], list[Any] | int]:
        """``ack`` of ``ids``, then ``read``, in one call."""
        acking = [keys.group, consumer, *_ids_args(ids)]
        reading = _read_args(keys, consumer, read)
        args = [len(acking), *acking, len(reading), *reading]
        (taken, gone), found = await self._run("ack_read", keys.streams, args)
        return [_text(i) for i in taken], [_text(i) for i in gone], found

    async def requeue(
        self, keys: Keys, consumer: str, ids: Mapping[Priority, Sequence[str]]
    ) -> int:
        args = [keys.group, consumer, *_ids_args(ids)]
        return int(await self._run("requeue", keys.streams, args))

    async def schedule(
        self, keys: Keys, member: bytes, *, eta_ms: int | None, delay_ms: int | None
    ) -> int:
        eta = "" if eta_ms is None else str(eta_ms)
        delay = "" if delay_ms is None else str(delay_ms)
        return int(await self._run("schedule", [keys.delayed], [eta, delay, member]))

    async def promote(self, keys: Keys, limit: int) -> tuple[int, int]:
        moved, wait = await self._run("promote", [keys.delayed, *keys.streams], [limit])
        return int(moved), int(wait)

    async def release(self, keys: Keys, consumer: str) -> bool:
        keys_ = [*keys.streams, keys.workers]
        return bool(await self._run("release", keys_, [keys.group, consumer]))

    async def retry(
        self,
        keys: Keys,
        tier: Priority,
        consumer: str,
        entry_id: str,
        delay_ms: int,
        member: bytes,
    ) -> int:
        args = [keys.group, consumer, entry_id, delay_ms, member]
        return int(await self._run("retry", [keys.stream(tier), keys.delayed], args))

    async def renew(
        self, keys: Keys, consumer: str, ids: Mapping[Priority, Sequence[str]]
    ) -> tuple[list[str], list[str]]:
        args = [keys.group, consumer, *_ids_args(ids)]
        lost, gone = await self._run("renew", keys.streams, args)
        return [_text(i) for i in lost], [_text(i) for i in gone]

    async def reclaim(
        self,
        keys: Keys,
        tier: Priority,
        consumer: str,
        *,
        min_idle_ms: int,
        cursor: str,
        count: int,
        max_deliveries: int,
        now_ms: int,
    ) -> list[Any]:
        args = [keys.group, consumer, min_idle_ms, cursor, count, max_deliveries, now_ms]
        args.append(tier.label)
        result: list[Any] = await self._run("reclaim", [keys.stream(tier), keys.dead], args)
        return result

    async def enqueue(self, keys: Keys, tier: Priority, max_backlog: int, payload: bytes) -> Any:
        return await self._run("enqueue", [keys.stream(tier)], [max_backlog, payload])

    async def enqueue_many(self, keys: Keys, items: Sequence[tuple[Priority, bytes]]) -> list[Any]:
        """The ids of the new entries, in order."""
        result: list[Any] = await self._run("enqueue_many", keys.streams, _tier_pairs(items))
        return result

    async def enqueue_many_bounded(
        self, keys: Keys, max_backlog: int, items: Sequence[tuple[Priority, bytes]]
    ) -> list[Any] | int:
        """The ids of the new entries, in order; or the index (1..4) of a tier stream with
        no room for its part of the batch, nothing written."""
        args = [max_backlog, *_tier_pairs(items)]
        result: list[Any] | int = await self._run("enqueue_many_bounded", keys.streams, args)
        return result

    def queue_enqueue_many(
        self, pipe: Pipeline, keys: Keys, items: Sequence[tuple[Priority, bytes]]
    ) -> None:
        """``enqueue_many`` queued in ``pipe`` as a plain EVALSHA (a NOSCRIPT error, after
        a server restart, is the caller's to handle: ``load()`` and try again)."""
        sha = self._scripts["enqueue_many"].sha
        pipe.execute_command("EVALSHA", sha, len(keys.streams), *keys.streams, *_tier_pairs(items))

    async def trim_dead(self, keys: Keys, max_len: int | None, max_age_ms: int | None) -> int:
        args = ["" if max_len is None else max_len, "" if max_age_ms is None else max_age_ms]
        return int(await self._run("trim_dead", [keys.dead], args))

    async def finish(
        self, streams: Sequence[str], targets: Sequence[str], args: Sequence[Any]
    ) -> tuple[list[str], list[str]]:
        taken, gone = await self._run("finish", [*streams, *targets], args)
        return [_text(i) for i in taken], [_text(i) for i in gone]

    async def register(
        self, registry: str, version: str, engine: str, patterns: Sequence[str]
    ) -> int:
        return int(await self._run("register", [registry, version], [engine, *patterns]))

    async def tick(
        self,
        keys: Keys,
        tier: Priority,
        schedule: str,
        fire_ms: int,
        args: Sequence[Any],
    ) -> tuple[str, str]:
        """``args``: dedup expiry ms, max backlog ('' for none), message id, envelope."""
        keys_ = [keys.tick(schedule, fire_ms), keys.schedules, keys.stream(tier)]
        status, entry_id = await self._run("tick", keys_, [schedule, fire_ms, *args])
        return _text(status), _text(entry_id)
