"""TestBus: run engines in the test's own process, on fakeredis or on a real server.

Both backends run the same code: the ``broker/redis`` broker and its Lua scripts, and the
worker's fetcher, executor and ack batcher (see ``runner.py``). In memory, the broker's
redis-py client talks to a fakeredis server (``broker/redis/fake.py``); with ``url=`` it talks to a
real Redis or Valkey under its own key prefix.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from ..broker.redis.testkit import delete_bus, shift_delayed
from ..buses import DEFAULT, Buses, BusLink
from ..client import Client
from ..config import BusConfig, WorkerConfig
from ..dlq import DeadLetter, DeadLetters
from ..engine import Engine
from ..errors import ConfigurationError, DrainTimeout, Retry
from ..requests import ReplyReader, client_id
from ..task import Task
from ..topics import check_pattern, matches
from .recording import HandlerError, Journal, Outcome, PublishedEvent, RecordingBroker, SentMessage
from .runner import DEFAULT_CONFIG, EngineRunner

if TYPE_CHECKING:
    from ..broker.redis.fake import Clock

Backend = Literal["memory", "server"]
MAX_PAUSE = 0.01
"""Longest pause between two polls while handlers run (seconds)."""


class _ServingReplies(ReplyReader):
    """The client's reply reader; while a request waits, the bus serves the engines."""

    def __init__(self, broker: RecordingBroker, client: str, bus: TestBus) -> None:
        super().__init__(broker, client)
        self._bus = bus

    async def wait(self, correlation_id: str, future: asyncio.Future[Any], timeout: float) -> Any:
        if self._bus.serving:  # a drain is running (a handler requests): it serves
            return await super().wait(correlation_id, future, timeout)
        serve = asyncio.create_task(self._bus._serve_until(future))
        try:
            return await super().wait(correlation_id, future, timeout)
        finally:
            self._bus._stop_serving(serve)
            await asyncio.wait({serve})
            failed = None if serve.cancelled() else serve.exception()
            if failed is not None:
                raise failed


