"""What a test bus saw: the messages sent and published, the handlers' results and errors.

``RecordingBroker`` is the real ``RedisBroker`` with a journal: each send and publish is
written to Redis by the inherited code first, then recorded (a send that failed is not).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..broker.base import Finish, Publish
from ..broker.redis import RedisBroker
from ..errors import MalformedMessage
from ..message import ENVELOPE_FIELD, Envelope, Kind, decode
from ..priority import Priority


@dataclass(frozen=True, slots=True)
class SentMessage:
    """A task message as it was sent (``args`` and ``kwargs`` as JSON)."""

    engine: str
    task: str
    args: list[Any]
    kwargs: dict[str, Any]
    envelope: Envelope

    @property
    def id(self) -> str:
        return self.envelope.id

    @property
    def priority(self) -> Priority:
        return self.envelope.tier


@dataclass(frozen=True, slots=True)
class PublishedEvent:
    """An event as it was published (``payload`` as JSON), with the engines it went to."""

    topic: str
    payload: Any
    envelope: Envelope
    engines: frozenset[str]


@dataclass(frozen=True, slots=True)
class HandlerError:
    """A handler that raised: its task, the message, and the exception with its traceback."""

    task: str
    envelope: Envelope
    exception: BaseException


@dataclass(frozen=True, slots=True)
class Outcome:
    """A handler that returned: its task, the message, and the value it returned."""

    task: str
    envelope: Envelope
    result: Any


@dataclass
class Journal:
    """Everything recorded, in order."""

    sent: list[SentMessage] = field(default_factory=list)
    published: list[PublishedEvent] = field(default_factory=list)
    errors: list[HandlerError] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    malformed: list[tuple[str, bytes]] = field(default_factory=list)
    """Payloads sent that are not valid envelopes: (engine, payload)."""
    _events: dict[str, int] = field(default_factory=dict)

    def message(self, engine: str, payload: bytes) -> None:
        try:
            envelope = decode({ENVELOPE_FIELD: payload})
        except MalformedMessage:  # sent raw on purpose, say: kept as it was sent
            self.malformed.append((engine, payload))
            return
        if envelope.kind is Kind.EVENT:
            self.event(envelope, [engine])
            return
        body = envelope.body if isinstance(envelope.body, dict) else {}
        args, kwargs = body.get("args", []), body.get("kwargs", {})
        self.sent.append(SentMessage(engine, envelope.name, args, kwargs, envelope))

    def event(self, envelope: Envelope, engines: Sequence[str]) -> None:
        """Record an event once (a publish can reach its subscribers in two calls)."""
        index = self._events.get(envelope.id)
        if index is None:
            self._events[envelope.id] = len(self.published)
            self.published.append(
                PublishedEvent(envelope.name, envelope.body, envelope, frozenset(engines))
            )
            return
        old = self.published[index]
        self.published[index] = PublishedEvent(
            old.topic, old.payload, old.envelope, old.engines | frozenset(engines)
        )


class RecordingBroker(RedisBroker):
    """The Redis broker, recording what is sent and published into ``journal``."""

    journal: Journal

    async def enqueue(self, engine: str, tier: Priority, payload: bytes) -> str:
        entry_id = await super().enqueue(engine, tier, payload)
        self.journal.message(engine, payload)
        return entry_id

    async def enqueue_many(self, items: Sequence[tuple[str, Priority, bytes]]) -> list[str]:
        ids = await super().enqueue_many(items)
        for engine, _, payload in items:
            self.journal.message(engine, payload)
        return ids

    async def enqueue_bounded(
        self, engine: str, tier: Priority, payload: bytes, max_backlog: int
    ) -> str:
        entry_id = await super().enqueue_bounded(engine, tier, payload, max_backlog)
        self.journal.message(engine, payload)
        return entry_id

    async def enqueue_many_bounded(
        self, engine: str, items: Sequence[tuple[Priority, bytes]], max_backlog: int
    ) -> list[str]:
        ids = await super().enqueue_many_bounded(engine, items, max_backlog)
        for _, payload in items:
            self.journal.message(engine, payload)
        return ids

    async def schedule(
        self,
        engine: str,
        tier: Priority,
        payload: bytes,
        *,
        eta_ms: int | None = None,
        delay_ms: int | None = None,
    ) -> int:
        due = await super().schedule(engine, tier, payload, eta_ms=eta_ms, delay_ms=delay_ms)
        self.journal.message(engine, payload)
        return due

    async def publish(self, targets: Sequence[tuple[str, Priority]], payload: bytes) -> int:
        version = await super().publish(targets, payload)
        self.journal.event(decode({ENVELOPE_FIELD: payload}), [e for e, _ in targets])
        return version

    async def finish(
        self, engine: str, consumer: str, records: Sequence[Finish]
    ) -> tuple[list[str], list[str]]:
        taken, gone = await super().finish(engine, consumer, records)
        refused = set(taken) | set(gone)
        for record in records:
            if record.entry_id in refused:
                continue
            for action in record.actions:
                if isinstance(action, Publish):  # a callback event
                    self.journal.event(decode({ENVELOPE_FIELD: action.payload}), [action.engine])
        return taken, gone
