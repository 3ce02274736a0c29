"""Reads of an engine's tier streams: the priority read (``lua/read.lua``), its blocking
fallback, and the worker's blocking read of the critical stream alone."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis

from ...priority import TIERS, Priority
from ..base import Delivery, ReadPlan
from .keys import Keys
from .scripts import Scripts

_TIER_INDEX = {i + 1: p for i, p in enumerate(TIERS)}


def _str(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _pairs(flat: Sequence[bytes]) -> dict[bytes, bytes]:
    if len(flat) == 2:  # the usual entry: one field, "envelope"
        return {flat[0]: flat[1]}
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _entries(got: Any, streams: Sequence[str]) -> list[Delivery]:
    index = {s.encode(): p for s, p in zip(streams, TIERS, strict=False)}
    return [
        Delivery(index[stream], _str(eid), dict(fields))
        for stream, entries in got or []
        for eid, fields in entries
        if fields is not None
    ]


def _found(found: list[Any] | int) -> list[Delivery] | None:
    """The deliveries of ``read.lua``'s reply; None for its -1 (critical entries wait)."""
    if isinstance(found, int):
        return None
    return [
        Delivery(_TIER_INDEX[i], _str(eid), _pairs(flat), bool(reserved))
        for i, reserved, entries in found
        for eid, flat in entries
    ]


async def ack_read(
    scripts: Scripts,
    keys: Keys,
    consumer: str,
    ids: Mapping[Priority, Sequence[str]],
    read: ReadPlan,
) -> tuple[list[str], list[str], list[Delivery] | None]:
    """``ack.lua`` of ``ids``, then ``read.lua`` (never blocking), in one script call."""
    taken, gone, found = await scripts.ack_read(keys, consumer, ids, read)
    return taken, gone, _found(found)


async def read(
    redis: aioredis.Redis,
    scripts: Scripts,
    keys: Keys,
    consumer: str,
    count: int,
    reserve: Sequence[int],
    block_ms: int,
    skip_critical: bool,
) -> list[Delivery] | None:
    """Priority pass over the tiers; if it finds nothing, one blocking XREADGROUP.
    With ``skip_critical`` the critical stream is neither read nor waited on, and None
    means it holds undelivered entries (read them first)."""
    out = _found(await scripts.read(keys, consumer, count, reserve, skip_critical))
    if out is None:
        return None
    if out or block_ms <= 0:
        return out
    streams = keys.streams[1:] if skip_critical else keys.streams
    got: Any = await redis.xreadgroup(
        keys.group, consumer, dict.fromkeys(streams, ">"), count=1, block=block_ms
    )
    return _entries(got, keys.streams)


async def read_critical(
    redis: aioredis.Redis, keys: Keys, consumer: str, count: int, block_ms: int
) -> list[Delivery]:
    """Up to ``count`` new entries of the critical stream, blocking up to ``block_ms``."""
    stream = keys.stream(Priority.CRITICAL)
    got: Any = await redis.xreadgroup(
        keys.group, consumer, {stream: ">"}, count=count, block=block_ms
    )
    return _entries(got, keys.streams)
