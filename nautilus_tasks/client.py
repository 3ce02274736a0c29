"""The sending side: a connection to a bus that tasks are sent through."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .buffer import BufferConfig
from .buses import DEFAULT, Buses, BusLink, enqueue_many_bounded
from .config import BusConfig
from .errors import ConfigurationError, RequestTimeout
from .events import Publisher
from .message import (
    ENVELOPE_FIELD,
    Envelope,
    Kind,
    decode,
    encode,
    new_id,
    now_ms,
    task_body,
    task_payload,
)
from .priority import Priority
from .requests import ReplyReader, client_id, outcome
from .task import DEFAULT_SEND, MessageHandle, SendOptions, Task

if TYPE_CHECKING:
    from .broker.redis import RedisBroker
    from .broker.redis.autopipe import AutoPipeline
    from .engine import Engine
    from .store.results import DurableResults

log = logging.getLogger("nautilus_tasks.client")


class Client:
    """Sends messages to a bus. Make one per process and bind your engines to it::

    async with await Client.connect() as client:
        client.bind(risk)
        await validate_trade.send(trade)
    """

    def __init__(
        self,
        links: Mapping[str, BusLink],
        *,
        source: str | None = None,
        buses: Buses | None = None,
    ) -> None:
        if DEFAULT not in links:
            raise ConfigurationError("a client needs a 'default' bus")
        self.links = dict(links)
        self.buses = buses
        self.source = source
        self.client_id = next(iter(links.values())).replies.client_id
        self._bound: list[Engine] = []
        self._results: DurableResults | None = None

    @property
    def default(self) -> BusLink:
        return self.links[DEFAULT]

    @property
    def broker(self) -> RedisBroker:
        """The default bus's broker."""
        return self.default.broker

    @property
    def replies(self) -> ReplyReader:
        return self.default.replies

    @property
    def publisher(self) -> Publisher:
        return self.default.publisher

    def link_of(self, engine: Engine) -> BusLink:
        """The bus holding ``engine``'s task inbox."""
        try:
            return self.links[engine.bus]
        except KeyError:
            raise ConfigurationError(
                f"engine {engine.name!r} lives on bus {engine.bus!r}, which this client"
                f" does not connect to ({sorted(self.links)})"
            ) from None

    def redis(self, bus: str = DEFAULT) -> AutoPipeline:
        """The auto-pipelined Redis handle of ``bus`` for your own keys: commands issued by
        concurrent coroutines go out in one round trip (docs/configuration.md)."""
        if bus not in self.links:
            raise ConfigurationError(f"this client has no bus {bus!r} ({sorted(self.links)})")
        return self.links[bus].redis

    def link_for_topic(self, topic: str) -> BusLink:
        """The bus an event topic routes to."""
        return self.links[self.buses.for_topic(topic) if self.buses else DEFAULT]

    @classmethod
    async def connect(
        cls,
        bus: Buses | BusConfig | str | None = None,
        *,
        source: str | None = None,
        buffering: BufferConfig | None = None,
    ) -> Client:
        """Connect to ``bus``: ``Buses`` (several, with routes), a BusConfig, a URL, or
        None for NT_REDIS_URL / the embedded server.

        ``buffering`` sets the per-tier flush intervals of sends (``BufferConfig``);
        ``BufferConfig(enabled=False)`` sends each message in its own round trip.
        """
        from .broker.redis import RedisBroker

        if isinstance(bus, Buses):
            buses: Buses | None = bus
            configs = dict(bus.configs)
        else:
            buses = None
            configs = {DEFAULT: bus if isinstance(bus, BusConfig) else BusConfig.from_env(bus)}
        ident = client_id()
        links: dict[str, BusLink] = {}
        try:
            for name, config in configs.items():
                broker = await RedisBroker.connect(config)
                links[name] = BusLink(name, broker, ident, source, buffering)
        except BaseException:
            for link in links.values():
                await link.broker.close()
            raise
        return cls(links, source=source, buses=buses)

    async def flush(self) -> None:
        """Store every buffered message now; raises the first failure of a send_nowait."""
        for link in self.links.values():
            await link.buffer.flush()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def bind(self, *engines: Engine) -> Client:
        """Route the tasks of ``engines`` through this client."""
        for engine in engines:
            engine.bind(self)
            self._bound.append(engine)
        return self

    async def close(self) -> None:
        """Unbind the engines bound here and close the connections."""
        for engine in self._bound:
            if engine._client is self:
                engine.bind(None)
        self._bound.clear()
        errors: list[Exception] = []
        if self._results is not None:
            results, self._results = self._results, None
            await results.close()
        for link in self.links.values():
            try:
                await link.close()
            except Exception as exc:  # close every bus; report the first failure after
                errors.append(exc)
        if errors:
            raise errors[0]

    def build(
        self,
        name: str,
        args: Sequence[Any],
        kwargs: dict[str, Any],
        priority: Priority,
        options: SendOptions,
        ttl: float | None = None,
    ) -> Envelope:
        """The envelope of one task message."""
        ttl_s = options.ttl if options.ttl is not None else ttl
        return Envelope(
            id=options.message_id or new_id(),
            kind=Kind.TASK,
            name=name,
            priority=priority.label,
            body=task_body(tuple(args), kwargs),
            enqueued_at=now_ms(),
            ttl=None if ttl_s is None else max(1, int(ttl_s * 1000)),
            source=self.source,
            trace_id=options.trace_id,
            eta=options.due_ms(),
            callback_topic=options.callback_topic,
            result_ttl=None if options.result_ttl is None else int(options.result_ttl * 1000),
            durable_result=True if options.durable_result else None,
        )

    async def send_task(
        self,
        task: Task[Any, Any],
        args: Sequence[Any],
        kwargs: dict[str, Any],
        options: SendOptions,
    ) -> MessageHandle:
        """Enqueue one call of ``task``; returns its handle (the message id) once stored."""
        priority = options.priority if options.priority is not None else task.options.priority
        link = self.link_of(task.engine)
        # the common case, without the model
        plain = options is DEFAULT_SEND and task.options.result_ttl is None
        if plain and task.engine.max_backlog is None and not task.options.durable_result:
            message_id, payload = self._plain(task, args, kwargs, link, task.options.ttl)
            if link.buffer.config.enabled:
                await link.buffer.put(task.engine.name, priority, payload)
            else:
                await link.broker.enqueue(task.engine.name, priority, payload)
            return MessageHandle(message_id, self, task)
        envelope = self._envelope(task, args, kwargs, priority, options)
        await self.enqueue(task.engine.name, envelope, options, task.engine.max_backlog, link)
        return MessageHandle(envelope.id, self, task, bool(envelope.durable_result))

    def _envelope(
        self,
        task: Task[Any, Any],
        args: Sequence[Any],
        kwargs: dict[str, Any],
        priority: Priority,
        options: SendOptions,
    ) -> Envelope:
        """``build``, with the task's declared result_ttl and durable_result as defaults."""
        if options.result_ttl is None and task.options.result_ttl is not None:
            options = dataclasses.replace(options, result_ttl=task.options.result_ttl)
        if options.durable_result is None and task.options.durable_result:
            options = dataclasses.replace(options, durable_result=True)
        return self.build(task.name, args, kwargs, priority, options, task.options.ttl)

    def _plain(
        self,
        task: Task[Any, Any],
        args: Sequence[Any],
        kwargs: dict[str, Any],
        link: BusLink,
        ttl: float | None = None,
    ) -> tuple[str, bytes]:
        """Id and payload of a send with no per-send options: ``build`` and ``encode``
        without the pydantic model, unless a value or a durable result needs the model."""
        message_id, limit = new_id(), link.broker.config.max_message_bytes
        if task.options.durable_result:
            options = SendOptions(durable_result=True)
            envelope = self.build(task.name, args, kwargs, task.options.priority, options, ttl)
            return envelope.id, encode(envelope, limit)
        ttl_ms = None if ttl is None else max(1, int(ttl * 1000))
        body = task_body(tuple(args), kwargs)
        priority = task.options.priority
        payload = task_payload(
            message_id, task.name, priority, body, now_ms(),
            ttl_ms=ttl_ms, source=self.source, max_bytes=limit,
        )  # fmt: skip
        if payload is None:
            envelope = self.build(task.name, args, kwargs, priority, DEFAULT_SEND, ttl)
            return envelope.id, encode(envelope, limit)
        return message_id, payload

    def send_task_nowait(
        self, task: Task[Any, Any], args: Sequence[Any], kwargs: dict[str, Any]
    ) -> MessageHandle:
        """Buffer one call of ``task`` and return at once; ``flush()`` reports failures."""
        if task.engine.max_backlog is not None:
            raise ConfigurationError("send_nowait cannot check max_backlog; use send()")
        link = self.link_of(task.engine)
        message_id, payload = self._plain(task, args, kwargs, link)
        link.buffer.put_nowait(task.engine.name, task.options.priority, payload)
        return MessageHandle(message_id, self, task, task.options.durable_result)

    async def request(
        self,
        task: Task[Any, Any],
        args: Sequence[Any],
        kwargs: dict[str, Any],
        options: SendOptions,
        timeout: float,
    ) -> Any:
        """Send and await the reply; the result is validated against the return type."""
        priority = options.priority if options.priority is not None else task.options.priority
        envelope = self.build(task.name, args, kwargs, priority, options, task.options.ttl)
        envelope = envelope.model_copy(
            update={"correlation_id": envelope.id, "reply_to": self.client_id}
        )
        link = self.link_of(task.engine)
        future = link.replies.expect(envelope.id)
        try:
            await self.enqueue(task.engine.name, envelope, options, task.engine.max_backlog, link)
        except BaseException:
            link.replies.forget(envelope.id)
            raise
        body = await link.replies.wait(envelope.id, future, timeout)
        return task.validator.result(outcome(task.qualified_name, body))

    async def publish(
        self, topic: str, payload: Any, priority: Priority | str = Priority.NORMAL
    ) -> str:
        """Publish an event: a durable copy in the inbox of every subscribed engine."""
        publisher = self.link_for_topic(topic).publisher
        event_id, _ = await publisher.publish(topic, payload, Priority.parse(priority))
        return event_id

    async def result(
        self, task: Task[Any, Any], message_id: str, timeout: float, *, durable: bool = False
    ) -> Any:
        """The stored outcome of a message sent with a result TTL, or a durable result in
        PostgreSQL (NT_POSTGRES_DSN) when ``durable``: polled until ``timeout``."""
        deadline = time.monotonic() + timeout
        pause = 0.005
        while True:
            raw = await self.link_of(task.engine).broker.get_result(task.engine.name, message_id)
            if raw is not None:
                body = decode({ENVELOPE_FIELD: raw}).body
                return task.validator.result(outcome(task.qualified_name, body))
            if durable:
                body = await self._durable(task.engine.name, message_id)
                if body is not None:
                    return task.validator.result(outcome(task.qualified_name, body))
            if time.monotonic() + pause > deadline:
                raise RequestTimeout(f"no stored result for {message_id} within {timeout}s")
            await asyncio.sleep(pause)  # results have no push channel: poll with backoff
            pause = min(0.2, pause * 2)

    async def _durable(self, engine: str, message_id: str) -> Any | None:
        if self._results is None:
            from .store.results import DurableResults

            self._results = DurableResults.from_env()
        return await self._results.get(engine, message_id)

    async def send_by_name(
        self,
        engine: str,
        name: str,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        options: SendOptions | None = None,
    ) -> str:
        """Enqueue a task known only by name (from the shell, or another language's task)."""
        options = options or SendOptions()
        priority = options.priority if options.priority is not None else Priority.NORMAL
        envelope = self.build(name, args, kwargs or {}, priority, options)
        await self.enqueue(engine, envelope, options)
        return envelope.id

    async def enqueue(
        self,
        engine: str,
        envelope: Envelope,
        options: SendOptions,
        max_backlog: int | None = None,
        link: BusLink | None = None,
    ) -> None:
        """Store an envelope on ``link`` (default: the default bus); ``BusLink.store``."""
        await (link or self.default).store(engine, envelope, options, max_backlog)

    async def send_many(
        self,
        task: Task[Any, Any],
        calls: Sequence[tuple[Sequence[Any], dict[str, Any]]],
        *,
        backlog_wait: float | None = None,
    ) -> list[str]:
        """Enqueue many calls of ``task`` in one round trip (bulk), all or nothing: every
        message is encoded (MessageTooLarge) before any is written. On an engine with
        max_backlog one script stores the batch only if it fits whole (else BacklogFull,
        after waiting up to ``backlog_wait`` seconds for room for all of it)."""
        link, name, priority = self.link_of(task.engine), task.engine.name, task.options.priority
        if task.engine.max_backlog is not None:
            limit = link.broker.config.max_message_bytes
            envs = [self._envelope(task, a, k, priority, DEFAULT_SEND) for a, k in calls]
            batch = [(priority, encode(e, limit)) for e in envs]
            await enqueue_many_bounded(
                link.broker, name, batch, task.engine.max_backlog, backlog_wait
            )
            return [e.id for e in envs]
        sent = [self._plain(task, a, k, link, task.options.ttl) for a, k in calls]
        await link.broker.enqueue_many([(name, priority, payload) for _, payload in sent])
        return [message_id for message_id, _ in sent]
