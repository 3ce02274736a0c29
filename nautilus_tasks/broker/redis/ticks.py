"""Periodic schedules on Redis: the replies of ``tick.lua`` and the ``P:{E}:schedules`` hash."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import cast

import redis.asyncio as aioredis

from ...priority import Priority
from ..base import ScheduleState, TickResult, TickStatus
from .errors import mapped_errors
from .keys import Keys
from .scripts import Scripts

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


class TicksMixin:
    """The broker's periodic-tick operations (``tick.lua`` and the schedules hash)."""

    _redis: aioredis.Redis
    _scripts: Scripts

    def keys(self, engine: str) -> Keys:
        raise NotImplementedError

    async def enqueue_tick(
        self,
        engine: str,
        tier: Priority,
        schedule: str,
        fire_ms: int,
        payload: bytes,
        *,
        message_id: str,
        dedup_ms: int,
        max_backlog: int | None = None,
    ) -> TickResult:
        """Dedup one tick of a schedule and XADD its task, in one script (``tick.lua``)."""
        args = [dedup_ms, "" if max_backlog is None else max_backlog, message_id, payload]
        async with mapped_errors(f"tick {schedule}@{fire_ms} of {engine}"):
            status, entry_id = await self._scripts.tick(
                self.keys(engine), tier, schedule, fire_ms, args
            )
        return tick_result(status, entry_id)

    async def schedule_states(self, engine: str) -> dict[str, ScheduleState]:
        async with mapped_errors(f"read schedules of {engine}"):
            return await schedule_states(self._redis, self.keys(engine))
