"""SyncTestBus: the test bus for plain ``def`` tests, on an event loop of its own."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, TypeVar

from ..dlq import DeadLetter
from ..engine import Engine
from ..errors import ConfigurationError
from ..priority import Priority
from ..task import Task
from .bus import TestBus
from .recording import HandlerError, Outcome, PublishedEvent, SentMessage

T = TypeVar("T")


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable


class SyncTestBus:
    """``TestBus`` with blocking methods, for tests that are not coroutines::

        def test_limit():
            with SyncTestBus(risk) as bus:
                verdict = bus.request(check_position, trade)
                bus.drain()

    It runs its own event loop (``asyncio.Runner``), so it cannot be used inside a
    running loop (an ``async def`` test): use ``TestBus`` there.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, *engines: Engine, **options: Any) -> None:
        self.bus = TestBus(*engines, **options)
        self._runner: asyncio.Runner | None = None

    def __enter__(self) -> SyncTestBus:
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # no loop running in this thread: the bus can run its own
            pass
        else:
            raise ConfigurationError(
                "SyncTestBus runs its own event loop, so it cannot open inside a running"
                " one (an async def test): use `async with TestBus(...)` there"
            )
        self._runner = asyncio.Runner()
        try:
            self._runner.run(self.bus.__aenter__())
        except BaseException:
            self._runner.close()
            self._runner = None
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return
        try:
            runner.run(self.bus.__aexit__(exc_type, exc, tb))
        finally:
            runner.close()

    def run(self, awaitable: Awaitable[T]) -> T:
        """Await anything on the bus's loop: ``bus.run(task.send_with(countdown=5)(x))``."""
        if self._runner is None:
            if inspect.iscoroutine(awaitable):
                awaitable.close()  # it will never run: no "never awaited" warning
            raise ConfigurationError("the test bus is not open: use `with SyncTestBus(...)`")
        return self._runner.run(_await(awaitable))

    def send(self, task: Task[Any, Any], *args: Any, **kwargs: Any) -> str:
        """Send a message to ``task``; returns its id. It runs at the next ``drain()``."""
        return str(self.run(task.send(*args, **kwargs)))

    def send_with(self, task: Task[Any, Any], **options: Any) -> Callable[..., str]:
        """Send options, then the arguments: ``bus.send_with(task, countdown=30)(x)``."""
        sender = task.send_with(**options)
        return lambda *args, **kwargs: str(self.run(sender(*args, **kwargs)))

    def request(
        self, task: Task[Any, Any], *args: Any, timeout: float = 30.0, **kwargs: Any
    ) -> Any:
        """Send and wait for the result; the bus serves the engines meanwhile."""
        return self.run(task.request_with(timeout=timeout)(*args, **kwargs))

    def publish(self, topic: str, payload: Any, priority: Priority | str = Priority.NORMAL) -> str:
        """Publish an event; returns its id."""
        return self.run(self.bus.client.publish(topic, payload, priority))

    def drain(self, timeout: float = 10.0, *, raise_errors: bool = True) -> None:
        """``TestBus.drain``."""
        self.run(self.bus.drain(timeout, raise_errors=raise_errors))

    def advance(self, seconds: float) -> None:
        """``TestBus.advance``."""
        self.run(self.bus.advance(seconds))

    def dead_letters(self, engine: Engine | str, reason: str | None = None) -> list[DeadLetter]:
        return self.run(self.bus.dead_letters(engine, reason))

    def sent(self, task: Task[Any, Any]) -> list[SentMessage]:
        return self.bus.sent(task)

    def published(self, pattern: str = "#") -> list[PublishedEvent]:
        return self.bus.published(pattern)

    def results(self, task: Task[Any, Any]) -> list[Any]:
        return self.bus.results(task)

    @property
    def errors(self) -> list[HandlerError]:
        return self.bus.errors

    @property
    def outcomes(self) -> list[Outcome]:
        return self.bus.outcomes