class TestBus:
    """The given engines, connected to an in-memory bus (or a real one with ``url``)::

        async with TestBus(risk, alerts) as bus:
            await check_position.send(trade)
            await bus.drain()
            assert bus.published("risk.breach.*")

    Messages wait in their inboxes until ``drain()``, which runs them (and everything they
    cause) to the end; ``await task.request(...)`` is served while it waits. ``advance()``
    moves time on, so countdowns, ETAs and retry backoffs fall due at once.
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        *engines: Engine,
        url: str | None = None,
        prefix: str = "nt-test",
        routes: Mapping[str, str] | None = None,
        config: WorkerConfig = DEFAULT_CONFIG,
        cleanup: bool = True,
    ) -> None:
        names = [e.name for e in engines]
        if len(set(names)) != len(names):
            raise ConfigurationError(f"an engine is given twice: {names}")
        self.engines = list(engines)
        self.backend: Backend = "memory" if url is None else "server"
        self.url = url
        self.prefix = prefix
        self.routes = dict(routes or {})
        self.config = config
        self.cleanup = cleanup
        """On a server: delete the bus's keys when the bus closes."""
        self.journal = Journal()
        self.serving = 0
        self._clock: Clock | None = None
        self._client: Client | None = None
        self._runners: list[EngineRunner] = []
        self._previous: dict[str, Client | None] = {}
        self._stop_flags: dict[asyncio.Task[None], bool] = {}

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def client(self) -> Client:
        """The client the engines are bound to while the bus is open."""
        if self._client is None:
            raise ConfigurationError("the test bus is not open: use `async with TestBus(...)`")
        return self._client

    def _buses(self) -> Buses:
        names = {DEFAULT, *(e.bus for e in self.engines), *self.routes.values()}
        url = self.url or "memory://nautilus-tasks-testing"
        configs = {
            n: BusConfig.from_url(url, prefix=self.prefix if n == DEFAULT else f"{self.prefix}-{n}")
            for n in sorted(names)
        }
        return Buses(configs, self.routes)

    async def _broker(self, config: BusConfig) -> RecordingBroker:
        if self.backend == "server":
            broker = await RecordingBroker.connect(config)
        else:
            try:
                from ..broker.redis.fake import Clock, ClockedServer, fake_redis
            except ImportError as exc:  # pragma: no cover - depends on the installed extras
                raise ConfigurationError(
                    f"the in-memory test bus needs fakeredis: pip install"
                    f" 'nautilus-tasks[testing]' ({exc})"
                ) from exc
            self._clock = self._clock or Clock()
            broker = await RecordingBroker.attach(config, fake_redis(ClockedServer(self._clock)))
        broker.journal = self.journal
        return broker

    async def __aenter__(self) -> TestBus:
        buses = self._buses()
        ident = client_id()
        links: dict[str, BusLink] = {}
        try:
            for name, config in buses.configs.items():
                broker = await self._broker(config)
                links[name] = link = BusLink(name, broker, ident, "tests", None)
                link.replies = _ServingReplies(broker, ident, self)
            self._client = Client(links, source="tests", buses=buses)
            for engine in self.engines:
                for name in buses.for_engine(engine):
                    patterns = [p for p in engine.patterns if buses.for_topic(p) == name]
                    home = links[name].broker
                    assert isinstance(home, RecordingBroker)
                    runner = EngineRunner(engine, home, patterns, self.journal, self.config)
                    self._runners.append(runner)
                    await runner.start()
        except BaseException:
            if self._client is None:  # not all buses connected: close those that did
                for link in links.values():
                    await link.broker.close()
            await self._close()
            raise
        self._previous = {e.name: e._client for e in self.engines}
        self._client.bind(*self.engines)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close()

    async def _close(self) -> None:
        try:
            for runner in self._runners:
                await runner.stop()
            if self._client is not None:
                if self.backend == "server" and self.cleanup:
                    for link in self._client.links.values():
                        await delete_bus(link.broker)
                await self._client.close()
        finally:
            for engine in self.engines:
                if engine.name in self._previous:
                    engine.bind(self._previous[engine.name])
            self._runners.clear()
            self._client = None

    # -- running -----------------------------------------------------------------------

    async def drain(self, timeout: float = 10.0, *, raise_errors: bool = True) -> None:
        """Run every engine's tasks and event handlers until all inboxes are empty, every
        due delayed message has run, and nothing is in flight.

        A handler's exception does not stop the drain; at its end the first one is raised
        again, with the handler's traceback (``raise_errors=False``: they are only collected
        in ``errors``). ``Retry``, a handler asking for another run, is only collected.
        DrainTimeout if the engines are still busy after ``timeout`` s.
        """
        first = len(self.journal.errors)
        self.serving += 1
        try:
            async with asyncio.timeout(timeout):
                await self._serve_until(None)
        except TimeoutError:
            busy = {r.engine.name: r.held for r in self._runners if not r.idle}
            raise DrainTimeout(
                f"drain still busy after {timeout}s (messages held per engine: {busy})"
            ) from None
        finally:
            self.serving -= 1
        # a handler raising Retry asks for another run: collected, not a failure to raise
        errors = [e for e in self.journal.errors[first:] if not isinstance(e.exception, Retry)]
        if errors and raise_errors:
            exc = errors[0].exception
            exc.add_note(
                f"raised by the handler of {errors[0].task} for message {errors[0].envelope.id}"
                f" during TestBus.drain() ({len(errors)} handler errors in this drain; see"
                " bus.errors, or drain(raise_errors=False))"
            )
            raise exc

    async def _serve_until(self, future: asyncio.Future[Any] | None) -> None:
        """Poll the engines: until idle (``future`` None) or until ``future`` is done."""
        task = asyncio.current_task()
        assert task is not None
        self._stop_flags[task] = False
        pause = 0.0
        try:
            while not self._stop_flags[task] and (future is None or not future.done()):
                await self.client.flush()
                idle = all(r.idle for r in self._runners)
                moved = 0
                for runner in self._runners:
                    moved += await runner.poll()
                if moved:
                    pause = 0.0
                    await asyncio.sleep(0)
                    continue
                if future is None and idle and all(r.idle for r in self._runners):
                    return
                pause = min(MAX_PAUSE, pause * 2 or 0.0005)
                if future is None:
                    await asyncio.sleep(pause)
                else:
                    await asyncio.wait({future}, timeout=pause)
        finally:
            del self._stop_flags[task]

    def _stop_serving(self, task: asyncio.Task[None]) -> None:
        if task in self._stop_flags:
            self._stop_flags[task] = True

    async def advance(self, seconds: float) -> None:
        """Move time on by ``seconds``: countdowns, ETAs and retry backoffs that fall due
        within it are due now (they run at the next ``drain()``).

        In memory the server's clock (Redis TIME) moves; on a server, the due times of the
        messages already delayed move earlier instead (see docs/testing.md).
        """
        if seconds < 0:
            raise ConfigurationError(f"time only moves forward, not by {seconds}s")
        if self._clock is not None:
            self._clock.advance(seconds)
            return
        ms = round(seconds * 1000)
        for runner in self._runners:
            broker = runner.worker.broker
            assert isinstance(broker, RecordingBroker)
            await shift_delayed(broker, runner.engine.name, ms)

    # -- inspection --------------------------------------------------------------------

    @property
    def errors(self) -> list[HandlerError]:
        """Every handler exception so far, in order."""
        return list(self.journal.errors)

    @property
    def outcomes(self) -> list[Outcome]:
        """Every handler that returned, with its message and result, in order."""
        return list(self.journal.outcomes)

    def sent(self, task: Task[Any, Any]) -> list[SentMessage]:
        """The messages sent to ``task``, in order (retries are not new messages)."""
        engine, name = task.engine.name, task.name
        return [m for m in self.journal.sent if m.engine == engine and m.task == name]

    def published(self, pattern: str = "#") -> list[PublishedEvent]:
        """The events published on topics matching ``pattern``, in order."""
        check_pattern(pattern)
        return [e for e in self.journal.published if matches(pattern, e.topic)]

    def results(self, task: Task[Any, Any]) -> list[Any]:
        """What the handler of ``task`` returned, one value per successful run, in order."""
        name = task.qualified_name
        return [o.result for o in self.journal.outcomes if o.task == name]

    async def dead_letters(
        self, engine: Engine | str, reason: str | None = None
    ) -> list[DeadLetter]:
        """The dead letters of ``engine``, oldest first, each with its reason and error."""
        name = engine if isinstance(engine, str) else engine.name
        bus = DEFAULT if isinstance(engine, str) else engine.bus
        dead = DeadLetters(self.client)
        if bus != DEFAULT:
            dead = DeadLetters(Client({DEFAULT: self.client.links[bus]}))
        return await dead.list(name, reason=reason, limit=10_000, newest_first=False)
