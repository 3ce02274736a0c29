"""Periodic schedules without a server: declaration rules, cron parsing, fire times from the
triggers, misfire selection, and the scheduler's catch-up and live ticks on a fake clock."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from nautilus_tasks import BusUnavailable, ConfigurationError, Engine, Priority
from nautilus_tasks.broker.base import ScheduleState, TickResult
from nautilus_tasks.periodic import cron_values
from nautilus_tasks.scheduler import Scheduler
from nautilus_tasks.scheduler import ticks as t
from tests.helpers import wait_for

MINUTE = timedelta(minutes=1)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def declare(**options: Any) -> Engine:
    engine = Engine("periodic")

    @engine.periodic(**options)
    @engine.task
    def refresh(window: int = 5) -> int:
        return window

    return engine


def test_a_schedule_is_declared_on_a_task_with_a_stable_id() -> None:
    engine = declare(cron="*/5 * * * *", kwargs={"window": 10}, priority="high")
    [(sid, schedule)] = engine.schedules.items()
    assert sid == schedule.id == "periodic.refresh"
    assert schedule.task is engine.tasks["refresh"] and schedule.engine == "periodic"
    assert schedule.tier is Priority.HIGH and schedule.misfire == "once"
    assert schedule.describe() == "cron */5 * * * * UTC"
    assert declare(every=MINUTE).schedules["periodic.refresh"].tier is Priority.NORMAL


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"cron": "*/5 * * *"}, "has 4 fields"),
        ({"cron": "61 * * * *"}, "outside 0-59"),
        ({"cron": "* * * foo *"}, "not a number or a name"),
        ({"cron": "5-1 * * * *"}, "runs backwards"),
        ({"cron": "*/0 * * * *"}, "bad step"),
        ({"cron": "* * * * *", "every": MINUTE}, "exactly one"),
        ({}, "exactly one"),
        ({"every": timedelta(milliseconds=500)}, "at least 1 second"),
        ({"every": MINUTE, "misfire": "twice"}, "misfire is one of"),
        ({"every": MINUTE, "max_catchup": 0}, "max_catchup"),
        ({"every": MINUTE, "tz": "Mars/Olympus"}, "unknown time zone"),
        ({"every": MINUTE, "kwargs": {"window": "wide"}}, "invalid arguments"),
        ({"every": MINUTE, "args": (1, 2)}, "invalid arguments"),
        ({"every": MINUTE, "id": "has space"}, "schedule id"),
        ({"every": MINUTE, "priority": "urgent"}, "unknown priority"),
        ({"every": MINUTE, "anchor": datetime(2020, 1, 1)}, "time zone"),
    ],
)
def test_bad_schedules_fail_at_declaration(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        declare(**options)


def test_bad_timing_fails_before_the_decorator_is_applied() -> None:
    engine = Engine("early")
    with pytest.raises(ConfigurationError, match=r"@early\.periodic: misfire is one of"):
        engine.periodic(every=MINUTE, misfire="never")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="outside 0-23"):
        engine.periodic(cron="0 24 * * *")


def test_periodic_needs_a_task_of_its_engine_and_unique_ids() -> None:
    engine, other = Engine("one"), Engine("two")

    @other.task
    def foreign() -> None: ...

    with pytest.raises(ConfigurationError, match=r"stack it on top of @one\.task"):
        engine.periodic(every=MINUTE)(foreign)
    with pytest.raises(ConfigurationError, match="stack it on top"):
        engine.periodic(every=MINUTE)(lambda: None)  # type: ignore[arg-type]

    @engine.periodic(every=MINUTE)
    @engine.task
    def job() -> None: ...

    with pytest.raises(ConfigurationError, match=r"already has a schedule 'one\.job'"):
        engine.periodic(cron="0 * * * *")(job)
    engine.periodic(cron="0 * * * *", id="one.job.hourly")(job)
    assert sorted(engine.schedules) == ["one.job", "one.job.hourly"]

    @engine.on("a.b")
    def handler(payload: int) -> None: ...

    with pytest.raises(ConfigurationError, match="event handler"):
        engine.periodic(every=MINUTE)(handler)


def test_cron_fields_expand_like_crontab() -> None:
    assert cron_values("*/15", 0) == {0, 15, 30, 45}
    assert cron_values("1-5", 4) == {1, 2, 3, 4, 5}
    assert cron_values("mon,wed,sun,7", 4) == {0, 1, 3, 7}
    assert cron_values("jan-mar/2", 3) == {1, 3}
    assert cron_values("50/5", 0) == {50, 55}


def fires(trigger: Any, after: datetime, until: datetime, limit: int = 1000) -> list[datetime]:
    return t.ticks_between(trigger, after, until, limit).ticks


def test_interval_ticks_fall_on_multiples_of_the_period_whenever_computed() -> None:
    engine = declare(every=timedelta(seconds=7))
    trigger = t.make_trigger(engine.schedules["periodic.refresh"])
    got = fires(trigger, utc(2026, 1, 1, 12, 0, 0), utc(2026, 1, 1, 12, 0, 30))
    assert all(t.to_ms(moment) % 7000 == 0 for moment in got) and len(got) == 4
    # a window starting on a tick excludes it, one ending on a tick includes it
    assert fires(trigger, got[0], got[1]) == [got[1]]
    # another process, starting at another moment, computes the same ticks
    other = t.make_trigger(engine.schedules["periodic.refresh"])
    later = fires(other, utc(2026, 1, 1, 12, 0, 13, 500), utc(2026, 1, 1, 12, 0, 30))
    assert later == got[2:]


def test_a_long_window_keeps_the_latest_ticks_and_counts_them_all() -> None:
    trigger = t.make_trigger(declare(every=timedelta(seconds=1)).schedules["periodic.refresh"])
    start = utc(2026, 1, 1)
    window = t.ticks_between(trigger, start, start + timedelta(days=2), 5)
    assert window.total == 2 * 86400
    assert window.ticks == [start + timedelta(days=2, seconds=-n) for n in (4, 3, 2, 1, 0)]
    cron = t.make_trigger(declare(cron="0 * * * *").schedules["periodic.refresh"])
    hours = t.ticks_between(cron, start, start + timedelta(days=2), 3)
    assert hours.total == 48 and hours.ticks[-1] == start + timedelta(days=2)


def test_cron_weekdays_count_from_sunday_as_in_crontab() -> None:
    schedule = declare(cron="30 9 * * 1-5", tz="Europe/London").schedules["periodic.refresh"]
    trigger = t.make_trigger(schedule)
    got = fires(trigger, utc(2026, 3, 27), utc(2026, 4, 4))  # London moves to BST on 29 March
    local = [moment.astimezone(ZoneInfo("Europe/London")) for moment in got]
    assert [d.strftime("%a %d %H:%M") for d in local] == [
        "Fri 27 09:30", "Mon 30 09:30", "Tue 31 09:30", "Wed 01 09:30", "Thu 02 09:30",
        "Fri 03 09:30",
    ]  # fmt: skip
    assert [m.astimezone(UTC).hour for m in got] == [9, 8, 8, 8, 8, 8]
    sunday = t.make_trigger(declare(cron="0 0 * * 0").schedules["periodic.refresh"])
    [only] = fires(sunday, utc(2026, 3, 1, 1), utc(2026, 3, 8, 1))
    assert only.strftime("%a") == "Sun"


def test_misfire_policies_choose_among_missed_and_due_ticks() -> None:
    missed = [utc(2026, 1, 1, 0, n) for n in range(5)]
    assert t.catch_up("skip", missed) == []
    assert t.catch_up("once", missed) == missed[-1:]
    assert t.catch_up("all", missed) == missed
    assert t.catch_up("once", []) == []
    assert t.live("skip", missed) == t.live("once", missed) == missed[-1:]
    assert t.live("all", missed) == missed


def test_dedup_keys_live_two_periods_within_bounds() -> None:
    every = t.make_trigger(declare(every=timedelta(minutes=10)).schedules["periodic.refresh"])
    assert t.dedup_ms(every, utc(2026, 1, 1)) == 20 * 60_000
    second = t.make_trigger(declare(every=timedelta(seconds=1)).schedules["periodic.refresh"])
    assert t.dedup_ms(second, utc(2026, 1, 1)) == 60_000
    weekly = t.make_trigger(declare(cron="0 0 * * 0").schedules["periodic.refresh"])
    assert t.dedup_ms(weekly, utc(2026, 1, 4)) == 86_400_000


class FakeBroker:
    """Records ticks; knows one last fire time."""

    def __init__(self, fire_ms: int | None) -> None:
        self.fire_ms = fire_ms
        self.ticks: list[int] = []

    async def schedule_states(self, engine: str) -> dict[str, ScheduleState]:
        return {} if self.fire_ms is None else {"periodic.refresh": ScheduleState(self.fire_ms)}

    async def enqueue_tick(self, *args: Any, **kwargs: Any) -> TickResult:
        self.ticks.append(args[3])
        return TickResult("enqueued", "1-0")


class FakeClient:
    def __init__(self, broker: FakeBroker) -> None:
        self.broker = broker
        self.config = type("C", (), {"max_message_bytes": 1 << 20})()
        broker.config = self.config  # type: ignore[attr-defined]

    def link_of(self, engine: Engine) -> Any:
        return self

    def build(self, *args: Any, **kwargs: Any) -> Any:
        from nautilus_tasks import Client

        return Client.build(self, *args, **kwargs)  # type: ignore[arg-type]

    source = "tests"


@pytest.mark.parametrize(
    ("policy", "last", "expected", "bound"),
    [
        ("once", None, [], 100),  # a first start: nothing was missed
        ("all", None, [], 100),
        ("skip", 1000, [], 100),
        ("once", 1000, [6000], 100),
        ("all", 1000, [2000, 3000, 4000, 5000, 6000], 100),
        ("all", 1000, [4000, 5000, 6000], 3),  # `all` is bounded: the latest max_catchup
        ("once", 1000, [6000], 3),
        ("all", 6000, [], 100),  # a restart with no missed tick replays nothing
    ],
)
async def test_catch_up_on_start(
    policy: str, last: int | None, expected: list[int], bound: int
) -> None:
    engine = declare(
        every=timedelta(seconds=1), misfire=policy, anchor=utc(1970, 1, 1), max_catchup=bound
    )
    broker = FakeBroker(None if last is None else 1_800_000_000_000 + last)
    clock = 1_800_000_006.5  # epoch seconds: half a second after the tick ...6000
    scheduler = Scheduler([engine], FakeClient(broker), clock=lambda: clock)  # type: ignore[arg-type]
    await scheduler.catch_up()
    assert [ms - 1_800_000_000_000 for ms in broker.ticks] == expected
    assert scheduler.counts["catchup"] == len(expected)


async def test_live_ticks_follow_the_trigger_not_the_wake_up_time() -> None:
    engine = declare(every=timedelta(seconds=1), misfire="all")
    broker = FakeBroker(None)
    now = [1_800_000_000.2]
    scheduler = Scheduler([engine], FakeClient(broker), clock=lambda: now[0])  # type: ignore[arg-type]
    await scheduler.catch_up()
    [entry] = scheduler.entries
    for wake in (1.007, 1.5, 2.001, 5.3):  # a late wake-up, one with nothing due, a stall
        now[0] = 1_800_000_000 + wake
        await scheduler.fire_due(entry)
    assert [ms - 1_800_000_000_000 for ms in broker.ticks] == [1000, 2000, 3000, 4000, 5000]


def test_declaring_schedules_does_not_import_apscheduler() -> None:
    code = (
        "import sys, engines.health, tests.apps.scheduled\n"
        "assert engines.health.health.schedules\n"
        "assert 'apscheduler' not in sys.modules, 'apscheduler imported'\n"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True, timeout=60)


class DownBroker(FakeBroker):
    """Unreachable for the first ``failures`` reads of the schedules' state."""

    def __init__(self, failures: int) -> None:
        super().__init__(None)
        self.failures = failures
        self.reads = 0

    async def schedule_states(self, engine: str) -> dict[str, ScheduleState]:
        self.reads += 1
        if self.reads <= self.failures:
            raise BusUnavailable("down")
        return await super().schedule_states(engine)


