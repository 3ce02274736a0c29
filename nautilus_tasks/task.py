"""Tasks: typed handlers that can be called locally or sent through a bus."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, Literal, ParamSpec, TypeVar, cast

from .errors import BusUnavailable, ConfigurationError, RequestTimeout
from .priority import Priority
from .validation import ArgsValidator

if TYPE_CHECKING:
    from .client import Client
    from .engine import Engine

log = logging.getLogger("nautilus_tasks.task")

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
    result_ttl: float | None = None
    """Store every outcome for this many seconds (None: only when a send asks)."""
    durable_result: bool = False
    """Store every outcome in PostgreSQL (workers with NT_POSTGRES_DSN), for ``result()``."""

    def __post_init__(self) -> None:
        name = self.name
        if not name or any(c in name for c in " \t\r\n|"):
            raise ConfigurationError(f"invalid task name {name!r}")
        for label in ("timeout", "ttl", "backoff_base", "backoff_max", "result_ttl"):
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
    callback_topic: str | None = None
    """Publish the outcome (result or failure) as an event on this topic."""
    result_ttl: float | None = None
    """Store the outcome for this many seconds, for ``await handle.result()``."""
    durable_result: bool | None = None
    """Store the outcome in PostgreSQL, for ``await handle.result()`` (None: the task's)."""

    def __post_init__(self) -> None:
        if self.countdown is not None and self.eta is not None:
            raise ConfigurationError("give countdown or eta, not both")
        if self.countdown is not None and self.countdown < 0:
            raise ConfigurationError(f"countdown must be >= 0, not {self.countdown}")
        if self.ttl is not None and self.ttl <= 0:
            raise ConfigurationError(f"ttl must be positive, not {self.ttl}")

    def due_ms(self) -> int | None:
        """When the message becomes due by this process's clock, if delayed."""
        if self.countdown is not None:
            return int(time.time() * 1000 + self.countdown * 1000)
        return self.eta_ms()

    def eta_ms(self) -> int | None:
        """The ETA as epoch milliseconds, if one was given."""
        if self.eta is None:
            return None
        seconds = self.eta.timestamp() if isinstance(self.eta, datetime) else float(self.eta)
        return int(seconds * 1000)


DEFAULT_SEND = SendOptions()
"""The options of a plain ``send()`` (frozen: shared by every send, not rebuilt each time)."""


class Task(Generic[P, R]):
    """A declared task. Call it to run it here; ``send`` it to run it on a worker."""

    def __init__(self, engine: Engine, fn: Callable[P, R], options: TaskOptions) -> None:
        self.engine = engine
        self.fn = fn
        self.options = options
        self.is_async = inspect.iscoroutinefunction(fn)
        functools.update_wrapper(self, fn)
        self.validator = ArgsValidator(self.qualified_name, fn)
        self.pattern: str | None = None
        """The topic pattern, for an event handler declared with ``engine.on``."""
        self.fallbacks = 0
        """How many requests ran locally because the bus or its workers did not answer."""

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

    async def send(self, *args: P.args, **kwargs: P.kwargs) -> MessageHandle:
        """Enqueue with the task's defaults; returns the handle (a str: the message id)
        once the message is stored in Redis."""
        return await self.engine.client.send_task(self, args, kwargs, DEFAULT_SEND)

    def send_nowait(self, *args: P.args, **kwargs: P.kwargs) -> MessageHandle:
        """Buffer the message and return at once; ``await client.flush()`` stores it for
        sure and raises if a buffered send failed."""
        return self.engine.client.send_task_nowait(self, args, kwargs)

    async def request(
        self,
        *args: Any,
        timeout: float = 30.0,
        fallback: Literal["local"] | None = None,
        **kwargs: Any,
    ) -> R:
        """Send and wait for the result: ``await task.request(trade, timeout=2.0)``.

        Raises TaskFailed with the remote details, or RequestTimeout. With
        ``fallback="local"`` the handler runs in this process instead when the bus
        is unreachable or no reply comes in time (logged). A handler parameter named
        ``timeout`` or ``fallback`` needs ``request_with(...)``.
        """
        return await self.request_with(timeout=timeout, fallback=fallback)(*args, **kwargs)

    def request_with(
        self,
        *,
        timeout: float = 30.0,
        fallback: Literal["local"] | None = None,
        priority: Priority | str | None = None,
        client: Client | None = None,
    ) -> Requester[P, R]:
        """Request options, then the arguments: ``await task.request_with(timeout=2)(x)``."""
        options = SendOptions(priority=None if priority is None else Priority.parse(priority))
        return Requester(self, options, timeout, fallback, client)

    def request_sync(
        self, *args: Any, timeout: float = 30.0, url: str | None = None, **kwargs: Any
    ) -> R:
        """For scripts: connect (``url``, NT_REDIS_URL or the embedded server), request, close."""
        from .client import Client

        async def once() -> R:
            async with await Client.connect(url, source="script") as client:
                return await self.request_with(timeout=timeout, client=client)(*args, **kwargs)

        return asyncio.run(once())

    async def run_local(self, *args: Any, **kwargs: Any) -> R:
        """Run the handler here with the worker's argument validation."""
        validated = self.validator.validate(list(args), kwargs)
        fn = cast(Callable[..., Any], self.fn)
        if self.is_async:
            return cast(R, await fn(**validated))
        return cast(R, await asyncio.to_thread(functools.partial(fn, **validated)))

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
        callback_topic: str | None = None,
        result_ttl: float | None = None,
        durable_result: bool | None = None,
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
            callback_topic=callback_topic,
            result_ttl=result_ttl,
            durable_result=durable_result,
        )
        return Sender(self, options, client)


class Sender(Generic[P]):
    """A task with its send options applied, awaiting its arguments."""

    def __init__(self, task: Task[P, Any], options: SendOptions, client: Client | None) -> None:
        self._task = task
        self._options = options
        self._client = client

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> MessageHandle:
        client = self._client if self._client is not None else self._task.engine.client
        return await client.send_task(self._task, args, kwargs, self._options)


class MessageHandle(str):
    """A sent message: the message id (it is a ``str``), and a way to its stored result."""

    _client: Client
    _task: Task[Any, Any]
    durable: bool
    """Whether the outcome is stored in PostgreSQL (a durable result) too."""

    def __new__(
        cls, message_id: str, client: Client, task: Task[Any, Any], durable: bool = False
    ) -> MessageHandle:
        handle = super().__new__(cls, message_id)
        handle._client = client
        handle._task = task
        handle.durable = durable
        return handle

    @property
    def id(self) -> str:
        return str(self)

    async def result(self, timeout: float = 30.0) -> Any:
        """The stored outcome (send with ``result_ttl`` or ``durable_result``), or
        TaskFailed / RequestTimeout."""
        return await self._client.result(self._task, str(self), timeout, durable=self.durable)


class Requester(Generic[P, R]):
    """A task with its request options applied, awaiting its arguments."""

    def __init__(
        self,
        task: Task[P, R],
        options: SendOptions,
        timeout: float,
        fallback: Literal["local"] | None,
        client: Client | None,
    ) -> None:
        self._task = task
        self._options = options
        self._timeout = timeout
        self._fallback = fallback
        self._client = client

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        task = self._task
        try:
            client = self._client if self._client is not None else task.engine.client
            result: R = await client.request(task, args, kwargs, self._options, self._timeout)
            return result
        except (BusUnavailable, RequestTimeout) as exc:
            if self._fallback != "local":
                raise
            task.fallbacks += 1
            log.warning("request of %s ran locally (fallback): %s", task.qualified_name, exc)
            return await task.run_local(*args, **kwargs)
