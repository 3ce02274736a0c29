"""The lifecycle seam: what a worker reports about each message, to whoever listens.

A worker calls an ``AuditSink`` at each step of a message (``received``, ``started``,
``succeeded``...). The calls sit on the hot path, so a sink must only note the event
(append a tuple to a bounded buffer) and return: no await, no I/O. Without a sink (the
default) the worker skips the calls. The PostgreSQL audit (``nautilus_tasks.store``) is
the sink shipped with the framework.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .message import Envelope


class Event(enum.StrEnum):
    """The lifecycle events of a message, as stored in the ``event`` column."""

    RECEIVED = "received"
    STARTED = "started"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    RETRIED = "retried"
    DEAD_LETTERED = "dead_lettered"
    REPLAYED = "replayed"
    EXPIRED = "expired"


class AuditSink(Protocol):
    """Receives the lifecycle of messages. Every method returns at once, never raises."""

    def event(
        self,
        event: Event,
        engine: str,
        envelope: Envelope,
        worker: str,
        duration_ms: float | None = None,
        error: BaseException | None = None,
        reason: str | None = None,
    ) -> None:
        """Note one event of ``envelope`` (``duration_ms`` for a finished run)."""

    def result(self, engine: str, envelope: Envelope, body: dict[str, Any]) -> None:
        """Note the outcome of a message that asked for a durable result."""

    async def run(self) -> None:
        """Write what was noted, until cancelled (a background task of the worker)."""

    async def flush(self, limit: float) -> bool:
        """Write what is noted so far, waiting ``limit`` seconds at most; False if it
        could not."""
