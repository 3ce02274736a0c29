"""Buffered sending: sends are batched per tier and flushed in one pipelined round trip.

``await send()`` still returns only once its message is stored: it waits for the flush
of its batch. A tier whose last flush is done flushes a new message at once (a lone
sender pays one round trip, no lingering); while a flush of the tier is in flight, new
messages gather and go when it returns, after the tier's interval, or when they reach
the tier's ``max_batch``, whichever comes first. So concurrent senders share round
trips. A failed flush raises in every caller awaiting it; ``send_nowait`` callers learn
of a failure from the next ``flush()``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from .broker.base import Broker
from .errors import ConfigurationError, NautilusTasksError
from .priority import TIERS, Priority

log = logging.getLogger("nautilus_tasks.client")

DEFAULT_INTERVALS: Mapping[Priority, float] = {
    Priority.CRITICAL: 0.0,
    Priority.HIGH: 0.001,
    Priority.NORMAL: 0.005,
    Priority.LOW: 0.020,
}

DEFAULT_MAX_BATCH = 500
"""The largest batch of a tier, unless ``BufferConfig.max_batch`` says otherwise."""


@dataclass(frozen=True)
class BufferConfig:
    """Flush interval per tier (seconds; 0 flushes at once) and the largest batch per
    tier: one int for every tier, or a mapping (a tier missing from it: 500)."""

    intervals: Mapping[Priority, float] = field(default_factory=lambda: dict(DEFAULT_INTERVALS))
    max_batch: int | Mapping[Priority, int] = DEFAULT_MAX_BATCH
    enabled: bool = True

    def __post_init__(self) -> None:
        sizes = [self.max_batch] if isinstance(self.max_batch, int) else self.max_batch.values()
        if any(n < 1 for n in sizes) or any(v < 0 for v in self.intervals.values()):
            raise ConfigurationError("max_batch must be >= 1 and intervals >= 0")

    def batch_limit(self, tier: Priority) -> int:
        """The largest batch of ``tier``."""
        if isinstance(self.max_batch, int):
            return self.max_batch
        return self.max_batch.get(tier, DEFAULT_MAX_BATCH)


Item = tuple[str, Priority, bytes, "asyncio.Future[None] | None"]


class SendBuffer:
    """Per-tier batches of (engine, tier, payload) waiting for one pipelined XADD call."""

    def __init__(self, broker: Broker, config: BufferConfig | None = None) -> None:
        self.broker = broker
        self.config = config or BufferConfig()
        self._batches: dict[Priority, list[Item]] = {t: [] for t in TIERS}
        self._timers: dict[Priority, asyncio.TimerHandle] = {}
        self._flushing: set[asyncio.Task[None]] = set()
        self._errors: list[NautilusTasksError] = []
        self._in_flight: dict[Priority, int] = dict.fromkeys(TIERS, 0)

    async def put(self, engine: str, tier: Priority, payload: bytes) -> None:
        """Add to the tier's batch and wait until the batch is stored (or failed)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._add((engine, tier, payload, future))
        await future

    def put_nowait(self, engine: str, tier: Priority, payload: bytes) -> None:
        """Add to the tier's batch without waiting; a failure surfaces in ``flush()``."""
        self._add((engine, tier, payload, None))

    def _add(self, item: Item) -> None:
        tier = item[1]
        batch = self._batches[tier]
        batch.append(item)
        interval = self.config.intervals.get(tier, 0.0)
        idle = not self._in_flight[tier]
        if idle or len(batch) >= self.config.batch_limit(tier) or interval <= 0:
            self._start(tier)
        elif tier not in self._timers:
            loop = asyncio.get_running_loop()
            self._timers[tier] = loop.call_later(interval, self._start, tier)

    def _start(self, tier: Priority) -> None:
        timer = self._timers.pop(tier, None)
        if timer is not None:
            timer.cancel()
        batch, self._batches[tier] = self._batches[tier], []
        if batch:
            self._in_flight[tier] += 1
            task = asyncio.get_running_loop().create_task(self._store(tier, batch))
            self._flushing.add(task)
            task.add_done_callback(lambda t: self._stored(tier, t))

    def _stored(self, tier: Priority, task: asyncio.Task[None]) -> None:
        self._flushing.discard(task)
        self._in_flight[tier] -= 1
        if self._batches[tier] and not self._in_flight[tier]:
            self._start(tier)  # what gathered meanwhile goes now

    async def _store(self, tier: Priority, batch: list[Item]) -> None:
        size = self.config.batch_limit(tier)
        for start in range(0, len(batch), size):
            part = batch[start : start + size]
            try:
                await self.broker.enqueue_many([(e, t, p) for e, t, p, _ in part])
            except NautilusTasksError as exc:
                self._fail(part, exc)
                continue
            for *_, future in part:
                if future is not None and not future.done():
                    future.set_result(None)

    def _fail(self, part: list[Item], exc: NautilusTasksError) -> None:
        waiting = [f for *_, f in part if f is not None]
        for future in waiting:
            if not future.done():
                future.set_exception(exc)
        if len(waiting) < len(part):  # send_nowait messages: report at the next flush()
            self._errors.append(exc)
            log.error("flush of %d buffered messages failed: %s", len(part) - len(waiting), exc)

    async def flush(self) -> None:
        """Send every batch now and wait; raise the first failure since the last flush."""
        for tier in TIERS:
            self._start(tier)
        while self._flushing:
            await asyncio.gather(*self._flushing, return_exceptions=True)
        if self._errors:
            first, self._errors = self._errors[0], []
            raise first
