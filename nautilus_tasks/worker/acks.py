"""Acks batched every millisecond into one ownership-checked script call per kind."""

from __future__ import annotations

import asyncio
import logging
import random
from collections import defaultdict
from collections.abc import Callable
from typing import Protocol

from ..broker.base import Action, Broker, DeadLetter, Delivery, Finish, ReadPlan
from ..errors import BusError, BusUnavailable
from ..metrics import WorkerStats
from ..priority import Priority

log = logging.getLogger("nautilus_tasks.worker")

MAX_BATCH = 1000


class Rider(Protocol):
    """A read that goes in the same script call as an ack (``Fetcher``)."""

    def ride(self, acked: int) -> ReadPlan | None: ...

    def rode(self, read: ReadPlan, got: list[Delivery] | None) -> None: ...


class AckBatcher:
    """Collects finished entries and ends them in batches: plain acks (XACK + XDEL) in
    one script call, entries with actions (reply, result, callback, dead letter) in
    another, each action in the same script as its entry's ack.

    A failed call keeps its records and is retried with backoff: the entries stay
    pending meanwhile, so nothing is lost. An entry another consumer owns is refused
    whole (none of its actions happen) and counted as ``ownership_lost``.
    """

    def __init__(
        self, broker: Broker, engine: str, consumer: str, stats: WorkerStats, interval: float
    ) -> None:
        self.broker = broker
        self.engine = engine
        self.consumer = consumer
        self.stats = stats
        self.interval = interval
        self._pending: list[Finish] = []
        self._in_flight = False
        self._settling: set[str] = set()
        self._tried: set[str] = set()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.on_done: Callable[[list[str]], None] | None = None
        """Called with the ids of each batch once the server answered (acked or refused)."""
        self.rider: Rider | None = None
        """The fetch loop, whose next read may go in the same call as a plain ack."""

    def add(self, tier: Priority, entry_id: str, *actions: Action) -> None:
        """End an entry: its actions, then XACK + XDEL, if this consumer still owns it."""
        self._settling.add(entry_id)
        self._pending.append(Finish(tier, entry_id, actions))
        self._idle.clear()
        self._wake.set()

    def settling(self, entry_id: str) -> bool:
        """Whether this batcher holds ``entry_id`` for an ack not yet answered."""
        return entry_id in self._settling

    async def run(self) -> None:
        """Flush forever; cancel to stop (call ``flush`` first)."""
        failures = 0
        while True:
            await self._wake.wait()
            if self.interval and len(self._pending) < MAX_BATCH:
                await asyncio.sleep(self.interval)
            self._wake.clear()
            while self._pending:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                self._in_flight = True
                try:
                    await self._send(batch)
                    failures = 0
                except (BusUnavailable, BusError) as exc:
                    self._pending[:0] = batch
                    self._tried.update(r.entry_id for r in batch)  # the call may have run
                    failures += 1
                    delay = random.uniform(0, min(5.0, 0.05 * 2**failures))
                    log.warning(
                        "ack of %d entries failed (%s); retry in %.2fs", len(batch), exc, delay
                    )
                    await asyncio.sleep(delay)
                finally:
                    self._in_flight = False
            self._idle.set()

    async def _send(self, batch: list[Finish]) -> None:
        """Entries with actions first (``finish.lua``), then the plain acks, with the
        fetch loop's next read in the same call when it waits for the room they free."""
        plain: defaultdict[Priority, list[str]] = defaultdict(list)
        with_actions = [r for r in batch if r.actions]
        for record in batch:
            if not record.actions:
                plain[record.tier].append(record.entry_id)
        taken: list[str] = []
        gone: list[str] = []
        if with_actions:
            taken, gone = await self.broker.finish(self.engine, self.consumer, with_actions)
        if not plain:
            self._settled(batch, taken, gone)
            return
        rider = self.rider
        read = None if rider is None else rider.ride(len(batch))
        if rider is None or read is None:
            t, g = await self.broker.ack(self.engine, self.consumer, plain)
            self._settled(batch, taken + t, gone + g)
            return
        got: list[Delivery] | None = None
        try:
            t, g, got = await self.broker.ack_and_read(self.engine, self.consumer, plain, read)
            self._settled(batch, taken + t, gone + g)
        finally:
            # on a failed call the fetch loop reads again itself; if the read did run,
            # what it took stays pending here unknown and is reclaimed after the lease
            rider.rode(read, got)

    def _settled(self, batch: list[Finish], taken: list[str], gone: list[str]) -> None:
        done = [r.entry_id for r in batch]
        self._settling.difference_update(done)
        if self.on_done is not None:
            self.on_done(done)
        self.stats.counts["acked"] += len(done) - len(taken) - len(gone)
        ours = [i for i in gone if i in self._tried]  # acked by a try whose reply was lost
        self._tried.difference_update(done)
        if ours:
            self.stats.counts["ack_gone"] += len(ours)
            log.debug("%d entries of %s were acked by an earlier try", len(ours), self.engine)
        refused = taken + [i for i in gone if i not in ours]  # settled by another consumer
        for record in batch:
            if record.entry_id not in refused:
                for action in record.actions:
                    if isinstance(action, DeadLetter):
                        self.stats.counts[f"dead_{action.meta['reason']}"] += 1
        if refused:
            self.stats.counts["ownership_lost"] += len(refused)
            log.warning(
                "ack refused for %d entries of %s: another consumer owns or settled them (lease"
                " lost); their replies, results and dead letters are not written here: %s",
                len(refused), self.engine, refused[:5],
            )  # fmt: skip

    async def flush(self, limit: float) -> bool:
        """Wait until every collected entry is ended; False if that took over ``limit`` s."""
        if not self._pending and not self._in_flight:
            return True
        self._wake.set()
        try:
            async with asyncio.timeout(limit):
                while self._pending or self._in_flight:
                    self._idle.clear()
                    await self._idle.wait()
        except TimeoutError:
            return False
        return True
