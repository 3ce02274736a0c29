"""The scheduler: APScheduler's asyncio scheduler wakes it at each tick; each tick goes to
Redis through one script that enqueues it exactly once, whatever the number of schedulers.

On start, the ticks missed since the last fire time kept in Redis are handled by each
schedule's misfire policy. Then APScheduler's job of each schedule only wakes a single loop,
which enqueues the ticks due since the last one it handled (``live`` policy): the work of a
tick never runs inside APScheduler, so a stop waits for the tick in flight and no more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger

from ..broker.base import ScheduleState
from ..errors import BusError, ConfigurationError, NautilusTasksError
from ..message import encode
from ..periodic import Schedule
from ..task import SendOptions
from . import ticks

if TYPE_CHECKING:
    from ..client import Client
    from ..engine import Engine

log = logging.getLogger("nautilus_tasks.scheduler")


class Entry:
    """One schedule as this process runs it: its trigger and the last tick it handled."""

    def __init__(self, schedule: Schedule) -> None:
        self.schedule = schedule
        self.trigger: BaseTrigger = ticks.make_trigger(schedule)
        self.cursor: datetime | None = None
        """Ticks up to here are handled (or were before this process started)."""

    @property
    def name(self) -> str:
        return f"{self.schedule.engine}/{self.schedule.id}"


class Scheduler:
    """Runs the schedules of ``engines`` through ``client`` until ``stop()``.

    ``clock`` (epoch seconds) is for tests; fire times always come from the triggers.
    """

    def __init__(
        self,
        engines: Sequence[Engine],
        client: Client,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.entries = [Entry(s) for e in engines for s in e.schedules.values()]
        if not self.entries:
            names = ", ".join(e.name for e in engines) or "no engine"
            raise ConfigurationError(f"{names}: no periodic schedule declared")
        for entry in self.entries:
            client.link_of(entry.schedule.task.engine)  # every engine's bus is connected
        self.client = client
        self.counts: Counter[str] = Counter()
        """Tick outcomes: enqueued, duplicate, stale, full, failed; catchup (enqueued)."""
        self.started = asyncio.Event()
        """Set once the catch-up is done and APScheduler runs."""
        self._clock = clock
        self._wakeups: asyncio.Queue[Entry | None] = asyncio.Queue()
        self._stopping = asyncio.Event()

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def stop(self) -> None:
        """Stop after the tick in flight, if any (safe from a signal handler)."""
        self._stopping.set()
        self._wakeups.put_nowait(None)

    async def _start(self) -> bool:
        """Catch up, retrying with backoff while the bus is down; False if stopped first."""
        delay = 0.5
        while not self._stopping.is_set():
            try:
                await self.catch_up()
                return True
            except BusError as exc:
                log.warning("cannot catch up (%s); retrying in %.1fs", exc, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            delay = min(10.0, delay * 2)
        return False

    async def run(self) -> None:
        """Catch up, then enqueue each tick as APScheduler wakes us, until ``stop()``."""
        if not await self._start():
            return
        aps = AsyncIOScheduler(timezone=UTC)
        for entry in self.entries:
            aps.add_job(
                self._wake,
                trigger=entry.trigger,
                args=[entry],
                id=entry.name,
                name=entry.name,
                misfire_grace_time=None,  # a late wake-up still runs: we work out the ticks
                coalesce=True,
                max_instances=1,
            )
        aps.start()
        for entry in self.entries:  # a tick may have come due between catch-up and start
            self._wakeups.put_nowait(entry)
        self.started.set()
        log.info("scheduler running %d schedules", len(self.entries))
        try:
            while (woken := await self._wakeups.get()) is not None:
                await self.fire_due(woken)
        finally:
            aps.shutdown(wait=False)
            log.info("scheduler stopped: %s", dict(self.counts) or "no tick")

    async def _wake(self, entry: Entry) -> None:
        self._wakeups.put_nowait(entry)

    async def catch_up(self) -> None:
        """Apply each schedule's misfire policy to the ticks missed since its last fire
        time in Redis. No last fire time (a first start): nothing is missed."""
        now = self.now()
        states: dict[tuple[str, str], ScheduleState] = {}
        for engine in {e.schedule.task.engine for e in self.entries}:
            broker = self.client.link_of(engine).broker
            found = await broker.schedule_states(engine.name)
            states.update(((engine.name, sid), value) for sid, value in found.items())
        for entry in self.entries:
            schedule = entry.schedule
            entry.cursor = now
            state = states.get((schedule.engine, schedule.id))
            if state is None or state.fire_ms is None:
                log.info("%s (%s): first start, no tick missed", entry.name, schedule.describe())
                continue
            last = ticks.from_ms(state.fire_ms)
            window = ticks.ticks_between(entry.trigger, last, now, schedule.max_catchup)
            chosen = ticks.catch_up(schedule.misfire, window.ticks)
            if window.total:
                log.info(
                    "%s: %d ticks missed since %s; misfire=%s enqueues %d",
                    *(entry.name, window.total, last.isoformat(), schedule.misfire, len(chosen)),
                )
            for moment in chosen:
                if await self.enqueue(entry, moment) == "enqueued":
                    self.counts["catchup"] += 1

    async def fire_due(self, entry: Entry) -> None:
        """Enqueue the ticks of ``entry`` due since its cursor, by its live policy."""
        now = self.now()
        cursor = entry.cursor or now
        schedule = entry.schedule
        window = ticks.ticks_between(entry.trigger, cursor, now, schedule.max_catchup)
        if not window.ticks:
            return
        if window.total > 1:
            log.warning(
                "%s: %d ticks came due at once (the process stalled or the bus failed);"
                " misfire=%s", entry.name, window.total, schedule.misfire,
            )  # fmt: skip
        for moment in ticks.live(schedule.misfire, window.ticks):
            try:
                await self.enqueue(entry, moment)
            except NautilusTasksError as exc:
                self.counts["failed"] += 1
                log.warning("%s: tick %s not enqueued: %s", entry.name, moment.isoformat(), exc)
                return  # the cursor stays: the next wake-up sees this tick as due again
            entry.cursor = moment
        entry.cursor = max(entry.cursor or now, window.ticks[-1])

    async def enqueue(self, entry: Entry, moment: datetime) -> str:
        """Enqueue the tick at ``moment`` unless some scheduler did; returns the status."""
        schedule = entry.schedule
        task = schedule.task
        fire_ms = ticks.to_ms(moment)
        options = SendOptions(result_ttl=task.options.result_ttl)
        envelope = self.client.build(
            task.name, schedule.args, schedule.kwargs, schedule.tier, options, task.options.ttl
        ).model_copy(update={"schedule": schedule.id, "fire_time": fire_ms})
        broker = self.client.link_of(task.engine).broker
        result = await broker.enqueue_tick(
            schedule.engine,
            schedule.tier,
            schedule.id,
            fire_ms,
            encode(envelope, broker.config.max_message_bytes),
            message_id=envelope.id,
            dedup_ms=ticks.dedup_ms(entry.trigger, moment),
            max_backlog=task.engine.max_backlog,
        )
        self.counts[result.status] += 1
        if result.status == "enqueued":
            log.info("%s: tick %s enqueued as %s", entry.name, moment.isoformat(), envelope.id)
        elif result.status == "full":
            log.warning("%s: tick %s dropped: the inbox is full", entry.name, moment.isoformat())
        else:
            log.debug("%s: tick %s %s", entry.name, moment.isoformat(), result.status)
        return result.status
