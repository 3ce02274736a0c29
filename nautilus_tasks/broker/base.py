"""What the runtime needs from a broker. The Redis broker is the implementation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple, Protocol

from ..priority import Priority


class Delivery(NamedTuple):
    """One entry read from an inbox stream and now held by this consumer (a named tuple:
    one is made per message, and a tuple is made three times faster than a frozen
    dataclass)."""

    tier: Priority
    entry_id: str
    fields: dict[bytes, bytes]
    reserved: bool = False
    """Fetched through the anti-starvation share: served ahead of its tier."""
    deliveries: int = 1
    """How many times the entry was delivered (known exactly after a reclaim)."""


@dataclass(frozen=True, slots=True)
class Reclaimed:
    """One XAUTOCLAIM step: what this consumer took over, and what it found."""

    cursor: str
    deliveries: list[Delivery]
    deleted: list[str]
    """Ids pending in the group whose entries were deleted: data lost outside the framework."""
    poisoned: list[str]
    """Ids delivered more than max_deliveries times, now dead-lettered as 'poison'."""


@dataclass(frozen=True, slots=True)
class TierInfo:
    """The state of one tier stream and its consumer group."""

    tier: Priority
    length: int
    pending: int
    consumers: int
    lag: int | None
    oldest_pending_age_ms: int | None


@dataclass(frozen=True, slots=True)
class Reply:
    """Answer a request: XADD to the requester's reply stream, refreshing its TTL."""

    client_id: str
    payload: bytes
    ttl_ms: int


@dataclass(frozen=True, slots=True)
class StoreResult:
    """Keep a task's outcome under its message id for ``ttl_ms``."""

    engine: str
    message_id: str
    payload: bytes
    ttl_ms: int


@dataclass(frozen=True, slots=True)
class Publish:
    """An event (a callback) into another engine's inbox."""

    engine: str
    tier: Priority
    payload: bytes


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Dead-letter the entry with these fields (its own fields are copied as orig:*)."""

    meta: dict[str, str]


Action = Reply | StoreResult | Publish | DeadLetter


class ReadPlan(NamedTuple):
    """A non-blocking priority read: up to ``size`` entries, ``reserve`` of them (high,
    normal, low) for the lower tiers' share first; with ``skip_critical`` the critical
    stream is left to the worker's own blocking read of it (``read_below_critical``)."""

    size: int
    reserve: Sequence[int]
    skip_critical: bool


class Finish(NamedTuple):
    """How one entry ends: its actions, then XACK + XDEL, all or nothing, if still owned
    (a named tuple, as ``Delivery``)."""

    tier: Priority
    entry_id: str
    actions: tuple[Action, ...] = ()


@dataclass(frozen=True, slots=True)
class EngineInfo:
    """What ``inspect`` reports for one engine."""

    engine: str
    tiers: list[TierInfo]
    delayed: int
    dead: int
    stats: dict[str, bytes] = field(default_factory=dict)


TickStatus = Literal["enqueued", "duplicate", "stale", "full"]


@dataclass(frozen=True, slots=True)
class TickResult:
    """What ``enqueue_tick`` did with one tick of a periodic schedule."""

    status: TickStatus
    """``enqueued``; ``duplicate`` (taken by another scheduler); ``stale`` (a later tick
    was taken already); ``full`` (taken, but dropped: the inbox is at its max_backlog)."""
    entry_id: str | None = None


@dataclass(frozen=True, slots=True)
class ScheduleState:
    """What the bus remembers of one periodic schedule."""

    fire_ms: int | None = None
    """Nominal fire time of the latest tick taken (epoch ms)."""
    enqueued_at_ms: int | None = None
    """When the latest enqueue happened, by the server's clock (epoch ms)."""
    message_id: str | None = None
    enqueued: int = 0
    refused: int = 0
    """Attempts refused as duplicate or stale: the other schedulers' share of the ticks."""
    full: int = 0


