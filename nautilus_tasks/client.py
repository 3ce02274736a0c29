"""The sending side: a connection to a bus that tasks are sent through."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .buffer import BufferConfig, SendBuffer
from .config import BusConfig
from .errors import BacklogFull, ConfigurationError, RequestTimeout
from .events import Publisher
from .message import ENVELOPE_FIELD, Envelope, Kind, decode, encode, new_id, now_ms, task_body
from .priority import Priority
from .requests import ReplyReader, client_id, outcome
from .task import MessageHandle, SendOptions, Task

if TYPE_CHECKING:
    from .broker.redis import RedisBroker
    from .engine import Engine

log = logging.getLogger("nautilus_tasks.client")


class Client:
    """Sends messages to a bus. Make one per process and bind your engines to it::

    async with await Client.connect() as client:
        client.bind(risk)
        await validate_trade.send(trade)
    """

    def __init__(
        self,
        broker: RedisBroker,
        *,
        source: str | None = None,
        buffering: BufferConfig | None = None,
    ) -> None:
        self.broker = broker
        self.source = source
        self.buffer = SendBuffer(broker, buffering)
        self._bound: list[Engine] = []
        self.client_id = client_id()
        self.replies = ReplyReader(broker, self.client_id)
        self.publisher = Publisher(broker, source)

    @classmethod
    async def connect(
        cls,
        bus: BusConfig | str | None = None,
        *,
        source: str | None = None,
        buffering: BufferConfig | None = None,
    ) -> Client:
        """Connect to ``bus``: a BusConfig, a URL, or None for NT_REDIS_URL / embedded.

        ``buffering`` sets the per-tier flush intervals of sends (``BufferConfig``);
        ``BufferConfig(enabled=False)`` sends each message in its own round trip.
        """
        from .broker.redis import RedisBroker

        config = bus if isinstance(bus, BusConfig) else BusConfig.from_env(bus)
        return cls(await RedisBroker.connect(config), source=source, buffering=buffering)

    async def flush(self) -> None:
        """Store every buffered message now; raises the first failure of a send_nowait."""
        await self.buffer.flush()

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
        try:
            await self.buffer.flush()
        finally:
            await self.replies.close()
        await self.broker.close()

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
        if options.result_ttl is None and task.options.result_ttl is not None:
            options = dataclasses.replace(options, result_ttl=task.options.result_ttl)
        envelope = self.build(task.name, args, kwargs, priority, options, task.options.ttl)
        await self.enqueue(task.engine.name, envelope, options, task.engine.max_backlog)
        return MessageHandle(envelope.id, self, task)

    def send_task_nowait(
        self, task: Task[Any, Any], args: Sequence[Any], kwargs: dict[str, Any]
    ) -> MessageHandle:
        """Buffer one call of ``task`` and return at once; ``flush()`` reports failures."""
        if task.engine.max_backlog is not None:
            raise ConfigurationError("send_nowait cannot check max_backlog; use send()")
        envelope = self.build(task.name, args, kwargs, task.options.priority, SendOptions())
        payload = encode(envelope, self.broker.config.max_message_bytes)
        self.buffer.put_nowait(task.engine.name, envelope.tier, payload)
        return MessageHandle(envelope.id, self, task)

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
        future = self.replies.expect(envelope.id)
        try:
            await self.enqueue(task.engine.name, envelope, options, task.engine.max_backlog)
        except BaseException:
            self.replies.forget(envelope.id)
            raise
        body = await self.replies.wait(envelope.id, future, timeout)
        return task.validator.result(outcome(task.qualified_name, body))

    async def publish(
        self, topic: str, payload: Any, priority: Priority | str = Priority.NORMAL
    ) -> str:
        """Publish an event: a durable copy in the inbox of every subscribed engine."""
        event_id, _ = await self.publisher.publish(topic, payload, Priority.parse(priority))
        return event_id

    async def result(self, task: Task[Any, Any], message_id: str, timeout: float) -> Any:
        """The stored outcome of a message sent with a result TTL (polled until ``timeout``)."""
        deadline = time.monotonic() + timeout
        pause = 0.005
        while True:
            raw = await self.broker.get_result(task.engine.name, message_id)
            if raw is not None:
                body = decode({ENVELOPE_FIELD: raw}).body
                return task.validator.result(outcome(task.qualified_name, body))
            if time.monotonic() + pause > deadline:
                raise RequestTimeout(f"no stored result for {message_id} within {timeout}s")
            await asyncio.sleep(pause)  # results have no push channel: poll with backoff
            pause = min(0.2, pause * 2)

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
    ) -> None:
        """Store an envelope: in its tier stream, or the delayed set for countdown/eta.

        With ``max_backlog``, a full inbox raises BacklogFull, after waiting up to
        ``options.backlog_wait`` seconds for room when that is given.
        """
        payload = encode(envelope, self.broker.config.max_message_bytes)
        eta_ms = options.eta_ms()
        if options.countdown is None and eta_ms is None:
            if max_backlog is None and self.buffer.config.enabled:
                await self.buffer.put(engine, envelope.tier, payload)
            elif max_backlog is None:
                await self.broker.enqueue(engine, envelope.tier, payload)
            else:
                await self._enqueue_bounded(engine, envelope, payload, max_backlog, options)
            return
        delay_ms = None if options.countdown is None else int(options.countdown * 1000)
        await self.broker.schedule(engine, envelope.tier, payload, eta_ms=eta_ms, delay_ms=delay_ms)

    async def _enqueue_bounded(
        self,
        engine: str,
        envelope: Envelope,
        payload: bytes,
        max_backlog: int,
        options: SendOptions,
    ) -> None:
        deadline = time.monotonic() + (options.backlog_wait or 0.0)
        pause = 0.01
        while True:
            try:
                await self.broker.enqueue_bounded(engine, envelope.tier, payload, max_backlog)
                return
            except BacklogFull:
                if time.monotonic() + pause > deadline:
                    raise
            await asyncio.sleep(pause)  # room appears as workers drain; poll with backoff
            pause = min(0.5, pause * 2)

    async def send_many(
        self, task: Task[Any, Any], calls: Sequence[tuple[Sequence[Any], dict[str, Any]]]
    ) -> list[str]:
        """Enqueue many calls of ``task`` in one pipelined round trip (bulk)."""
        if task.engine.max_backlog is not None:  # each send checks the backlog
            return [
                await self.send_task(task, args, kwargs, SendOptions()) for args, kwargs in calls
            ]
        priority = task.options.priority
        items = []
        ids = []
        for args, kwargs in calls:
            envelope = self.build(
                task.name, args, kwargs, priority, SendOptions(), task.options.ttl
            )
            items.append(
                (task.engine.name, priority, encode(envelope, self.broker.config.max_message_bytes))
            )
            ids.append(envelope.id)
        await self.broker.enqueue_many(items)
        return ids
