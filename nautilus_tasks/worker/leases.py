"""Leases: renew what this worker holds, reclaim what dead workers left behind.

Every entry a worker holds, running or prefetched, has its idle time reset every
third of the lease with XCLAIM ... JUSTID (the delivery count does not rise). An
entry idle past the whole lease belongs to a worker that died or stalled; any
worker takes it over with XAUTOCLAIM, following the cursor to ``0-0``. An entry
delivered more than ``max_deliveries`` times is dead-lettered as ``poison``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable

from ..broker.base import Broker
from ..errors import BusError
from ..message import now_ms
from ..metrics import WorkerStats
from ..priority import TIERS, Priority
from .consumer import Fetcher

log = logging.getLogger("nautilus_tasks.worker")

BATCH = 1000


class Leases:
    """The entries one consumer holds, with their renewal and the reclaim of others'."""

    def __init__(
        self,
        broker: Broker,
        engine: str,
        consumer: str,
        stats: WorkerStats,
        *,
        lease: float,
        max_deliveries: int,
    ) -> None:
        self.broker = broker
        self.engine = engine
        self.consumer = consumer
        self.stats = stats
        self.lease = lease
        self.max_deliveries = max_deliveries
        self.held: dict[str, Priority] = {}
        self.settling: Callable[[str], bool] | None = None
        """Whether an entry is being acked by this worker (then "gone" is no loss)."""
        self._cursors = dict.fromkeys(TIERS, "0-0")

    def hold(self, entry_id: str, tier: Priority) -> None:
        self.held[entry_id] = tier

    def drop(self, *entry_ids: str) -> None:
        for entry_id in entry_ids:
            self.held.pop(entry_id, None)

    async def renew_loop(self) -> None:
        """Renew every third of the lease; a failure is retried at the next turn."""
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                await self.renew_once()
            except BusError as exc:
                log.warning("lease renewal in %s failed: %s", self.engine, exc)

    async def renew_once(self) -> None:
        items = list(self.held.items())
        for start in range(0, len(items), BATCH):
            by_tier: defaultdict[Priority, list[str]] = defaultdict(list)
            for entry_id, tier in items[start : start + BATCH]:
                by_tier[tier].append(entry_id)
            lost, gone = await self.broker.renew(self.engine, self.consumer, by_tier)
            # no longer pending: fine if our own ack settled it, else another consumer did
            ours = self.settling or (lambda _: False)
            lost = [i for i in lost if i in self.held]
            lost += [i for i in gone if i in self.held and not ours(i)]
            for entry_id in (*lost, *gone):
                self.held.pop(entry_id, None)
            self.stats.counts["lease_lost"] += len(lost)
            if lost:
                log.warning(
                    "lost the lease of %d entries of %s (another consumer took them): %s",
                    len(lost), self.engine, lost[:5],
                )  # fmt: skip

    async def reclaim_loop(self, fetcher: Fetcher) -> None:
        """Look for abandoned entries several times per lease."""
        interval = min(5.0, max(0.05, self.lease / 4))
        while True:
            try:
                await self.reclaim_once(fetcher)
            except BusError as exc:
                log.warning("reclaim in %s failed: %s", self.engine, exc)
            await asyncio.sleep(interval)

    async def reclaim_once(self, fetcher: Fetcher) -> int:
        """Take over entries idle past the lease, critical tier first.

        A busy worker still takes a small batch beyond its free capacity: abandoned
        entries are the oldest work, and are served ahead of their tier. Entries this
        worker already holds (idle only because the server was unreachable) are not
        queued a second time.
        """
        budget = max(fetcher.free, max(1, fetcher.capacity // 10))
        taken = 0
        for tier in TIERS:
            while budget > 0:
                step = await self.broker.reclaim(
                    self.engine, self.consumer, tier, cursor=self._cursors[tier],
                    count=budget, min_idle_ms=int(self.lease * 1000),
                    max_deliveries=self.max_deliveries, now_ms=now_ms(),
                )  # fmt: skip
                self._cursors[tier] = step.cursor
                fresh = [d for d in step.deliveries if d.entry_id not in self.held]
                self._account(tier, step.deleted, step.poisoned, len(fresh))
                fetcher.accept([d._replace(reserved=True) for d in fresh])
                budget -= len(step.deliveries) + len(step.poisoned)
                taken += len(fresh)
                if step.cursor == "0-0":
                    break
        return taken

    def _account(self, tier: Priority, deleted: list[str], poisoned: list[str], got: int) -> None:
        if got:
            self.stats.counts["reclaimed"] += got
            log.warning(
                "reclaimed %d %s entries of %s idle past the lease", got, tier.label, self.engine
            )
        if poisoned:
            self.stats.counts["dead_poison"] += len(poisoned)
            log.error(
                "dead-lettered %d poison entries of %s (delivered more than %d times): %s",
                len(poisoned), self.engine, self.max_deliveries, poisoned[:5],
            )  # fmt: skip
        if deleted:
            self.stats.counts["deleted_pending"] += len(deleted)
            log.error(
                "%d pending entries of %s %s were deleted outside the framework (data lost): %s",
                len(deleted), self.engine, tier.label, deleted[:5],
            )  # fmt: skip