async def test_a_scheduler_retries_its_catch_up_while_the_bus_is_down() -> None:
    engine = declare(every=timedelta(seconds=1))
    broker = DownBroker(failures=1)
    scheduler = Scheduler([engine], FakeClient(broker))  # type: ignore[arg-type]
    runner = asyncio.create_task(scheduler.run())
    await asyncio.wait_for(scheduler.started.wait(), 10)
    scheduler.stop()
    await asyncio.wait_for(runner, 10)
    assert broker.reads == 2
    # stopped while the bus is still down: it returns without starting
    broker = DownBroker(failures=1000)
    scheduler = Scheduler([engine], FakeClient(broker))  # type: ignore[arg-type]
    runner = asyncio.create_task(scheduler.run())
    await wait_for(lambda: broker.reads > 0, timeout=10)
    scheduler.stop()
    await asyncio.wait_for(runner, 10)
    assert not scheduler.started.is_set() and broker.reads < 1000


async def test_the_health_ping_reports_the_tick_it_answers() -> None:
    from engines.health import health, ping
    from nautilus_tasks.context import MessageContext, reset_current, set_current
    from nautilus_tasks.message import Envelope

    assert health.schedules["health.ping"].describe() == "cron * * * * * UTC"
    fire = int(time.time() * 1000) - 1500
    envelope = Envelope(id="m1", name="ping", schedule="health.ping", fire_time=fire)
    token = set_current(MessageContext(envelope, "health", "1-0", Priority.HIGH, 1))
    try:
        pong = await ping.run_local(service="platform")
    finally:
        reset_current(token)
    assert (pong.service, pong.fire_time) == ("platform", fire)
    assert pong.lag_ms is not None and pong.lag_ms >= 1500
    outside = await ping.run_local(service="platform")
    assert outside.fire_time is None and outside.lag_ms is None
