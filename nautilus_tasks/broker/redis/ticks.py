"""Periodic schedules on Redis: the replies of ``tick.lua`` and the ``P:{E}:schedules`` hash."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import cast

import redis.asyncio as aioredis

from ..base import ScheduleState, TickResult, TickStatus
from .keys import Keys

_STATUSES: tuple[TickStatus, ...] = ("enqueued", "duplicate", "stale", "full")


def tick_result(status: str, entry_id: str) -> TickResult:
    """The reply of ``tick.lua``, checked."""
    for known in _STATUSES:
        if status == known:
            return TickResult(known, entry_id or None)
    raise ValueError(f"tick.lua answered an unknown status {status!r}")


async def schedule_states(redis: aioredis.Redis, keys: Keys) -> dict[str, ScheduleState]:
    """Every schedule the engine's hash knows, by id (fields ``<id>|<what>``)."""
    raw = await cast(Awaitable[dict[bytes, bytes]], redis.hgetall(keys.schedules))
    fields: dict[str, dict[str, str]] = {}
    for name, value in raw.items():
        schedule, _, what = name.decode().rpartition("|")
        fields.setdefault(schedule, {})[what] = value.decode()
    out = {}
    for schedule, values in fields.items():
        fire, at = values.get("fire"), values.get("at")
        out[schedule] = ScheduleState(
            fire_ms=None if fire is None else int(fire),
            enqueued_at_ms=None if at is None else int(at),
            message_id=values.get("message"),
            enqueued=int(values.get("enqueued", 0)),
            refused=int(values.get("refused", 0)),
            full=int(values.get("full", 0)),
        )
    return out
