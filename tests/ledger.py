"""The bookkeeping of a fault test: every acknowledged send and every execution.

Handlers in ``tests/apps`` record each execution in Redis (``P:test:runs``, a hash of
task argument ``n`` -> executions). A test adds to ``sent`` only the sends that the
framework acknowledged (``await send()`` returned), then ``check`` compares.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import redis.asyncio as aioredis


@dataclass
class Report:
    missing: set[int]
    """Acknowledged sends that never ran: must be empty."""
    unknown: set[int]
    """Executions of something never sent: must be empty."""
    duplicates: int
    """Extra executions beyond the first, summed over all messages."""


@dataclass
class Ledger:
    raw: aioredis.Redis
    prefix: str
    sent: set[int] = field(default_factory=set)

    @property
    def runs_key(self) -> str:
        return f"{self.prefix}:test:runs"

    async def executions(self) -> dict[int, int]:
        data = await self.raw.hgetall(self.runs_key)
        return {int(k): int(v) for k, v in data.items()}

    async def executed_count(self) -> int:
        return int(await self.raw.hlen(self.runs_key))

    async def all_ran(self) -> bool:
        """Every acknowledged send has run at least once."""
        return await self.executed_count() >= len(self.sent) and not (await self.check()).missing

    async def check(self) -> Report:
        runs = await self.executions()
        return Report(
            missing=self.sent - set(runs),
            unknown=set(runs) - self.sent,
            duplicates=sum(v - 1 for v in runs.values()),
        )
