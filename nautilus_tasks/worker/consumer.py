"""The fetch loop: priority reads into a bounded local queue served by priority."""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable

from ..aio import cancel_all
from ..broker.base import Broker, Delivery, ReadPlan
from ..errors import BusError, BusUnavailable
from ..priority import TIERS, Priority

log = logging.getLogger("nautilus_tasks.worker")

PER_TURN = 8
"""Idle consumer coroutines woken per turn of the event loop, and deliveries one consumer
takes in a row before it yields."""


CRITICAL_QUIET = 1.0
"""Seconds after the blocking read last took a critical entry in during which a full
worker acks and reads in separate calls (see ``Fetcher``)."""


class LocalQueue:
    """Prefetched deliveries. Served critical first; the anti-starvation share's
    deliveries are served as if critical, so the share holds end to end.

    One FIFO per tier, and idle consumer coroutines are handed deliveries directly:
    cheaper than a heap of tuples. At most ``per_turn`` are woken per turn of the event
    loop, and one that finds deliveries queued yields after ``per_turn`` in a row. That
    bounds one consumer's run, not a turn: every consumer that yielded runs again in the
    next turn, so with handlers that never suspend a turn runs several consumers' runs
    before the loop reads its sockets (``bench/turns.py``: p99 about 1 ms while draining
    no-op tasks). A budget per turn was measured and not kept: it cost a task step per
    message (bench/README.md, "2026-12-05, second session").
    """

    def __init__(self, per_turn: int = PER_TURN) -> None:
        self._tiers: tuple[deque[Delivery], ...] = tuple(deque() for _ in TIERS)
        self._waiters: deque[asyncio.Future[Delivery]] = deque()
        self._size = 0
        self._per_turn = per_turn
        self._woken = 0
        self._streak = 0

    def put(self, delivery: Delivery) -> None:
        key = Priority.CRITICAL if delivery.reserved else delivery.tier
        self._tiers[key].append(delivery)
        self._size += 1
        if self._waiters:
            self._wake()

    def _wake(self) -> None:
        """Hand queued deliveries to idle consumers, ``per_turn`` in this turn of the loop;
        the next turn hands out more."""
        if not self._woken:
            asyncio.get_running_loop().call_soon(self._next_turn)
        while self._waiters and self._size and self._woken < self._per_turn:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(self._pop())
                self._woken += 1

    def _next_turn(self) -> None:
        self._woken = 0
        if self._waiters and self._size:
            self._wake()

    def _pop(self) -> Delivery:
        for fifo in self._tiers:
            if fifo:
                self._size -= 1
                return fifo.popleft()
        raise IndexError("empty")

    async def get(self) -> Delivery:
        if self._size:
            self._streak += 1
            if self._streak < self._per_turn:
                return self._pop()
            self._streak = 0
            await asyncio.sleep(0)  # let the loop read its sockets (see the class)
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
    """Keeps the local queue filled up to ``capacity`` held messages (queued + running).

    While every place is taken, a blocking read of the critical stream alone stays
    outstanding (``critical_room`` places beyond the capacity, for critical entries only),
    so a critical message is taken in as it arrives rather than at the next read that
    freed capacity allows. One reader at a time owns the critical stream: the priority
    read leaves it alone while that blocking read is outstanding, and reads nothing if
    critical entries wait undelivered then; so critical entries reach the local queue in
    stream order, and no lower tier is read while one waits unread.

    While the loop waits for room, its next read goes in the same script call as the ack
    batch that frees the room (``ride``, ``rode``; the AckBatcher makes the call): one
    round trip instead of two, the same rules for the critical stream. Not while critical
    messages arrive (one taken in by the blocking read in the last ``CRITICAL_QUIET``
    seconds): the one longer script holds back the server's answer to that blocking read,
    which then comes as the worker takes in the whole batch; with two calls, critical
    latency under a backlog stays as it was (bench/README.md, "2026-12-05, second session").
    """

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
        critical_room: int = 0,
    ) -> None:
        self.broker = broker
        self.engine = engine
        self.consumer = consumer
        self.queue = queue
        self.capacity = capacity
        self.block_ms = block_ms
        self.low_share = low_share
        self.critical_room = critical_room
        self.held = 0
        self.last_fetch = time.monotonic()
        """When a read last returned (with or without messages): the health signal."""
        self._space = asyncio.Event()
        self._room = asyncio.Event()
        self._credits = [0.0, 0.0, 0.0]
        self._stopping = False
        self._critical: asyncio.Task[None] | None = None
        """The blocking read of the critical stream, while it is outstanding."""
        self._critical_drained = False
        """The last read of the critical stream left nothing undelivered in it."""
        self._below = False
        """A read of the lower tiers only is outstanding."""
        self._full = False
        """The fetch loop waits for room: a read may go with the next ack (``ride``)."""
        self._riding = False
        """A read sent with an ack is outstanding: the fetch loop waits for it."""
        self._critical_seen = 0.0
        """When the blocking read last took critical entries in (monotonic seconds)."""
        self.on_hold: Callable[[str, Priority], None] | None = None
        """Called for each accepted delivery (the worker's lease table)."""

    def stop(self) -> None:
        """Fetch no more; the loop ends at its next turn even if a cancellation was lost."""
        self._stopping = True
        self._space.set()
        self._room.set()

    def release(self, count: int = 1) -> None:
        """Held messages are finished: room for as many others."""
        self.held -= count
        self._space.set()
        self._room.set()

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
        """Whole entries of the share owed to high, normal and low, within the ``free``
        room of this read; fractions, and whole parts the room cannot hold, carry over.
        The credits grow in step, so when the room is short the largest credit goes
        first, the lower tier first among equals: the tiers take turns."""
        out = [0, 0, 0]
        for i in range(3):
            self._credits[i] += free * self.low_share
        room = free
        for i in sorted(range(3), key=lambda t: (-self._credits[t], -t)):
            whole = min(math.floor(self._credits[i]), room)
            self._credits[i] -= whole
            out[i] = whole
            room -= whole
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
        try:
            await self._fetch()
        finally:
            await self.close()

    async def close(self) -> None:
        """Stop, and wait until the blocking read of the critical stream has ended."""
        self.stop()
        if self._critical is not None:
            await cancel_all([self._critical])

    async def _fetch(self) -> None:
        failures = 0
        while not self._stopping:
            free = self.capacity - self.held
            if free <= 0 or self._riding:
                self._watch_critical()
                self._full = True
                self._space.clear()
                try:
                    await self._space.wait()
                finally:
                    self._full = False
                continue
            try:
                got = await self._read(free)
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
            if self._stopping:  # stopped during a read: hand these back with the rest
                log.debug("stopped during a read; deliveries stay pending")
                return
            if got is None:  # critical entries wait undelivered: let the blocking read end
                if self._critical is not None:
                    self._space.clear()
                    await self._space.wait()
                continue
            self.accept(got)

    async def _read(self, free: int) -> list[Delivery] | None:
        """The priority read, or, while the critical stream has its own reader, a read of
        the lower tiers only (None: critical entries wait undelivered)."""
        reserve = self._reserve(free)
        if self._critical is None:
            got = await self.broker.read(self.engine, self.consumer, free, reserve, self.block_ms)
            self._note_critical(got, free)
            return got
        self._below = True
        try:
            return await self.broker.read_below_critical(
                self.engine, self.consumer, free, reserve, self.block_ms
            )
        finally:
            self._below = False

    def ride(self, acked: int) -> ReadPlan | None:
        """The read to send in the same call as an ack of ``acked`` held entries, if the
        fetch loop waits for room. Its size is the room there will be once they are acked
        (the script acks first), so this consumer never holds more than the capacity, on
        the server either. None: ack alone."""
        if not self._full or self._riding or self._stopping:
            return None
        if time.monotonic() - self._critical_seen < CRITICAL_QUIET:
            return None
        free = self.capacity - self.held + acked
        if free <= 0:
            return None
        self._riding = True
        skip = self._critical is not None
        self._below = skip
        return ReadPlan(free, self._reserve(free), skip)

    def rode(self, read: ReadPlan, got: list[Delivery] | None) -> None:
        """The reply to ``ride``'s read (the acked entries already released); ``got`` is
        None when it skipped critical and critical entries wait undelivered, or the call
        failed (then the fetch loop reads again)."""
        self._riding = self._below = False
        if got is not None and not self._stopping:  # else handed back with the rest
            self.last_fetch = time.monotonic()
            if not read.skip_critical:
                self._note_critical(got, read.size)
            self.accept(got)
        self._space.set()
        self._room.set()

    def _note_critical(self, got: list[Delivery], free: int) -> None:
        """After a read that included critical: whether it left critical entries unread."""
        self._critical_drained = len(got) < free or any(
            d.tier is not Priority.CRITICAL and not d.reserved for d in got
        )

    def _watch_critical(self) -> None:
        """Every place is taken: keep a blocking read of the critical stream outstanding,
        if it has nothing undelivered (else the next priority read takes that first)."""
        if (
            self.critical_room > 0
            and not self._riding
            and self._critical is None
            and self._critical_drained
            and not self._stopping
            and self.held < self.capacity + self.critical_room
        ):
            self._critical = asyncio.create_task(self._read_critical())

    async def _read_critical(self) -> None:
        """Own the critical stream while every place is taken (or while the lower tiers'
        read is outstanding): block on it and queue what comes, up to the extra room."""
        try:
            while not self._stopping:
                room = self.capacity + self.critical_room - self.held
                if room <= 0:
                    if not self._below:
                        break  # the priority read takes critical first once space frees
                    self._room.clear()
                    await self._room.wait()
                    continue
                got = await self.broker.read_critical(
                    self.engine, self.consumer, room, self.block_ms
                )
                if self._stopping:
                    return  # they stay pending and are handed back with the rest
                self._critical_drained = len(got) < room
                if got:
                    self._critical_seen = time.monotonic()
                self.accept(got)
                self._space.set()
                if not self._below and (self.held < self.capacity or len(got) >= room):
                    break  # the priority read (critical first) has room again
        except (BusUnavailable, BusError) as exc:
            self._critical_drained = False
            log.warning("blocking read of %s's critical tier failed (%s)", self.engine, exc)
        finally:
            self._critical = None
            self._space.set()
