"""Frozen settings. Unknown keys are an error, so a typo never passes silently."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ConfigurationError

DEFAULT_PREFIX = "nt"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Any:
        """Build from a mapping; unknown or invalid keys raise ConfigurationError."""
        try:
            return cls.model_validate(dict(values))
        except ValidationError as exc:
            raise ConfigurationError(f"invalid {cls.__name__}: {exc}") from None


class BusConfig(_Frozen):
    """How to reach one bus (a Redis-compatible server) and name its keys."""

    url: str
    prefix: str = Field(default=DEFAULT_PREFIX, pattern=r"^[A-Za-z0-9_.\-]+$")
    socket_timeout: float = Field(default=10.0, gt=0)
    connect_timeout: float = Field(default=5.0, gt=0)
    max_connections: int = Field(default=64, ge=2)
    max_message_bytes: int = Field(default=1024 * 1024, ge=256)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> BusConfig:
        """A bus at ``url``; ``options`` are the other fields."""
        result: BusConfig = cls.from_mapping({"url": url, **options})
        return result

    @classmethod
    def from_env(cls, url: str | None = None, env: Mapping[str, str] | None = None) -> BusConfig:
        """``NT_REDIS_URL`` (or ``url``, or the embedded server) and ``NT_PREFIX``."""
        from .embedded import resolve_url

        env = os.environ if env is None else env
        prefix = env.get("NT_PREFIX", DEFAULT_PREFIX)
        return cls.from_url(resolve_url(url, env), prefix=prefix)


class DeadRetention(_Frozen):
    """How long an engine keeps its dead letters: the newest ``max_len`` entries, none
    older than ``max_age`` seconds by Redis TIME (None: no limit by that measure)."""

    max_len: int | None = Field(default=100_000, ge=1)
    max_age: float | None = Field(default=7 * 86400.0, gt=0)


class WorkerConfig(_Frozen):
    """Settings of one worker process."""

    concurrency: int = Field(default=100, ge=1, le=10_000)
    prefetch: int | None = Field(default=None, ge=0)
    """Messages fetched beyond ``concurrency``; default: a quarter of it, at least 1."""
    block_ms: int = Field(default=1000, ge=1)
    grace: float = Field(default=30.0, ge=0)
    sync_threads: int = Field(default=8, ge=1)
    low_share: float = Field(default=0.01, ge=0, le=0.25)
    """Share of each fetch reserved for each tier below critical while it has a backlog."""
    lease: float = Field(default=30.0, ge=0.2)
    """Seconds a held entry may go unrenewed before other workers reclaim it."""
    max_deliveries: int = Field(default=5, ge=1)
    """Deliveries after which a reclaimed entry is dead-lettered as 'poison'."""
    dead_max_len: int | None = Field(default=100_000, ge=1)
    dead_max_age: float | None = Field(default=7 * 86400.0, gt=0)
    """Retention of the dead-letter stream, by count and by age (seconds), for an engine
    declared without ``dead_retention``."""

    def retention(self, declared: DeadRetention | None) -> DeadRetention:
        """The engine's declared retention, else this worker's."""
        if declared is not None:
            return declared
        return DeadRetention(max_len=self.dead_max_len, max_age=self.dead_max_age)

    trim_interval: float = Field(default=60.0, gt=0)
    registry_interval: float = Field(default=2.0, gt=0)
    """How often the worker re-reads the event subscriptions (for callback topics)."""
    ack_interval: float = Field(default=0.001, ge=0)
    promote_interval: float = Field(default=0.1, gt=0)
    stats_interval: float = Field(default=1.0, gt=0)

    @model_validator(mode="after")
    def _block_under_timeout(self) -> WorkerConfig:
        if self.block_ms > 5000:
            raise ValueError("block_ms must stay well under the socket timeout (at most 5000)")
        return self

    @property
    def prefetch_count(self) -> int:
        """Messages fetched beyond ``concurrency``."""
        return self.prefetch if self.prefetch is not None else max(1, self.concurrency // 4)

    @property
    def capacity(self) -> int:
        """Messages one worker holds: running plus prefetched (plus ``critical_room``)."""
        return self.concurrency + self.prefetch_count

    @property
    def critical_room(self) -> int:
        """Places beyond ``capacity`` for critical messages only, taken by a blocking read
        of the critical tier kept outstanding while every other place is held: a tenth of
        the capacity, at least 1."""
        return max(1, self.capacity // 10)
