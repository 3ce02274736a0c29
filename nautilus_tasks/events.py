"""Publishing events: the subscription registry, cached and refreshed by its version."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from .broker.base import Broker
from .message import Envelope, Kind, encode, new_id, now_ms
from .priority import Priority
from .topics import TopicMatcher, check_topic

log = logging.getLogger("nautilus_tasks.events")


class Publisher:
    """Publishes events to every subscribed engine's inbox.

    The registry (patterns -> engines) is cached in a compiled matcher. Each publish
    reads the registry's version in the same pipelined round trip as its XADDs; when
    the version moved, the matcher is reloaded and engines that the stale view missed
    get their copy at once. Steady state: one round trip per publish.
    """

    def __init__(self, broker: Broker, source: str | None = None) -> None:
        self.broker = broker
        self.source = source
        self.matcher: TopicMatcher | None = None
        self.version = -1
        self.unmatched = 0
        self._lock = asyncio.Lock()

    async def refresh(self) -> TopicMatcher:
        """Reload the registry (one round trip)."""
        async with self._lock:
            version, subs = await self.broker.subscriptions()
            self.matcher, self.version = TopicMatcher(subs), version
            return self.matcher

    async def targets(self, topic: str) -> frozenset[str]:
        """Engines subscribed to ``topic``, from the cached registry."""
        matcher = self.matcher or await self.refresh()
        return matcher.match(topic)

    def envelope(self, topic: str, payload: Any, priority: Priority, **extra: Any) -> Envelope:
        return Envelope(
            id=new_id(), kind=Kind.EVENT, name=check_topic(topic), priority=priority.label,
            body=payload, enqueued_at=now_ms(), source=self.source, **extra,
        )  # fmt: skip

    async def publish(
        self, topic: str, payload: Any, priority: Priority = Priority.NORMAL, **extra: Any
    ) -> tuple[str, frozenset[str]]:
        """Publish; returns the event id and the engines it was delivered to."""
        envelope = self.envelope(topic, payload, priority, **extra)
        raw = encode(envelope)
        sent = await self.targets(topic)
        version = await self.broker.publish([(e, priority) for e in sorted(sent)], raw)
        if version != self.version:
            missed = (await self.refresh()).match(topic) - sent
            if missed:
                await self.broker.publish([(e, priority) for e in sorted(missed)], raw)
                sent |= missed
        if not sent:
            self.unmatched += 1
            log.debug("event %s on %r matched no subscriber", envelope.id, topic)
        return envelope.id, sent
