"""Dead-letter management on Redis: list, get, replay and purge the entries of ``P:{E}:dead``.

A dead entry holds why the message died (``reason``, ``error_type``, ``error``,
``traceback``, ``attempts``, ``dead_at``, ``origin``, ``origin_id``, ``consumer``,
``message_id``, ``task``, ``deliveries``) and the original stream entry's fields under
``orig:<field>`` (see ``lua/finish.lua`` and ``lua/reclaim.lua``).

Replay is atomic per entry (``lua/replay.lua``): the entry is added to its tier stream and
deleted from the dead-letter stream in one script, only if it is still there, so two
replays racing for one entry add it once. The rest are plain reads and deletions; every
function returns what it found or how many entries it changed.
"""

from __future__ import annotations

import logging
import re
import weakref
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import aclosing
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, NamedTuple

from redis.commands.core import AsyncScript

from ...errors import ConfigurationError, MalformedMessage
from ...message import decode, encode
from ...priority import TIERS, Priority
from .errors import mapped_errors as _errors
from .keys import Keys

if TYPE_CHECKING:
    from .broker import RedisBroker

log = logging.getLogger("nautilus_tasks.dlq")

ORIG = b"orig:"
PAGE = 500
_ID = re.compile(r"^(\d+)-(\d+)$")
_TIER_BY_LABEL = {p.label: p for p in TIERS}
_scripts: weakref.WeakKeyDictionary[RedisBroker, AsyncScript] = weakref.WeakKeyDictionary()


class DeadEntry(NamedTuple):
    """One entry of an engine's dead-letter stream, as stored."""

    engine: str
    id: str
    fields: dict[bytes, bytes]


def entry_id(value: str) -> str:
    """A dead-entry id in its canonical ``<ms>-<seq>`` form; ConfigurationError if invalid."""
    match = _ID.match(value.strip())
    if match is None:
        raise ConfigurationError(f"invalid dead-letter id {value!r} (expected <ms>-<seq>)")
    return f"{int(match[1])}-{int(match[2])}"


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def original_fields(fields: dict[bytes, bytes]) -> dict[bytes, bytes]:
    """The fields of the original stream entry, from its ``orig:<field>`` copies."""
    return {k[len(ORIG) :]: v for k, v in fields.items() if k.startswith(ORIG)}


def task_of(fields: dict[bytes, bytes]) -> str:
    """The task name: the ``task`` field, else the name in a valid original envelope."""
    task = fields.get(b"task")
    if task:
        return _text(task)
    try:
        return decode(original_fields(fields)).name
    except MalformedMessage:
        return ""


def _matches(fields: dict[bytes, bytes], reason: str | None, task: str | None) -> bool:
    if reason is not None and _text(fields.get(b"reason", b"")) != reason:
        return False
    return task is None or task_of(fields) == task


async def _page(
    broker: RedisBroker, key: str, bound: str, newest_first: bool
) -> list[tuple[str, dict[bytes, bytes]]]:
    """One page of entries from ``bound`` (exclusive after the first page) on."""
    async with _errors(f"read {key}"):
        if newest_first:
            rows = await broker._redis.xrevrange(key, max=bound, min="-", count=PAGE)
        else:
            rows = await broker._redis.xrange(key, min=bound, max="+", count=PAGE)
    return [(_text(i), dict(f)) for i, f in rows if f is not None]


async def _entries(
    broker: RedisBroker, key: str, *, newest_first: bool, until: str | None = None
) -> AsyncGenerator[tuple[str, dict[bytes, bytes]]]:
    """Every entry of ``key``, page by page; oldest first stops after ``until`` if given."""
    bound = "+" if newest_first else "-"
    last = None if until is None else _id_key(until)
    while True:
        rows = await _page(broker, key, bound, newest_first)
        for row in rows:
            if last is not None and _id_key(row[0]) > last:
                return
            yield row
        if len(rows) < PAGE:
            return
        bound = "(" + rows[-1][0]


def _id_key(value: str) -> tuple[int, int]:
    ms, _, seq = value.partition("-")
    return int(ms), int(seq or 0)


async def list_dead(
    broker: RedisBroker,
    engine: str,
    *,
    reason: str | None = None,
    task: str | None = None,
    limit: int = 100,
    newest_first: bool = True,
) -> list[DeadEntry]:
    """Up to ``limit`` dead letters of ``engine``, filtered by reason and task name."""
    out: list[DeadEntry] = []
    if limit <= 0:
        return out
    key = broker.keys(engine).dead
    async with aclosing(_entries(broker, key, newest_first=newest_first)) as entries:
        async for dead_id, fields in entries:
            if _matches(fields, reason, task):
                out.append(DeadEntry(engine, dead_id, fields))
                if len(out) >= limit:
                    break
    return out


async def get_dead(
    broker: RedisBroker, dead_id: str, engine: str | None = None
) -> DeadEntry | None:
    """The dead letter ``dead_id`` of ``engine``, or of whichever engine on the bus holds it."""
    dead_id = entry_id(dead_id)
    engines = [engine] if engine is not None else await broker.engines()
    for name in engines:
        key = broker.keys(name).dead
        async with _errors(f"read {key}"):
            rows = await broker._redis.xrange(key, min=dead_id, max=dead_id)
        for found, fields in rows:
            if _text(found) == dead_id and fields is not None:
                return DeadEntry(name, dead_id, dict(fields))
    return None


