"""Periodic schedules: what ``@engine.periodic(...)`` declares. Declaration only.

Nothing here does I/O or imports APScheduler: a worker imports the same engine modules
as the scheduler and needs neither. The cron syntax is checked here, with no dependency,
so a bad schedule fails when its module is imported; ``nautilus_tasks.scheduler`` turns a
schedule into an APScheduler trigger.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import ConfigurationError, InvalidArguments
from .priority import Priority

if TYPE_CHECKING:
    from .task import Task

Misfire = Literal["skip", "once", "all"]
MISFIRE_POLICIES: tuple[Misfire, ...] = ("skip", "once", "all")
DEFAULT_MAX_CATCHUP = 100
"""With ``misfire="all"``: the most missed ticks enqueued after an outage (the latest ones)."""
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
"""Default anchor of ``every=`` schedules: ticks fall on whole multiples of the period."""

_ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,200}$")
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
CRON_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, {name: i + 1 for i, name in enumerate(_MONTHS)}),
    ("day of week", 0, 7, {name: i for i, name in enumerate(_DAYS)}),
)
"""The five crontab fields: name, lowest and highest value, names of values."""


def _value(text: str, low: int, high: int, names: dict[str, int], what: str) -> int:
    number = names.get(text.lower()) if text.isalpha() else None
    if number is None:
        if not text.isdigit():
            raise ConfigurationError(f"cron {what}: {text!r} is not a number or a name")
        number = int(text)
    if not low <= number <= high:
        raise ConfigurationError(f"cron {what}: {number} is outside {low}-{high}")
    return number


def cron_values(text: str, index: int) -> set[int]:
    """The values one crontab field (``*/5``, ``1-5``, ``mon,wed``...) stands for."""
    what, low, high, names = CRON_FIELDS[index]
    values: set[int] = set()
    for item in text.split(","):
        spec, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) < 1:
                raise ConfigurationError(f"cron {what}: bad step in {item!r}")
            step = int(step_text)
        if spec == "*":
            first, last = low, high
        else:
            start, dash, end = spec.partition("-")
            first = _value(start, low, high, names, what)
            last = _value(end, low, high, names, what) if dash else (high if slash else first)
            if last < first:
                raise ConfigurationError(f"cron {what}: range {spec!r} runs backwards")
        values.update(range(first, last + 1, step))
    return values


def check_cron(expr: str) -> tuple[str, ...]:
    """The five fields of a crontab expression, or ConfigurationError saying what is wrong."""
    fields = tuple(expr.split())
    if len(fields) != 5:
        raise ConfigurationError(
            f"cron {expr!r} has {len(fields)} fields; expected 5 (minute hour day month weekday)"
        )
    for index, text in enumerate(fields):
        cron_values(text, index)
    return fields


def _check_tz(tz: str) -> None:
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigurationError(f"unknown time zone {tz!r}") from exc


def check_timing(
    label: str,
    cron: str | None,
    every: timedelta | None,
    tz: str,
    misfire: str,
    max_catchup: int,
    anchor: datetime,
) -> None:
    """The options saying when a schedule fires and catches up, or ConfigurationError."""
    if (cron is None) == (every is None):
        raise ConfigurationError(f"{label}: give cron= or every=, exactly one")
    if cron is not None:
        check_cron(cron)
    if every is not None and every < timedelta(seconds=1):
        raise ConfigurationError(f"{label}: every= must be at least 1 second")
    if misfire not in MISFIRE_POLICIES:
        raise ConfigurationError(
            f"{label}: misfire is one of {', '.join(MISFIRE_POLICIES)}, not {misfire!r}"
        )
    if max_catchup < 1:
        raise ConfigurationError(f"{label}: max_catchup must be >= 1")
    if anchor.tzinfo is None:
        raise ConfigurationError(f"{label}: anchor needs a time zone")
    _check_tz(tz)


@dataclass(frozen=True, slots=True)
class Schedule:
    """One declared schedule of a task: when it fires and with what arguments.

    Exactly one of ``cron`` (a 5-field crontab expression, in ``tz``) and ``every``
    (a fixed period counted from ``anchor``) is set. ``misfire`` says what to do with ticks
    that passed while no scheduler ran: ``skip`` them, enqueue ``once`` for all of them
    (the latest), or ``all`` of them (at most ``max_catchup``, the latest).
    """

    id: str
    task: Task[Any, Any]
    cron: str | None = None
    every: timedelta | None = None
    tz: str = "UTC"
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    priority: Priority | None = None
    misfire: Misfire = "once"
    max_catchup: int = DEFAULT_MAX_CATCHUP
    anchor: datetime = EPOCH

    def __post_init__(self) -> None:
        if not _ID.match(self.id):
            raise ConfigurationError(
                f"schedule id {self.id!r}: letters, digits, '_', '.', ':' or '-' (1-200)"
            )
        check_timing(
            f"schedule {self.id!r}",
            cron=self.cron,
            every=self.every,
            tz=self.tz,
            misfire=self.misfire,
            max_catchup=self.max_catchup,
            anchor=self.anchor,
        )
        if self.priority is not None:
            object.__setattr__(self, "priority", Priority.parse(self.priority))
        try:
            self.task.validator.validate(list(self.args), dict(self.kwargs))
        except InvalidArguments as exc:
            raise ConfigurationError(f"schedule {self.id!r}: {exc}") from None

    @property
    def engine(self) -> str:
        """The engine whose inbox the ticks go to."""
        return self.task.engine.name

    @property
    def tier(self) -> Priority:
        """The priority of the enqueued messages: the schedule's, else the task's."""
        return self.priority if self.priority is not None else self.task.options.priority

    def describe(self) -> str:
        """``cron */5 * * * * UTC`` or ``every 0:01:00``."""
        if self.cron is not None:
            return f"cron {self.cron} {self.tz}"
        return f"every {self.every}"