class Broker(Protocol):
    """The operations of a bus. Every method may raise BusUnavailable or BusError."""

    @property
    def prefix(self) -> str: ...

    @property
    def url(self) -> str: ...

    def stream_names(self, engine: str) -> tuple[str, ...]:
        """The names of ``engine``'s tier streams, critical first (for logs)."""
        ...

    async def close(self) -> None: ...

    async def server_version(self) -> str: ...

    async def ensure_groups(self, engine: str, consumer: str | None = None) -> int: ...

    async def enqueue(self, engine: str, tier: Priority, payload: bytes) -> str: ...

    async def enqueue_many(self, items: Sequence[tuple[str, Priority, bytes]]) -> list[str]: ...

    async def schedule(
        self,
        engine: str,
        tier: Priority,
        payload: bytes,
        *,
        eta_ms: int | None = None,
        delay_ms: int | None = None,
    ) -> int: ...

    async def promote_due(self, engine: str, limit: int = 1000) -> tuple[int, int]: ...

    async def read(
        self,
        engine: str,
        consumer: str,
        count: int,
        reserve: Sequence[int],
        block_ms: int,
    ) -> list[Delivery]: ...

    async def read_below_critical(
        self, engine: str, consumer: str, count: int, reserve: Sequence[int], block_ms: int
    ) -> list[Delivery] | None: ...

    async def read_critical(
        self, engine: str, consumer: str, count: int, block_ms: int
    ) -> list[Delivery]: ...

    async def ack(
        self, engine: str, consumer: str, ids: Mapping[Priority, Sequence[str]]
    ) -> tuple[list[str], list[str]]: ...

    async def ack_and_read(
        self, engine: str, consumer: str, ids: Mapping[Priority, Sequence[str]], read: ReadPlan
    ) -> tuple[list[str], list[str], list[Delivery] | None]: ...

    async def requeue(
        self, engine: str, consumer: str, ids: Mapping[Priority, Sequence[str]]
    ) -> int: ...

    async def retry(
        self, engine: str, consumer: str, delivery: Delivery, payload: bytes, delay_ms: int
    ) -> bool: ...

    async def renew(
        self, engine: str, consumer: str, ids: Mapping[Priority, Sequence[str]]
    ) -> tuple[list[str], list[str]]: ...

    async def reclaim(
        self,
        engine: str,
        consumer: str,
        tier: Priority,
        *,
        cursor: str,
        count: int,
        min_idle_ms: int,
        max_deliveries: int,
        now_ms: int,
    ) -> Reclaimed: ...

    async def enqueue_bounded(
        self, engine: str, tier: Priority, payload: bytes, max_backlog: int
    ) -> str: ...

    async def enqueue_many_bounded(
        self, engine: str, items: Sequence[tuple[Priority, bytes]], max_backlog: int
    ) -> list[str]: ...

    async def trim_dead(self, engine: str, max_len: int | None, max_age_ms: int | None) -> int: ...

    async def config_get(self, name: str) -> str | None: ...

    async def finish(
        self, engine: str, consumer: str, records: Sequence[Finish]
    ) -> tuple[list[str], list[str]]: ...

    async def register_subscriptions(self, engine: str, patterns: Sequence[str]) -> int: ...

    async def subscriptions(self) -> tuple[int, dict[str, list[str]]]: ...

    async def publish(self, targets: Sequence[tuple[str, Priority]], payload: bytes) -> int: ...

    async def read_replies(
        self, client_id: str, after: str, block_ms: int
    ) -> list[tuple[str, dict[bytes, bytes]]]: ...

    async def delete_replies(self, client_id: str, ids: Sequence[str], ttl_ms: int) -> None: ...

    async def get_result(self, engine: str, message_id: str) -> bytes | None: ...

    async def enqueue_tick(
        self,
        engine: str,
        tier: Priority,
        schedule: str,
        fire_ms: int,
        payload: bytes,
        *,
        message_id: str,
        dedup_ms: int,
        max_backlog: int | None = None,
    ) -> TickResult: ...

    async def schedule_states(self, engine: str) -> dict[str, ScheduleState]: ...

    async def owned_pending(self, engine: str, consumer: str) -> dict[Priority, list[str]]: ...

    async def release(self, engine: str, consumer: str) -> bool: ...

    async def heartbeat(self, engine: str, consumer: str, at_ms: int) -> None: ...

    async def write_stats(self, engine: str, consumer: str, data: bytes) -> None: ...

    async def inspect(self, engine: str) -> EngineInfo: ...

    async def engines(self) -> list[str]: ...
