"""The fetch loop: priority reads into a bounded local queue served by priority."""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable

from ..broker.base import Broker, Delivery
from ..errors import BusError, BusUnavailable
from ..priority import TIERS, Priority

log = logging.getLogger("nautilus_tasks.worker")


class LocalQueue:
    """Prefetched deliveries. Served critical first; the anti-starvation share's
    deliveries are served as if critical, so the share holds end to end.

    One FIFO per tier, and an idle consumer coroutine is handed a delivery directly
    (it only waits when every FIFO is empty): cheaper than a heap of tuples.
    """

    def __init__(self) -> None:
        self._tiers: tuple[deque[Delivery], ...] = tuple(deque() for _ in TIERS)
        self._waiters: deque[asyncio.Future[Delivery]] = deque()
        self._size = 0

    def put(self, delivery: Delivery) -> None:
        while self._waiters:  # they wait only while nothing is queued
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(delivery)
                return
        key = Priority.CRITICAL if delivery.reserved else delivery.tier
        self._tiers[key].append(delivery)
        self._size += 1

    def _pop(self) -> Delivery:
        for fifo in self._tiers:
            if fifo:
                self._size -= 1
                return fifo.popleft()
        raise IndexError("empty")

    async def get(self) -> Delivery:
        if self._size:
            return self._pop()
        waiter: asyncio.Future[Delivery] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # handed one as we were cancelled
                delivery = waiter.result()
                key = Priority.CRITICAL if delivery.reserved else delivery.tier
                self._tiers[key].appendleft(delivery)
                self._size += 1
            raise

    def drain(self) -> list[Delivery]:
        """Take every delivery that has not started."""
        out = [d for fifo in self._tiers for d in fifo]
        for fifo in self._tiers:
            fifo.clear()
        self._size = 0
        return out

    def __len__(self) -> int:
        return self._size


class Fetcher:
    """Keeps the local queue filled up to ``capacity`` held messages (queued + running)."""

    def __init__(
        self,
        broker: Broker,
        engine: str,
        consumer: str,
        queue: LocalQueue,
        *,
        capacity: int,
        block_ms: int,
        low_share: float,
    ) -> None:
        self.broker = broker
        self.engine = engine
        self.consumer = consumer
        self.queue = queue
        self.capacity = capacity
        self.block_ms = block_ms
        self.low_share = low_share
        self.held = 0
        self.last_fetch = time.monotonic()
        """When a read last returned (with or without messages): the health signal."""
        self._space = asyncio.Event()
        self._credits = [0.0, 0.0, 0.0]
        self._stopping = False
        self.on_hold: Callable[[str, Priority], None] | None = None
        """Called for each accepted delivery (the worker's lease table)."""

    def stop(self) -> None:
        """Fetch no more; the loop ends at its next turn even if a cancellation was lost."""
        self._stopping = True
        self._space.set()

    def release(self) -> None:
        """One held message is finished: room for another."""
        self.held -= 1
        self._space.set()

    @property
    def free(self) -> int:
        """Room for more messages: capacity minus those queued or running."""
        return self.capacity - self.held

    def accept(self, deliveries: list[Delivery]) -> None:
        """Queue deliveries (read or reclaimed) for the executors."""
        self.held += len(deliveries)
        for delivery in deliveries:
            if self.on_hold is not None:
                self.on_hold(delivery.entry_id, delivery.tier)
            self.queue.put(delivery)

    def _reserve(self, free: int) -> list[int]:
        """Whole entries of the share owed to high, normal and low; fractions carry over."""
        out = []
        for i in range(3):
            self._credits[i] += free * self.low_share
            whole = math.floor(self._credits[i])
            self._credits[i] -= whole
            out.append(whole)
        return out

    async def poll(self) -> int:
        """One non-blocking read into the queue, up to the free room; returns how many
        deliveries it took. ``nautilus_tasks.testing`` drives its drain with this."""
        free = self.capacity - self.held
        if free <= 0 or self._stopping:
            return 0
        got = await self.broker.read(self.engine, self.consumer, free, self._reserve(free), 0)
        self.last_fetch = time.monotonic()
        self.accept(got)
        return len(got)

    async def run(self) -> None:
        """Fetch until cancelled. Bus errors back off with jitter and never end the loop."""
        failures = 0
        while not self._stopping:
            free = self.capacity - self.held
            if free <= 0:
                self._space.clear()
                await self._space.wait()
                continue
            try:
                got = await self.broker.read(
                    self.engine, self.consumer, free, self._reserve(free), self.block_ms
                )
            except (BusUnavailable, BusError) as exc:
                failures += 1
                delay = random.uniform(0, min(5.0, 0.05 * 2**failures))
                log.warning("fetch from %s failed (%s); retrying in %.2fs", self.engine, exc, delay)
                await asyncio.sleep(delay)
                continue
            if failures:
                log.info("fetching from %s again after %d failures", self.engine, failures)
                failures = 0
            self.last_fetch = time.monotonic()
            if self._stopping:  # stopped during the read: hand these back with the rest
                log.debug("stopped during a read; %d deliveries stay pending", len(got))
                return
            self.accept(got)
