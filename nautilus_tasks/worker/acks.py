"""Acks batched every millisecond into one ownership-checked script call."""

from __future__ import annotations

import asyncio
import logging
import random
from collections import defaultdict
from collections.abc import Callable

from ..broker.base import Broker
from ..errors import BusError, BusUnavailable
from ..metrics import WorkerStats
from ..priority import Priority

log = logging.getLogger("nautilus_tasks.worker")

MAX_BATCH = 1000


class AckBatcher:
    """Collects finished entry ids and acks them (XACK + XDEL) in batches.

    A failed ack keeps its ids and is retried with backoff: the entries stay
    pending meanwhile, so nothing is lost, and a message is never acked twice.
    """

    def __init__(
        self, broker: Broker, engine: str, consumer: str, stats: WorkerStats, interval: float
    ) -> None:
        self.broker = broker
        self.engine = engine
        self.consumer = consumer
        self.stats = stats
        self.interval = interval
        self._pending: defaultdict[Priority, list[str]] = defaultdict(list)
        self._size = 0
        self._in_flight = False
        self._settling: set[str] = set()
        self._tried: set[str] = set()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.on_done: Callable[[list[str]], None] | None = None
        """Called with the ids of each batch once the server answered (acked or refused)."""

    def settling(self, entry_id: str) -> bool:
        """Whether this batcher holds ``entry_id`` for an ack not yet answered."""
        return entry_id in self._settling

    def add(self, tier: Priority, entry_id: str) -> None:
        self._settling.add(entry_id)
        self._pending[tier].append(entry_id)
        self._size += 1
        self._idle.clear()
        self._wake.set()

    def _take(self) -> dict[Priority, list[str]]:
        batch: dict[Priority, list[str]] = {}
        room = MAX_BATCH
        for tier in list(self._pending):
            ids = self._pending[tier]
            batch[tier], self._pending[tier] = ids[:room], ids[room:]
            room -= len(batch[tier])
            if not self._pending[tier]:
                del self._pending[tier]
        self._size -= sum(len(v) for v in batch.values())
        return batch

    def _restore(self, batch: dict[Priority, list[str]]) -> None:
        for tier, ids in batch.items():
            self._tried.update(ids)  # the failed call may have run: "gone" is then ours
            self._pending[tier][:0] = ids
            self._size += len(ids)

    async def run(self) -> None:
        """Flush forever; cancel to stop (call ``flush`` first)."""
        failures = 0
        while True:
            await self._wake.wait()
            if self.interval and self._size < MAX_BATCH:
                await asyncio.sleep(self.interval)
            self._wake.clear()
            while self._size:
                batch = self._take()
                self._in_flight = True
                try:
                    await self._send(batch)
                    failures = 0
                except (BusUnavailable, BusError) as exc:
                    self._restore(batch)
                    failures += 1
                    delay = random.uniform(0, min(5.0, 0.05 * 2**failures))
                    log.warning(
                        "ack of %d entries failed (%s); retry in %.2fs", self._size, exc, delay
                    )
                    await asyncio.sleep(delay)
                finally:
                    self._in_flight = False
            self._idle.set()

    async def _send(self, batch: dict[Priority, list[str]]) -> None:
        taken, gone = await self.broker.ack(self.engine, self.consumer, batch)
        done = [i for ids in batch.values() for i in ids]
        self._settling.difference_update(done)
        if self.on_done is not None:
            self.on_done(done)
        self.stats.counts["acked"] += len(done) - len(taken) - len(gone)
        ours = [i for i in gone if i in self._tried]  # acked by a try whose reply was lost
        self._tried.difference_update(done)
        if ours:
            self.stats.counts["ack_gone"] += len(ours)
            log.debug("%d entries of %s were acked by an earlier try", len(ours), self.engine)
        taken += [i for i in gone if i not in ours]  # settled by another consumer meanwhile
        if taken:
            self.stats.counts["ownership_lost"] += len(taken)
            log.warning(
                "ack refused for %d entries of %s: another consumer owns them now (lease lost);"
                " they will run again there: %s",
                len(taken), self.engine, taken[:5],
            )  # fmt: skip

    async def flush(self, limit: float) -> bool:
        """Wait until every collected id is acked; False if that took over ``limit`` s."""
        if not self._size and not self._in_flight:
            return True
        self._wake.set()
        try:
            async with asyncio.timeout(limit):
                while self._size or self._in_flight:
                    self._idle.clear()
                    await self._idle.wait()
        except TimeoutError:
            return False
        return True
