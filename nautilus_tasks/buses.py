"""Several buses: named Redis connections, with routes from topic patterns to a bus.

An engine's inbox lives on its home bus (``Engine(name, bus="...")``, default
``"default"``). An event goes to the bus its topic routes to; an engine subscribed to
a pattern that routes to another bus also has an inbox there, and its worker reads
every bus on which it has an inbox.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from .buffer import BufferConfig, SendBuffer
from .config import BusConfig
from .errors import BacklogFull, ConfigurationError
from .events import Publisher
from .message import Envelope, encode
from .priority import Priority
from .requests import ReplyReader
from .topics import check_pattern, compile_pattern

if TYPE_CHECKING:
    from .broker.redis import RedisBroker
    from .broker.redis.autopipe import AutoPipeline
    from .engine import Engine
    from .task import SendOptions

DEFAULT = "default"

T = TypeVar("T")


@dataclass(frozen=True)
class Buses:
    """The buses of a platform and the routes of topics to them.

    >>> Buses({"default": BusConfig.from_url(url1), "marketdata": BusConfig.from_url(url2)},
    ...       routes={"market.#": "marketdata"})
    """

    configs: Mapping[str, BusConfig]
    routes: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if DEFAULT not in self.configs:
            raise ConfigurationError(f"buses need a {DEFAULT!r} bus, got {sorted(self.configs)}")
        for pattern, bus in self.routes.items():
            check_pattern(pattern)
            if bus not in self.configs:
                raise ConfigurationError(f"route {pattern!r} names an unknown bus {bus!r}")

    def for_topic(self, topic_or_pattern: str) -> str:
        """The bus a topic (or a subscription pattern) routes to: the first matching route."""
        for pattern, bus in self.routes.items():
            if compile_pattern(pattern).match("." + topic_or_pattern):
                return bus
        return DEFAULT

    def for_engine(self, engine: Engine) -> list[str]:
        """Every bus on which ``engine`` has an inbox: its home bus and its patterns' buses."""
        if engine.bus not in self.configs:
            raise ConfigurationError(f"engine {engine.name!r} lives on unknown bus {engine.bus!r}")
        return sorted({engine.bus, *(self.for_topic(p) for p in engine.patterns)})


class BusLink:
    """One connected bus of a client: its broker, send buffer, reply reader, publisher."""

    def __init__(
        self,
        name: str,
        broker: RedisBroker,
        client_id: str,
        source: str | None,
        buffering: BufferConfig | None,
    ) -> None:
        self.name = name
        self.broker = broker
        self.buffer = SendBuffer(broker, buffering)
        self.replies = ReplyReader(broker, client_id)
        self.publisher = Publisher(broker, source)
        self._auto: AutoPipeline | None = None

    @property
    def redis(self) -> AutoPipeline:
        """The auto-pipelined handle on this bus for the user's own keys (made on first use)."""
        if self._auto is None:
            from .broker.redis.autopipe import AutoPipeline

            self._auto = AutoPipeline.of(self.broker, name=self.name)
        return self._auto

    async def store(
        self, engine: str, envelope: Envelope, options: SendOptions, max_backlog: int | None
    ) -> None:
        """Store an envelope: in its tier stream, or the delayed set for countdown/eta.

        With ``max_backlog``, a full inbox raises BacklogFull, after waiting up to
        ``options.backlog_wait`` seconds for room when that is given.
        """
        broker = self.broker
        payload = encode(envelope, broker.config.max_message_bytes)
        eta_ms = options.eta_ms()
        if options.countdown is not None or eta_ms is not None:
            delay_ms = None if options.countdown is None else int(options.countdown * 1000)
            await broker.schedule(engine, envelope.tier, payload, eta_ms=eta_ms, delay_ms=delay_ms)
        elif max_backlog is not None:
            await enqueue_bounded(broker, engine, envelope.tier, payload, max_backlog, options)
        elif self.buffer.config.enabled:
            await self.buffer.put(engine, envelope.tier, payload)
        else:
            await broker.enqueue(engine, envelope.tier, payload)

    async def close(self) -> None:
        try:
            if self._auto is not None:
                await self._auto.aclose()
            await self.buffer.flush()
        finally:
            await self.replies.close()
            await self.broker.close()


async def enqueue_bounded(
    broker: RedisBroker,
    engine: str,
    tier: Priority,
    payload: bytes,
    max_backlog: int,
    options: SendOptions,
) -> None:
    """Enqueue into an inbox capped at ``max_backlog`` entries; a full inbox raises
    BacklogFull, after waiting up to ``options.backlog_wait`` seconds for room."""
    await _waiting(
        lambda: broker.enqueue_bounded(engine, tier, payload, max_backlog), options.backlog_wait
    )


async def enqueue_many_bounded(
    broker: RedisBroker,
    engine: str,
    items: Sequence[tuple[Priority, bytes]],
    max_backlog: int,
    backlog_wait: float | None,
) -> list[str]:
    """Enqueue a batch into an inbox capped at ``max_backlog``, all or nothing: BacklogFull
    unless each tier stream has room for its whole part of the batch, after waiting up to
    ``backlog_wait`` seconds for that room. A batch with more messages for one tier than
    ``max_backlog`` can never fit: it raises at once, without waiting."""
    for tier in {t for t, _ in items}:
        count = sum(1 for t, _ in items if t == tier)
        if count > max_backlog:
            raise BacklogFull(
                f"{count} messages for engine {engine!r} {tier.label} inbox can never fit its"
                f" max_backlog of {max_backlog}; none was stored"
            )
    return await _waiting(
        lambda: broker.enqueue_many_bounded(engine, items, max_backlog), backlog_wait
    )


async def _waiting(call: Callable[[], Awaitable[T]], wait: float | None) -> T:
    """``call()``, tried again while it raises BacklogFull, up to ``wait`` seconds."""
    deadline = time.monotonic() + (wait or 0.0)
    pause = 0.01
    while True:
        try:
            return await call()
        except BacklogFull:
            if time.monotonic() + pause > deadline:
                raise
        await asyncio.sleep(pause)  # room appears as workers drain; poll with backoff
        pause = min(0.5, pause * 2)
