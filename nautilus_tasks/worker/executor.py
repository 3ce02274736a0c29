"""One message: decode, validate, call, then end it: ack, retry or dead-letter, with its
reply, stored result and callback written in the same script as the ack."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..broker.base import Broker, DeadLetter, Delivery
from ..context import MessageContext, reset_current, set_current
from ..engine import Engine
from ..errors import BusError, InvalidArguments, MalformedMessage, Retry
from ..events import Publisher
from ..lifecycle import AuditSink, Event
from ..message import Envelope, Kind, decode, encode, now_ms
from ..metrics import WorkerStats
from ..task import Task
from ..topics import matches
from .acks import AckBatcher
from .outcomes import failure, format_traceback, outcome_actions, success

log = logging.getLogger("nautilus_tasks.worker")


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
        done: Callable[[str], None],
        publisher: Publisher | None = None,
        audit: AuditSink | None = None,
    ) -> None:
        self.engine = engine
        self.broker = broker
        self.consumer = consumer
        self.acks = acks
        self.stats = stats
        self.threads = threads
        self.done = done
        """Called once an entry has left this consumer by a retry: its lease ends and its
        place in the worker's capacity frees up (acks report through the AckBatcher)."""
        self.publisher = publisher
        self.audit = audit
        """Told each lifecycle event (None: no audit)."""
        self.in_threads: set[str] = set()
        """Entries whose sync handler still runs in a thread (threads cannot be cancelled):
        never handed back while it runs, so it cannot run twice at once."""

    async def process(self, delivery: Delivery) -> None:
        """Handle one delivery completely. Never raises except on cancellation."""
        try:
            envelope = decode(delivery.fields)
        except MalformedMessage as exc:
            log.error("malformed entry %s in %s: %s", delivery.entry_id, self.engine.name, exc)
            await self.dead_letter(delivery, "malformed", exc)
            return
        if self.audit is not None:
            self.audit.event(Event.RECEIVED, self.engine.name, envelope, self.consumer)
        if envelope.kind is Kind.EVENT:
            await self._event(delivery, envelope)
            return
        if envelope.kind is not Kind.TASK:
            wrong = MalformedMessage(f"a {envelope.kind.value} message in an engine inbox")
            await self.dead_letter(delivery, "malformed", wrong, envelope)
            return
        task = self.engine.tasks.get(envelope.name)
        if task is None:
            log.error(
                "unknown task %r in %s (message %s)", envelope.name, self.engine.name, envelope.id
            )
            missing = LookupError(f"engine {self.engine.name!r} has no task {envelope.name!r}")
            await self.dead_letter(delivery, "unknown_task", missing, envelope)
            return
        if self._expired(envelope):
            await self._expire(task, delivery, envelope)
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
        await self._run([(task, kwargs)], delivery, envelope)

    async def _event(self, delivery: Delivery, envelope: Envelope) -> None:
        """Run every handler of this engine whose pattern matches the event's topic."""
        handlers = [
            h for h in self.engine.handlers if h.pattern and matches(h.pattern, envelope.name)
        ]
        if not handlers:  # the subscription changed after the publish
            log.debug("event %s on %r: no handler here any more", envelope.id, envelope.name)
            self.stats.counts["event_unhandled"] += 1
            self.acks.add(delivery.tier, delivery.entry_id)
            return
        if self._expired(envelope):
            await self._expire(handlers[0], delivery, envelope)
            return
        calls = []
        for handler in handlers:
            extra = {"topic": envelope.name} if "topic" in handler.validator.names else {}
            try:
                calls.append((handler, handler.validator.validate([envelope.body], extra)))
            except InvalidArguments as exc:
                log.error("event %s rejected: %s", envelope.id, exc)
                await self.dead_letter(delivery, "invalid", exc, envelope)
                return
        await self._run(calls, delivery, envelope)

    @staticmethod
    def _expired(envelope: Envelope) -> bool:
        expires = envelope.expires_at()
        return expires is not None and now_ms() > expires

    async def _expire(self, task: Task[Any, Any], delivery: Delivery, envelope: Envelope) -> None:
        log.warning("message %s for %s expired before it started", envelope.id, task.qualified_name)
        if self.audit is not None:
            self.audit.event(Event.EXPIRED, self.engine.name, envelope, self.consumer)
        if task.options.on_expire == "drop":
            self.stats.counts["expired_dropped"] += 1
            self.acks.add(delivery.tier, delivery.entry_id)
        else:
            await self.dead_letter(delivery, "expired", None, envelope)

    async def _run(
        self,
        calls: list[tuple[Task[Any, Any], dict[str, Any]]],
        delivery: Delivery,
        envelope: Envelope,
    ) -> None:
        context = MessageContext(
            envelope, self.engine.name, delivery.entry_id, delivery.tier, delivery.deliveries
        )
        token = set_current(context)
        task = calls[0][0]
        audit = self.audit
        began = 0.0
        if audit is not None:
            audit.event(Event.STARTED, self.engine.name, envelope, self.consumer)
            began = time.perf_counter()
        wanted = _wants_outcome(envelope)
        try:
            for task, kwargs in calls:
                result = await self._call(task, kwargs, delivery.entry_id)
            body = success(result, wanted=wanted)
        except asyncio.CancelledError:
            raise
        except (Exception, SystemExit, KeyboardInterrupt) as exc:
            self.stats.counts["failed"] += 1
            if audit is not None:
                took = (time.perf_counter() - began) * 1000
                audit.event(Event.FAILED, self.engine.name, envelope, self.consumer, took, exc)
            await self._failed(task, delivery, envelope, exc)
            return
        finally:
            reset_current(token)
        if audit is not None:
            took = (time.perf_counter() - began) * 1000
            audit.event(Event.SUCCEEDED, self.engine.name, envelope, self.consumer, took)
            if envelope.durable_result:
                audit.result(self.engine.name, envelope, body)
        actions = []
        if wanted:
            actions = await outcome_actions(self.engine.name, envelope, body, self.publisher)
        self.acks.add(delivery.tier, delivery.entry_id, *actions)
        self.stats.counts["succeeded"] += 1
        if envelope.enqueued_at is not None:
            self.stats.latency.observe(max(0, now_ms() - envelope.enqueued_at))

    async def _call(self, task: Task[Any, Any], kwargs: dict[str, Any], entry_id: str) -> Any:
        timeout = task.options.timeout
        if task.is_async:
            if timeout is None:  # no timeout context to enter and leave per message
                return await task.fn(**kwargs)
            async with asyncio.timeout(timeout):
                return await task.fn(**kwargs)
        call = functools.partial(contextvars.copy_context().run, task.fn, **kwargs)
        self.in_threads.add(entry_id)
        future = self.threads.submit(call)
        future.add_done_callback(lambda _: self.in_threads.discard(entry_id))
        # A thread cannot be killed: past the timeout the caller stops waiting and the
        # run counts as failed (and is retried by policy) while the thread finishes.
        return await asyncio.wait_for(asyncio.wrap_future(future), timeout)

    async def _failed(
        self, task: Task[Any, Any], delivery: Delivery, envelope: Envelope, exc: BaseException
    ) -> None:
        """Retry with backoff while the policy allows, else dead-letter as 'failed'."""
        options, attempt = task.options, envelope.attempt
        if isinstance(exc, Retry):
            again = attempt < options.retries
            delay = options.retry_delay(attempt) if exc.delay is None else exc.delay
        else:
            again = options.should_retry(exc, attempt)
            delay = options.retry_delay(attempt)
        if not again:
            log.error(
                "task %s failed for good after %d runs (message %s): %s: %s",
                task.qualified_name, attempt + 1, envelope.id, type(exc).__name__, exc,
                exc_info=exc,
            )  # fmt: skip
            await self.dead_letter(delivery, "failed", exc, envelope)
            return
        log.warning(
            "task %s failed (run %d of %d, message %s): %s: %s; retrying in %.2fs",
            task.qualified_name, attempt + 1, options.retries + 1, envelope.id,
            type(exc).__name__, exc, delay, exc_info=not isinstance(exc, Retry),
        )  # fmt: skip
        await self._retry(delivery, envelope, delay)

    async def _retry(self, delivery: Delivery, envelope: Envelope, delay: float) -> None:
        """Ack and schedule the next attempt in one script; same message id, attempt + 1."""
        payload = encode(envelope.model_copy(update={"attempt": envelope.attempt + 1}))
        try:
            moved = await self.broker.retry(
                self.engine.name, self.consumer, delivery, payload, int(delay * 1000)
            )
        except BusError as exc:
            # Still pending here: reclaimed after the lease, it runs again. Nothing is lost.
            log.error("could not schedule the retry of %s: %s", delivery.entry_id, exc)
            return
        finally:
            self.done(delivery.entry_id)
        if moved:
            self.stats.counts["retried"] += 1
            if self.audit is not None:
                self.audit.event(Event.RETRIED, self.engine.name, envelope, self.consumer)
        else:
            self.stats.counts["ownership_lost"] += 1
            log.warning("retry of %s refused: another consumer owns it now", delivery.entry_id)

    async def dead_letter(
        self,
        delivery: Delivery,
        reason: str,
        exc: BaseException | None,
        envelope: Envelope | None = None,
    ) -> None:
        """Dead-letter with why; a requester gets the failure as its reply, a callback
        topic gets it as an event: all in the script that acks the entry."""
        meta = {
            "reason": reason,
            "error_type": "" if exc is None else type(exc).__name__,
            "error": "" if exc is None else str(exc)[:2000],
            "traceback": format_traceback(exc),
            "attempts": str(1 if envelope is None else envelope.attempt + 1),
            "dead_at": str(now_ms()),
            "origin": delivery.tier.label,
            "origin_id": delivery.entry_id,
            "consumer": self.consumer,
            "message_id": "" if envelope is None else envelope.id,
            "task": "" if envelope is None else envelope.name,
        }
        actions = []
        if envelope is not None:
            failed = exc if exc is not None else TimeoutError(f"message {reason} before it ran")
            if self.audit is not None:
                audit, name = self.audit, self.engine.name
                audit.event(Event.DEAD_LETTERED, name, envelope, self.consumer, None, exc, reason)
                if envelope.durable_result:
                    audit.result(name, envelope, failure(failed))
            actions = await outcome_actions(
                self.engine.name, envelope, failure(failed), self.publisher
            )
        self.acks.add(delivery.tier, delivery.entry_id, DeadLetter(meta), *actions)


def _wants_outcome(envelope: Envelope) -> bool:
    """Whether anyone asked for the result (a reply, a stored result or a callback)."""
    return bool(
        envelope.reply_to or envelope.result_ttl or envelope.callback_topic
        or envelope.durable_result
    )  # fmt: skip
