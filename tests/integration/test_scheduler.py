"""Periodic tasks against a real server: exactly one enqueue per tick with several scheduler
processes (acceptance 1), the misfire policies after an outage (acceptance 2), the tick
script's refusals, and the ``schedules`` listing."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from nautilus_tasks import Client, Engine, Priority
from nautilus_tasks.aio import cancel_all
from nautilus_tasks.message import Envelope, decode
from nautilus_tasks.scheduler import Scheduler, ticks
from tests.helpers import wait_for
from tests.integration.test_cli import cli
from tests.procs import start_scheduler, stop_workers

pytestmark = pytest.mark.integration

SECOND = 1000
WINDOW = 20


async def envelopes(raw: aioredis.Redis, prefix: str, engine: str) -> list[Envelope]:
    """Every task waiting in the engine's normal inbox (no worker runs in these tests)."""
    entries = await raw.xrange(f"{prefix}:{{{engine}}}:q:normal")
    return [decode(fields) for _, fields in entries]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@pytest.mark.long
async def test_three_scheduler_processes_enqueue_each_tick_exactly_once(
    redis_url: str, prefix: str, raw: aioredis.Redis, client: Client, tmp_path: Path
) -> None:
    logs = [tmp_path / f"scheduler-{n}.log" for n in range(3)]
    procs = [start_scheduler("tests.apps.scheduled", redis_url, prefix, log) for log in logs]
    try:

        def running() -> bool:
            for proc, log in zip(procs, logs, strict=True):
                assert proc.poll() is None, log.read_text()
            return all("scheduler running" in log.read_text() for log in logs)

        await wait_for(running, timeout=60)
        start = (now_ms() // SECOND + 1) * SECOND  # the window: the next WINDOW ticks
        end = start + WINDOW * SECOND

        async def past_window() -> bool:
            state = (await client.broker.schedule_states("ticker")).get("ticker.tick")
            return state is not None and state.fire_ms is not None and state.fire_ms >= end

        await wait_for(past_window, timeout=WINDOW + 30, interval=0.2)
    finally:
        codes = stop_workers(procs)
    assert codes == [0, 0, 0], [log.read_text()[-2000:] for log in logs]
    sent = await envelopes(raw, prefix, "ticker")
    fired = [e.fire_time for e in sent]
    assert all(e is not None for e in fired)
    for envelope in sent:  # each tick carries the schedule's arguments, at its priority
        assert (envelope.name, envelope.schedule, envelope.priority) == (
            "tick", "ticker.tick", "normal",
        )  # fmt: skip
        assert envelope.body == {"args": [], "kwargs": {"label": "every second"}}
    counts = Counter(fired)
    assert max(counts.values()) == 1, [t for t, n in counts.items() if n > 1]
    in_window = sorted(t for t in fired if t is not None and start <= t < end)
    assert in_window == list(range(start, end, SECOND))  # every tick, once each
    for tick in in_window:  # each tick's dedup key was set, with an expiry
        assert await raw.pttl(f"{prefix}:{{ticker}}:tick:ticker.tick:{tick}") > 0
    state = (await client.broker.schedule_states("ticker"))["ticker.tick"]
    assert state.enqueued == len(fired)
    assert state.refused >= WINDOW  # the other processes tried the same ticks and were refused
    tails = "".join(log.read_text() for log in logs)
    assert "Traceback" not in tails and tails.count("scheduler stopped") == 3, tails


def outage_engine() -> Engine:
    """Three schedules every second, one per misfire policy."""
    engine = Engine("outage")
    for policy in ("skip", "once", "all"):

        async def job() -> None: ...

        task = engine.task(name=f"job_{policy}")(job)
        engine.periodic(every=timedelta(seconds=1), misfire=policy, max_catchup=50)(task)
    return engine


async def run_until(scheduler: Scheduler, condition: Any, timeout: float = 20) -> None:
    """Run ``scheduler`` until ``condition()`` holds, then stop it and wait for its end."""
    runner = asyncio.create_task(scheduler.run())
    try:
        await wait_for(lambda: runner.done() or condition(), timeout=timeout, interval=0.01)
    finally:
        scheduler.stop()
        await asyncio.wait_for(runner, 10)


async def fire_times(client: Client) -> dict[str, int | None]:
    states = await client.broker.schedule_states("outage")
    return {f"outage.job_{p}": None for p in ("skip", "once", "all")} | {
        sid: s.fire_ms for sid, s in states.items()
    }


def mid_tick_after(minimum: int, fired: dict[str, int | None]) -> bool:
    """Every schedule took the tick of the current second, at least ``minimum``, and the next
    is well ahead: a stop now falls between two ticks."""
    now = now_ms()
    current = now // SECOND * SECOND
    return current >= minimum and 200 <= now - current <= 600 and set(fired.values()) == {current}


async def test_misfire_policies_after_five_missed_ticks_and_restart_without_miss(
    client: Client, raw: aioredis.Redis, prefix: str
) -> None:
    engine = outage_engine()
    fired: dict[str, int | None] = {}

    async def watch() -> None:
        while True:
            fired.update(await fire_times(client))
            await asyncio.sleep(0.01)

    watcher = asyncio.create_task(watch())
    try:
        first = Scheduler([engine], client)
        minimum = now_ms() + 2 * SECOND
        await run_until(first, lambda: mid_tick_after(minimum, fired))
        assert first.counts["catchup"] == 0  # a first start misses nothing
        stopped_at = await fire_times(client)
        [last] = set(stopped_at.values())
        assert last is not None
        # every scheduler is stopped for 5 ticks; one starts again
        await wait_for(lambda: now_ms() >= last + 5 * SECOND + 100, timeout=10)
        second = Scheduler([engine], client)
        await run_until(second, lambda: second.started.is_set() and mid_tick_after(0, fired))
        caught = {
            p: sorted(
                e.fire_time
                for e in await envelopes(raw, prefix, "outage")
                if e.name == f"job_{p}" and e.fire_time is not None
                and last < e.fire_time <= last + 5 * SECOND
            )
            for p in ("skip", "once", "all")
        }  # fmt: skip
        assert caught["skip"] == []
        assert caught["once"] == [last + 5 * SECOND]  # one run, for the latest missed tick
        assert caught["all"] == [last + n * SECOND for n in range(1, 6)]
        assert second.counts["catchup"] == 6
        # a restart with no missed tick replays nothing
        before = len(await envelopes(raw, prefix, "outage"))
        third = Scheduler([engine], client)
        await run_until(third, third.started.is_set)
        assert third.counts["catchup"] == 0
        assert third.counts["duplicate"] == third.counts["stale"] == 0  # not even attempted
        assert third.counts["enqueued"] == len(await envelopes(raw, prefix, "outage")) - before
    finally:
        await cancel_all([watcher])
    every = await envelopes(raw, prefix, "outage")
    for policy in ("skip", "once", "all"):
        ticks = [e.fire_time for e in every if e.name == f"job_{policy}"]
        assert len(ticks) == len(set(ticks)), policy  # never the same tick twice
        assert ticks == sorted(ticks), policy  # never back in time


async def test_tick_script_refuses_duplicates_stale_ticks_and_full_inboxes(
    client: Client, raw: aioredis.Redis, prefix: str
) -> None:
    broker = client.broker
    base = 1_700_000_000_000

    async def tick(fire: int, backlog: int | None = None) -> str:
        result = await broker.enqueue_tick(
            "refusals", Priority.NORMAL, "refusals.s", fire, b'{"v":1}',
            message_id=f"m{fire}", dedup_ms=60_000, max_backlog=backlog,
        )  # fmt: skip
        assert (result.entry_id is not None) == (result.status == "enqueued")
        return result.status

    assert await tick(base) == "enqueued"
    assert await tick(base) == "duplicate"
    assert await tick(base + 2000) == "enqueued"
    assert await tick(base + 1000) == "stale"  # a later tick was taken: never go back
    assert await tick(base + 3000, backlog=2) == "full"
    assert await tick(base + 3000, backlog=2) == "duplicate"  # a full tick is still taken
    assert await raw.xlen(f"{prefix}:{{refusals}}:q:normal") == 2
    state = (await broker.schedule_states("refusals"))["refusals.s"]
    assert (state.fire_ms, state.message_id) == (base + 3000, f"m{base + 2000}")
    assert (state.enqueued, state.refused, state.full) == (2, 3, 1)
    assert state.enqueued_at_ms is not None and abs(state.enqueued_at_ms - now_ms()) < 60_000
    ttl = await raw.pttl(f"{prefix}:{{refusals}}:tick:refusals.s:{base}")
    assert 0 < ttl <= 60_000


def shown(moment: datetime) -> str:
    """A time as ``schedules`` prints it: UTC, to the millisecond."""
    return moment.astimezone(UTC).isoformat(sep=" ", timespec="milliseconds")[:23]


async def test_a_schedule_sends_its_arguments_at_its_priority(
    client: Client, raw: aioredis.Redis, prefix: str
) -> None:
    engine = Engine("urgent")

    @engine.periodic(every=timedelta(seconds=1), args=(7,), kwargs={"note": "hi"}, priority="high")
    @engine.task
    async def job(size: int, note: str = "") -> None: ...

    scheduler = Scheduler([engine], client)
    await run_until(scheduler, lambda: scheduler.counts["enqueued"] >= 1)
    entries = await raw.xrange(f"{prefix}:{{urgent}}:q:high")
    assert len(entries) == scheduler.counts["enqueued"] >= 1
    for _, fields in entries:
        envelope = decode(fields)
        assert (envelope.name, envelope.priority, envelope.schedule) == (
            "job", "high", "urgent.job",
        )  # fmt: skip
        assert envelope.body == {"args": [7], "kwargs": {"note": "hi"}}
    for tier in ("critical", "normal", "low"):
        assert await raw.xlen(f"{prefix}:{{urgent}}:q:{tier}") == 0


async def test_schedules_lists_next_fire_and_last_enqueue(
    client: Client, redis_url: str, prefix: str
) -> None:
    from tests.apps.scheduled import ticker

    scheduler = Scheduler([ticker], client)
    await run_until(scheduler, lambda: scheduler.counts["enqueued"] >= 1)
    state = (await client.broker.schedule_states("ticker"))["ticker.tick"]
    before = datetime.now(UTC)
    code, out, err = await cli(redis_url, prefix, "schedules", "tests.apps.scheduled")
    after = datetime.now(UTC)
    assert code == 0, err
    line = next(line for line in out.splitlines() if "ticker.tick" in line)
    cells = [cell.strip() for cell in line.strip().strip("│").split("│")]
    assert cells[:4] == ["ticker.tick", "ticker.tick", "every 0:00:01", "all"], cells
    # the next fire time: the schedule's next tick after some moment the command ran at
    trigger = ticks.make_trigger(ticker.schedules["ticker.tick"])
    latest = ticks.next_after(trigger, after)
    moment = ticks.next_after(trigger, before)
    possible = []
    while moment is not None and latest is not None and moment <= latest:
        possible.append(shown(moment))
        moment = ticks.next_after(trigger, moment)
    assert cells[4] in possible, (cells[4], possible)
    assert state.fire_ms is not None and state.enqueued_at_ms is not None
    assert cells[5] == shown(ticks.from_ms(state.fire_ms))  # the last tick, nominal time
    assert cells[6] == shown(ticks.from_ms(state.enqueued_at_ms))  # when it was enqueued
    assert cells[4] > cells[5]
    assert state.message_id is not None
    assert cells[7:] == [state.message_id, str(state.enqueued), str(state.refused)]
    code, _, err = await cli(redis_url, prefix, "schedules", "engines.risk")
    assert code == 1 and "no periodic schedule" in err
