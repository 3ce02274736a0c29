"""One message: decode, validate, call, then ack or dead-letter."""

from __future__ import annotations

import asyncio
import functools
import logging
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..broker.base import Broker, Delivery
from ..engine import Engine
from ..errors import BusError, InvalidArguments, MalformedMessage
from ..message import Envelope, Kind, decode, now_ms
from ..metrics import WorkerStats
from ..task import Task
from .acks import AckBatcher

log = logging.getLogger("nautilus_tasks.worker")

TRACEBACK_LIMIT = 4000


class Executor:
    """Runs deliveries of one engine. Shared by the pool of consumer coroutines."""

    def __init__(
        self,
        engine: Engine,
        broker: Broker,
        consumer: str,
        acks: AckBatcher,
        stats: WorkerStats,
        threads: ThreadPoolExecutor,
    ) -> None:
        self.engine = engine
        self.broker = broker
        self.consumer = consumer
        self.acks = acks
        self.stats = stats
        self.threads = threads

    async def process(self, delivery: Delivery) -> None:
        """Handle one delivery completely. Never raises except on cancellation."""
        try:
            envelope = decode(delivery.fields)
        except MalformedMessage as exc:
            log.error("malformed entry %s in %s: %s", delivery.entry_id, self.engine.name, exc)
            await self.dead_letter(delivery, "malformed", exc)
            return
        if envelope.kind is not Kind.TASK:
            exc2 = MalformedMessage(f"a {envelope.kind.value} message in a task inbox")
            await self.dead_letter(delivery, "malformed", exc2, envelope)
            return
        task = self.engine.tasks.get(envelope.name)
        if task is None:
            log.error(
                "unknown task %r in %s (message %s)", envelope.name, self.engine.name, envelope.id
            )
            exc3 = LookupError(f"engine {self.engine.name!r} has no task {envelope.name!r}")
            await self.dead_letter(delivery, "unknown_task", exc3, envelope)
            return
        await self._run(task, delivery, envelope)

    async def _run(self, task: Task[Any, Any], delivery: Delivery, envelope: Envelope) -> None:
        started = now_ms()
        expires = envelope.expires_at()
        if expires is not None and started > expires:
            log.warning(
                "message %s for %s expired before it started", envelope.id, task.qualified_name
            )
            await self.dead_letter(delivery, "expired", None, envelope)
            return
        body = {} if envelope.body is None else envelope.body
        try:
            if not isinstance(body, dict):
                raise InvalidArguments(task.qualified_name, "body must be a JSON object")
            kwargs = task.validator.validate(body.get("args", []), body.get("kwargs", {}))
        except InvalidArguments as exc:
            log.error("message %s rejected: %s", envelope.id, exc)
            await self.dead_letter(delivery, "invalid", exc, envelope)
            return
        try:
            await self._call(task, kwargs)
        except asyncio.CancelledError:
            raise
        except (Exception, SystemExit, KeyboardInterrupt) as exc:
            log.exception("task %s failed (message %s)", task.qualified_name, envelope.id)
            self.stats.counts["failed"] += 1
            await self.dead_letter(delivery, "failed", exc, envelope)
            return
        self.acks.add(delivery.tier, delivery.entry_id)
        self.stats.counts["succeeded"] += 1
        if envelope.enqueued_at is not None:
            self.stats.latency.observe(max(0, now_ms() - envelope.enqueued_at))

    async def _call(self, task: Task[Any, Any], kwargs: dict[str, Any]) -> Any:
        timeout = task.options.timeout
        if task.is_async:
            async with asyncio.timeout(timeout):
                return await task.fn(**kwargs)
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self.threads, functools.partial(task.fn, **kwargs))
        # A thread cannot be killed: past the timeout the caller stops waiting and the
        # run counts as failed, while the thread finishes in the background.
        return await asyncio.wait_for(future, timeout)

    async def dead_letter(
        self,
        delivery: Delivery,
        reason: str,
        exc: BaseException | None,
        envelope: Envelope | None = None,
    ) -> None:
        """Move a delivery to the engine's dead-letter stream with why, in one script."""
        meta = {
            "reason": reason,
            "error_type": "" if exc is None else type(exc).__name__,
            "error": "" if exc is None else str(exc)[:2000],
            "traceback": _traceback(exc),
            "attempts": str(1 if envelope is None else envelope.attempt + 1),
            "dead_at": str(now_ms()),
            "origin": delivery.tier.label,
            "origin_id": delivery.entry_id,
            "consumer": self.consumer,
            "message_id": "" if envelope is None else envelope.id,
            "task": "" if envelope is None else envelope.name,
        }
        self.stats.counts[f"dead_{reason}"] += 1
        try:
            moved = await self.broker.dead_letter(self.engine.name, self.consumer, delivery, meta)
        except BusError as exc2:
            # The entry stays pending, owned by this consumer: not lost, not acked.
            log.error("could not dead-letter %s (%s): %s", delivery.entry_id, reason, exc2)
            return
        if not moved:
            self.stats.counts["ownership_lost"] += 1
            log.warning(
                "dead-letter of %s refused: another consumer owns it now", delivery.entry_id
            )


def _traceback(exc: BaseException | None) -> str:
    if exc is None or exc.__traceback__ is None:
        return ""
    text = "".join(traceback.format_exception(exc))
    return text[-TRACEBACK_LIMIT:]
