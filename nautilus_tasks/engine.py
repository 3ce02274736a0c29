"""Engine: a named service with its tasks. Declaration only; no I/O happens here."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

from .config import DeadRetention
from .errors import ConfigurationError, NotBound, UnknownTask
from .periodic import DEFAULT_MAX_CATCHUP, EPOCH, Misfire, Schedule, check_timing
from .priority import Priority
from .task import Task, TaskOptions
from .topics import check_pattern

if TYPE_CHECKING:
    from .broker.redis.autopipe import AutoPipeline
    from .client import Client

P = ParamSpec("P")
R = TypeVar("R")

_NAME = re.compile(r"^[a-z][a-z0-9_\-]{0,63}$")
_OPTION_NAMES = {f.name for f in dataclasses.fields(TaskOptions)} - {"name"}


class Engine:
    """A service of the platform (risk, factors...), with its own inbox streams.

    >>> risk = Engine("risk")
    >>> @risk.task(priority=Priority.CRITICAL)
    ... def check(limit: float) -> bool: ...
    """

    def __init__(
        self,
        name: str,
        *,
        bus: str = "default",
        max_backlog: int | None = None,
        dead_retention: DeadRetention | None = None,
    ) -> None:
        if not _NAME.match(name):
            raise ConfigurationError(
                f"engine name {name!r} must be lower-case letters, digits, '_' or '-',"
                " starting with a letter"
            )
        if max_backlog is not None and max_backlog < 1:
            raise ConfigurationError(f"max_backlog must be >= 1, not {max_backlog}")
        self.name = name
        self.bus = bus
        """The bus that holds this engine's task inbox (see ``Buses``)."""
        self.max_backlog = max_backlog
        """Refuse sends (BacklogFull) while a tier stream of this engine is this long."""
        self.dead_retention = dead_retention
        """How long the engine's workers keep its dead letters (None: the worker's own
        ``WorkerConfig.dead_max_len`` / ``dead_max_age``)."""
        self.tasks: dict[str, Task[Any, Any]] = {}
        self.handlers: list[Task[Any, Any]] = []
        """Event handlers, in declaration order (each is also in ``tasks``)."""
        self.schedules: dict[str, Schedule] = {}
        """Periodic schedules by id, declared with ``periodic``."""
        self._client: Client | None = None

    def __repr__(self) -> str:
        return f"Engine({self.name!r}, tasks={sorted(self.tasks)})"

    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...

    @overload
    def task(
        self, fn: None = None, /, *, name: str | None = None, **options: Any
    ) -> Callable[[Callable[P, R]], Task[P, R]]: ...

    def task(
        self, fn: Callable[P, R] | None = None, /, *, name: str | None = None, **options: Any
    ) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
        """Declare a task. Use bare (``@engine.task``) or with options::

            @engine.task(priority=Priority.CRITICAL, timeout=5.0, retries=3, ttl=60.0,
                         backoff_base=1.0, backoff_max=300.0, retry_on=(IOError,),
                         dont_retry_on=(ValueError,), on_expire="dead")

        The options are the fields of ``TaskOptions``; an unknown one is an error.
        """
        unknown = set(options) - _OPTION_NAMES
        if unknown:
            raise ConfigurationError(f"unknown task options {sorted(unknown)}")

        def decorate(func: Callable[P, R]) -> Task[P, R]:
            task_options = TaskOptions(name=name or func.__name__, **options)
            if task_options.name in self.tasks:
                raise ConfigurationError(
                    f"engine {self.name!r} already has a task {task_options.name!r}"
                )
            task = Task(self, func, task_options)
            self.tasks[task_options.name] = task
            return task

        return decorate if fn is None else decorate(fn)

    def on(
        self, pattern: str, *, name: str | None = None, **options: Any
    ) -> Callable[[Callable[P, R]], Task[P, R]]:
        """Handle events whose topic matches ``pattern`` (``*``: one segment, ``#``: any).

        The handler's first parameter receives the payload, validated against its type
        hint; a parameter named ``topic`` receives the event's topic. Options are those
        of ``task`` (retries, timeout...). Each subscribing engine gets its own copy of
        each event; the replicas of one engine share them.
        """
        check_pattern(pattern)

        def decorate(func: Callable[P, R]) -> Task[P, R]:
            handler: Task[P, R] = self.task(name=name or f"on:{func.__name__}", **options)(func)
            handler.pattern = pattern
            self.handlers.append(handler)
            return handler

        return decorate

    def periodic(
        self,
        *,
        cron: str | None = None,
        every: timedelta | None = None,
        tz: str = "UTC",
        args: tuple[Any, ...] | list[Any] = (),
        kwargs: dict[str, Any] | None = None,
        priority: Priority | str | None = None,
        misfire: Misfire = "once",
        max_catchup: int = DEFAULT_MAX_CATCHUP,
        anchor: datetime = EPOCH,
        id: str | None = None,
    ) -> Callable[[Task[P, R]], Task[P, R]]:
        """Enqueue a task on a schedule; stack it on ``@engine.task``::

            @engine.periodic(cron="*/5 * * * *", tz="Europe/London", misfire="skip")
            @engine.task
            async def refresh() -> None: ...

        ``cron`` is a 5-field crontab expression in ``tz``; ``every`` a fixed period counted
        from ``anchor`` (the Unix epoch), so every scheduler process computes the same ticks.
        ``misfire`` (``skip``, ``once``, ``all``) handles ticks missed while no scheduler ran.
        The id (default ``engine.task``) names the schedule in Redis. Declaring does no I/O;
        ``nautilus-tasks scheduler`` runs the schedules.
        """
        label = f"@{self.name}.periodic"
        check_timing(label, cron, every, tz, misfire, max_catchup, anchor)
        tier = None if priority is None else Priority.parse(priority)

        def decorate(task: Task[P, R]) -> Task[P, R]:
            if not isinstance(task, Task) or task.engine is not self:
                raise ConfigurationError(
                    f"@{self.name}.periodic applies to a task of engine {self.name!r}:"
                    f" stack it on top of @{self.name}.task"
                )
            if task.pattern is not None:
                raise ConfigurationError(f"{task.qualified_name} is an event handler")
            schedule = Schedule(
                id=id or task.qualified_name,
                task=task,
                cron=cron,
                every=every,
                tz=tz,
                args=tuple(args),
                kwargs=dict(kwargs or {}),
                priority=tier,
                misfire=misfire,
                max_catchup=max_catchup,
                anchor=anchor,
            )
            if schedule.id in self.schedules:
                raise ConfigurationError(
                    f"engine {self.name!r} already has a schedule {schedule.id!r}; pass id="
                )
            self.schedules[schedule.id] = schedule
            return task

        return decorate

    @property
    def patterns(self) -> list[str]:
        """The topic patterns this engine subscribes to."""
        return sorted({h.pattern for h in self.handlers if h.pattern is not None})

    async def publish(
        self, topic: str, payload: Any, priority: Priority | str = Priority.NORMAL
    ) -> str:
        """Publish an event through the bound client; returns the event id."""
        return await self.client.publish(topic, payload, priority)

    def get_task(self, name: str) -> Task[Any, Any]:
        """The task called ``name``, or UnknownTask."""
        try:
            return self.tasks[name]
        except KeyError:
            raise UnknownTask(f"engine {self.name!r} has no task {name!r}") from None

    def bind(self, client: Client | None) -> None:
        """Send this engine's tasks through ``client`` (None unbinds)."""
        self._client = client

    @property
    def client(self) -> Client:
        """The bound client, or NotBound with a hint."""
        if self._client is None:
            raise NotBound(
                f"engine {self.name!r} has no client: use `async with Client.connect(...) as c:"
                f" c.bind({self.name})`, or send_with(client=c)"
            )
        return self._client

    @property
    def redis(self) -> AutoPipeline:
        """The auto-pipelined Redis handle of this engine's bus, for your own keys::

            @engine.task
            async def fill(order_id: str, qty: int) -> None:
                await engine.redis.hincrby("positions", order_id, qty)

        Concurrent handlers' commands go out in one round trip; no key prefix is applied.
        Works in handlers run by a worker and after ``client.bind(engine)``; NotBound before.
        """
        if self._client is None:
            raise NotBound(
                f"engine {self.name!r} has no client, so engine.redis has no bus: it works in"
                f" handlers run by a worker, or after `client.bind({self.name})`"
            )
        return self._client.link_of(self).redis
