"""Engine: a named service with its tasks. Declaration only; no I/O happens here."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

from .errors import ConfigurationError, NotBound, UnknownTask
from .priority import Priority
from .task import Task, TaskOptions

if TYPE_CHECKING:
    from .client import Client

P = ParamSpec("P")
R = TypeVar("R")

_NAME = re.compile(r"^[a-z][a-z0-9_\-]{0,63}$")


class Engine:
    """A service of the platform (risk, factors...), with its own inbox streams.

    >>> risk = Engine("risk")
    >>> @risk.task(priority=Priority.CRITICAL)
    ... def check(limit: float) -> bool: ...
    """

    def __init__(self, name: str) -> None:
        if not _NAME.match(name):
            raise ConfigurationError(
                f"engine name {name!r} must be lower-case letters, digits, '_' or '-',"
                " starting with a letter"
            )
        self.name = name
        self.tasks: dict[str, Task[Any, Any]] = {}
        self._client: Client | None = None

    def __repr__(self) -> str:
        return f"Engine({self.name!r}, tasks={sorted(self.tasks)})"

    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...

    @overload
    def task(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        priority: Priority | str = Priority.NORMAL,
        timeout: float | None = None,
        ttl: float | None = None,
        retries: int = 3,
    ) -> Callable[[Callable[P, R]], Task[P, R]]: ...

    def task(
        self,
        fn: Callable[P, R] | None = None,
        /,
        *,
        name: str | None = None,
        priority: Priority | str = Priority.NORMAL,
        timeout: float | None = None,
        ttl: float | None = None,
        retries: int = 3,
    ) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
        """Declare a task. Use bare (``@engine.task``) or with options."""

        def decorate(func: Callable[P, R]) -> Task[P, R]:
            options = TaskOptions.build(
                name=name or func.__name__,
                priority=priority,
                timeout=timeout,
                ttl=ttl,
                retries=retries,
            )
            if options.name in self.tasks:
                raise ConfigurationError(
                    f"engine {self.name!r} already has a task {options.name!r}"
                )
            task = Task(self, func, options)
            self.tasks[options.name] = task
            return task

        return decorate if fn is None else decorate(fn)

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
