"""Fire times of a schedule, from APScheduler 3 triggers, and the misfire policies.

Fire times always come from the trigger, never from "now": an ``every=`` schedule counts
from a fixed anchor, a cron schedule from the calendar, so every scheduler process computes
the same nominal ticks and a tick is named by its nominal time (epoch ms) wherever it is
enqueued from.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from ..errors import ConfigurationError
from ..periodic import Misfire, Schedule, check_cron, cron_values

ONE_US = timedelta(microseconds=1)
DEDUP_MIN = timedelta(minutes=1)
DEDUP_MAX = timedelta(days=1)
_APS_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
"""Crontab counts weekdays from Sunday = 0 (and 7); APScheduler 3 from Monday = 0, so
weekdays are handed to it by name."""


def make_trigger(schedule: Schedule) -> BaseTrigger:
    """The APScheduler trigger of a schedule. Each cron field goes over as the explicit
    values our parser found (``*`` as is), so both agree on what an expression means."""
    try:
        if schedule.cron is not None:
            fields = check_cron(schedule.cron)
            parts = [
                "*" if text == "*" else ",".join(str(v) for v in sorted(cron_values(text, i)))
                for i, text in enumerate(fields[:4])
            ]
            minute, hour, day, month = parts
            return CronTrigger(
                minute=minute,
                hour=hour,
                day=day,
                month=month,
                day_of_week=_weekdays(fields[4]),
                timezone=schedule.tz,
            )
        assert schedule.every is not None  # Schedule checks that one of the two is set
        return IntervalTrigger(
            seconds=schedule.every.total_seconds(),
            start_date=schedule.anchor,
            timezone=schedule.tz,
        )
    except ValueError as exc:
        raise ConfigurationError(f"schedule {schedule.id!r}: {exc}") from exc


def _weekdays(text: str) -> str:
    if text == "*":
        return "*"
    days = sorted({v % 7 for v in cron_values(text, 4)})
    return ",".join(_APS_DAYS[d] for d in days)


def to_ms(moment: datetime) -> int:
    """A fire time as integer epoch milliseconds (the name of its tick)."""
    return round(moment.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def next_after(trigger: BaseTrigger, moment: datetime) -> datetime | None:
    """The first fire time strictly after ``moment`` (None when the trigger has ended)."""
    nxt: datetime | None = trigger.get_next_fire_time(None, moment + ONE_US)
    return nxt


@dataclass(frozen=True, slots=True)
class Window:
    """The fire times in a time window: the latest ``limit`` of them, and how many in all."""

    ticks: list[datetime]
    total: int


def ticks_between(trigger: BaseTrigger, after: datetime, until: datetime, limit: int) -> Window:
    """Fire times in ``(after, until]``: the latest ``limit`` of them and the count.

    An interval trigger skips ahead arithmetically, so a long outage costs nothing; a cron
    trigger is walked (at most one tick a minute: a week is about 10,000 steps).
    """
    skipped = 0
    if isinstance(trigger, IntervalTrigger):
        period = trigger.interval
        span = until - after
        if span > period * (limit + 2):
            jump = int(span / period) - limit - 1
            skipped = jump
            after = after + period * jump
    ticks: list[datetime] = []
    total = skipped
    moment = next_after(trigger, after)
    while moment is not None and moment <= until:
        total += 1
        ticks.append(moment)
        if len(ticks) > limit:
            del ticks[0]
        moment = next_after(trigger, moment)
    return Window(ticks, total)


def catch_up(policy: Misfire, missed: list[datetime]) -> list[datetime]:
    """Which of the ticks missed while no scheduler ran to enqueue at start: none for
    ``skip``, the latest for ``once``, all of them for ``all`` (already bounded)."""
    if policy == "skip" or not missed:
        return []
    if policy == "once":
        return missed[-1:]
    return list(missed)


def live(policy: Misfire, due: list[datetime]) -> list[datetime]:
    """Which due ticks a running scheduler enqueues when it wakes up: the latest alone for
    ``skip`` and ``once`` (earlier ones are late: the process stalled or lost the bus),
    every one for ``all``."""
    return list(due) if policy == "all" else due[-1:]


def dedup_ms(trigger: BaseTrigger, moment: datetime) -> int:
    """How long a tick's dedup key lives: two periods, within [1 minute, 1 day]."""
    nxt = next_after(trigger, moment)
    period = DEDUP_MAX if nxt is None else nxt - moment
    return int(min(DEDUP_MAX, max(DEDUP_MIN, 2 * period)).total_seconds() * 1000)
