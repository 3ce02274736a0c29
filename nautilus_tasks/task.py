"""Tasks: typed handlers that can be called locally or sent through a bus."""

from __future__ import annotations

import functools
import inspect
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, Literal, ParamSpec, TypeVar

from .errors import ConfigurationError
from .priority import Priority
from .validation import ArgsValidator

if TYPE_CHECKING:
    from .client import Client
    from .engine import Engine

P = ParamSpec("P")
R = TypeVar("R")


ExceptionTypes = tuple[type[BaseException], ...]


@dataclass(frozen=True, slots=True)
class TaskOptions:
    """What ``@engine.task(...)`` declared. Times are in seconds."""

    name: str
    priority: Priority = Priority.NORMAL
    timeout: float | None = None
    ttl: float | None = None
    retries: int = 3
    backoff_base: float = 1.0
    backoff_max: float = 300.0
    retry_on: ExceptionTypes = (Exception,)
    dont_retry_on: ExceptionTypes = ()
    on_expire: Literal["dead", "drop"] = "dead"

    def __post_init__(self) -> None:
        name = self.name
        if not name or any(c in name for c in " \t\r\n|"):
            raise ConfigurationError(f"invalid task name {name!r}")
        for label in ("timeout", "ttl", "backoff_base", "backoff_max"):
            value = getattr(self, label)
            if value is not None and value <= 0:
                raise ConfigurationError(f"task {name!r}: {label} must be positive, not {value}")
        if self.retries < 0:
            raise ConfigurationError(f"task {name!r}: retries must be >= 0, not {self.retries}")
        if self.on_expire not in ("dead", "drop"):
            raise ConfigurationError(f"task {name!r}: on_expire is 'dead' or 'drop'")
        object.__setattr__(self, "priority", Priority.parse(self.priority))

    def retry_delay(self, attempt: int) -> float:
        """Exponential backoff with full jitter: uniform in [0, min(max, base * 2**attempt)]."""
        return random.uniform(0, min(self.backoff_max, self.backoff_base * 2 ** min(attempt, 62)))

    def should_retry(self, exc: BaseException, attempt: int) -> bool:
        """Whether a failure of run number ``attempt + 1`` gets another run."""
        if attempt >= self.retries or isinstance(exc, self.dont_retry_on):
            return False
        return isinstance(exc, self.retry_on)


@dataclass(frozen=True, slots=True)
class SendOptions:
    """Per-send overrides; None keeps the task's default."""

    priority: Priority | None = None
    countdown: float | None = None
    eta: datetime | float | None = None
    ttl: float | None = None
    message_id: str | None = None
    trace_id: str | None = None
    backlog_wait: float | None = None
    """With an engine's max_backlog: seconds to wait for room before BacklogFull."""

    def __post_init__(self) -> None:
        if self.countdown is not None and self.eta is not None:
            raise ConfigurationError("give countdown or eta, not both")
        if self.countdown is not None and self.countdown < 0:
            raise ConfigurationError(f"countdown must be >= 0, not {self.countdown}")
        if self.ttl is not None and self.ttl <= 0:
            raise ConfigurationError(f"ttl must be positive, not {self.ttl}")

    def eta_ms(self) -> int | None:
        """The ETA as epoch milliseconds, if one was given."""
        if self.eta is None:
            return None
        seconds = self.eta.timestamp() if isinstance(self.eta, datetime) else float(self.eta)
        return int(seconds * 1000)


class Task(Generic[P, R]):
    """A declared task. Call it to run it here; ``send`` it to run it on a worker."""

    def __init__(self, engine: Engine, fn: Callable[P, R], options: TaskOptions) -> None:
        self.engine = engine
        self.fn = fn
        self.options = options
        self.is_async = inspect.iscoroutinefunction(fn)
        functools.update_wrapper(self, fn)
        self.validator = ArgsValidator(self.qualified_name, fn)

    @property
    def name(self) -> str:
        """The task's name inside its engine."""
        return self.options.name

    @property
    def qualified_name(self) -> str:
        """``engine.task``, as the CLI and logs name it."""
        return f"{self.engine.name}.{self.options.name}"

    def __repr__(self) -> str:
        return f"<Task {self.qualified_name} priority={self.options.priority.label}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the handler in this process, as a plain call."""
        return self.fn(*args, **kwargs)

    async def send(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """Enqueue with the task's defaults; returns the message id once stored."""
        return await self.engine.client.send_task(self, args, kwargs, SendOptions())

    def send_with(
        self,
        *,
        priority: Priority | str | None = None,
        countdown: float | None = None,
        eta: datetime | float | None = None,
        ttl: float | None = None,
        message_id: str | None = None,
        trace_id: str | None = None,
        backlog_wait: float | None = None,
        client: Client | None = None,
    ) -> Sender[P]:
        """Options for one send: ``await task.send_with(priority="high")(trade)``."""
        options = SendOptions(
            priority=None if priority is None else Priority.parse(priority),
            countdown=countdown,
            eta=eta,
            ttl=ttl,
            message_id=message_id,
            trace_id=trace_id,
            backlog_wait=backlog_wait,
        )
        return Sender(self, options, client)


class Sender(Generic[P]):
    """A task with its send options applied, awaiting its arguments."""

    def __init__(self, task: Task[P, Any], options: SendOptions, client: Client | None) -> None:
        self._task = task
        self._options = options
        self._client = client

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> str:
        client = self._client if self._client is not None else self._task.engine.client
        return await client.send_task(self._task, args, kwargs, self._options)