@cache
def _source() -> str:
    return resources.files(__package__).joinpath("lua", "replay.lua").read_text("utf-8")


def _script(broker: RedisBroker) -> AsyncScript:
    """The replay script of this broker's connection, registered on first use."""
    script = _scripts.get(broker)
    if script is None:
        script = _scripts[broker] = broker._redis.register_script(_source())
    return script


def replay_target(fields: dict[bytes, bytes]) -> tuple[Priority, dict[bytes, bytes]] | None:
    """Where and what to replay: the origin tier and the entry's fields with attempt 0.

    A valid envelope is re-encoded with ``attempt`` reset, keeping its message id and
    correlation id; anything else is replayed with its original fields verbatim. None
    when the dead letter holds no original fields (there is nothing to replay).
    """
    orig = original_fields(fields)
    if not orig:
        return None
    tier = _TIER_BY_LABEL.get(_text(fields.get(b"origin", b"")))
    try:
        envelope = decode(orig)
    except MalformedMessage:
        return tier or Priority.NORMAL, orig
    orig[b"envelope"] = encode(envelope.model_copy(update={"attempt": 0}))
    return tier or envelope.tier, orig


Replayed = Callable[[str, dict[bytes, bytes]], None]
"""Told the id and fields of each dead letter put back."""


async def _replay_one(
    broker: RedisBroker,
    keys: Keys,
    dead_id: str,
    fields: dict[bytes, bytes],
    on_replayed: Replayed | None = None,
) -> int:
    target = replay_target(fields)
    if target is None:
        log.warning(
            "dead letter %s of %s has no original fields; not replayed", dead_id, keys.engine
        )
        return 0
    tier, new = target
    flat = [x for pair in new.items() for x in pair]
    async with _errors(f"replay {dead_id} of {keys.engine}"):
        added = await _script(broker)(keys=[keys.dead, keys.stream(tier)], args=[dead_id, *flat])
    if added is None:
        return 0
    if on_replayed is not None:
        on_replayed(dead_id, fields)
    log.debug(
        "replayed dead letter %s of %s into %s as %s",
        dead_id,
        keys.engine,
        tier.label,
        _text(added),
    )
    return 1


async def replay_dead(
    broker: RedisBroker, engine: str, ids: Sequence[str], on_replayed: Replayed | None = None
) -> int:
    """Replay the dead letters ``ids`` of ``engine``; returns how many went back."""
    keys = broker.keys(engine)
    done = 0
    for raw_id in ids:
        dead_id = entry_id(raw_id)
        async with _errors(f"read {keys.dead}"):
            rows = await broker._redis.xrange(keys.dead, min=dead_id, max=dead_id)
        for found, fields in rows:
            if _text(found) == dead_id and fields is not None:
                done += await _replay_one(broker, keys, dead_id, dict(fields), on_replayed)
    return done


async def replay_matching(
    broker: RedisBroker,
    engine: str,
    *,
    task: str | None = None,
    on_replayed: Replayed | None = None,
) -> int:
    """Replay every dead letter of ``engine`` (of task ``task`` only, when given) that was
    there when the call began: a replayed message that dies again is not replayed twice."""
    keys = broker.keys(engine)
    async with _errors(f"read {keys.dead}"):
        last = await broker._redis.xrevrange(keys.dead, max="+", min="-", count=1)
    if not last:
        return 0
    until = _text(last[0][0])
    done = 0
    async for dead_id, fields in _entries(broker, keys.dead, newest_first=False, until=until):
        if _matches(fields, None, task):
            done += await _replay_one(broker, keys, dead_id, fields, on_replayed)
    return done


async def purge_dead(broker: RedisBroker, engine: str, ids: Sequence[str]) -> int:
    """Delete the dead letters ``ids`` of ``engine``; returns how many existed."""
    if not ids:
        return 0
    canonical = [entry_id(i) for i in ids]
    key = broker.keys(engine).dead
    async with _errors(f"purge {key}"):
        removed = int(await broker._redis.xdel(key, *canonical))
    log.info("purged %d dead letters of %s by id", removed, engine)
    return removed


async def purge_older(broker: RedisBroker, engine: str, age_ms: int) -> int:
    """Delete the dead letters of ``engine`` that died more than ``age_ms`` ago (Redis TIME);
    returns how many. A dead entry's id is its time of death on the server's clock."""
    if age_ms < 0:
        raise ConfigurationError(f"age must be >= 0, not {age_ms} ms")
    key = broker.keys(engine).dead
    async with _errors(f"purge {key}"):
        seconds, micros = await broker._redis.time()
        cutoff = max(0, int(seconds) * 1000 + int(micros) // 1000 - age_ms)
        removed = int(await broker._redis.xtrim(key, minid=f"{cutoff}-0", approximate=False))
    log.info("purged %d dead letters of %s older than %d ms", removed, engine, age_ms)
    return removed
