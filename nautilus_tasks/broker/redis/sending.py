"""The broker's writes of new messages into tier streams: single, bulk and bounded."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis import exceptions as rexc

from ...errors import BacklogFull
from ...priority import TIERS, Priority
from .errors import mapped_errors
from .keys import Keys
from .reads import _str
from .scripts import Scripts


class SendMixin:
    """``enqueue`` (one XADD), ``enqueue_many`` (``enqueue_many.lua``) and the bounded
    ``enqueue_bounded`` / ``enqueue_many_bounded`` (``enqueue.lua`` and
    ``enqueue_many_bounded.lua``: the length check and the writes in one script)."""

    _redis: aioredis.Redis
    _scripts: Scripts

    def keys(self, engine: str) -> Keys:
        raise NotImplementedError

    async def enqueue(self, engine: str, tier: Priority, payload: bytes) -> str:
        async with mapped_errors(f"XADD to {engine}"):
            entry_id = await self._redis.xadd(self.keys(engine).stream(tier), {"envelope": payload})
        return _str(entry_id)

    async def enqueue_many(self, items: Sequence[tuple[str, Priority, bytes]]) -> list[str]:
        """XADD many messages in one round trip: one script call per engine (its keys share
        a slot), pipelined when there are several engines."""
        by_engine: dict[str, list[int]] = {}
        for i, (engine, _, _) in enumerate(items):
            by_engine.setdefault(engine, []).append(i)
        ids: list[str] = [""] * len(items)
        async with mapped_errors(f"XADD {len(items)} messages"):
            if len(by_engine) == 1:
                batch = [(t, p) for _, t, p in items]
                got = [await self._scripts.enqueue_many(self.keys(items[0][0]), batch)]
            else:
                try:
                    got = await self._enqueue_engines(items, by_engine)
                except rexc.NoScriptError:  # the server restarted: load the scripts again
                    await self._scripts.load()
                    got = await self._enqueue_engines(items, by_engine)
        for positions, entry_ids in zip(by_engine.values(), got, strict=True):
            for i, entry_id in zip(positions, entry_ids, strict=True):
                ids[i] = _str(entry_id)
        return ids

    async def _enqueue_engines(
        self, items: Sequence[tuple[str, Priority, bytes]], by_engine: dict[str, list[int]]
    ) -> list[Any]:
        pipe = self._redis.pipeline(transaction=False)
        for engine, positions in by_engine.items():
            batch = [(items[i][1], items[i][2]) for i in positions]
            self._scripts.queue_enqueue_many(pipe, self.keys(engine), batch)
        got: list[Any] = await pipe.execute()
        return got

    async def enqueue_bounded(
        self, engine: str, tier: Priority, payload: bytes, max_backlog: int
    ) -> str:
        """XADD unless the tier stream already holds ``max_backlog`` entries (BacklogFull)."""
        async with mapped_errors(f"XADD to {engine}"):
            entry_id = await self._scripts.enqueue(self.keys(engine), tier, max_backlog, payload)
        if entry_id is None:
            raise BacklogFull(
                f"engine {engine!r} {tier.label} inbox holds {max_backlog} messages or more"
            )
        return _str(entry_id)

    async def enqueue_many_bounded(
        self, engine: str, items: Sequence[tuple[Priority, bytes]], max_backlog: int
    ) -> list[str]:
        """XADD the whole batch, in one script, only if each tier stream it writes stays
        within ``max_backlog`` entries; else write nothing and raise BacklogFull."""
        async with mapped_errors(f"XADD {len(items)} messages to {engine}"):
            got = await self._scripts.enqueue_many_bounded(self.keys(engine), max_backlog, items)
        if isinstance(got, int):
            tier = TIERS[got - 1]
            count = sum(1 for t, _ in items if t == tier)
            raise BacklogFull(
                f"engine {engine!r} {tier.label} inbox has no room for {count} more messages"
                f" (max_backlog {max_backlog}); none of the {len(items)} was stored"
            )
        return [_str(entry_id) for entry_id in got]
