"""The worker's audit writer: note events in bounded memory, write them in batches.

``event`` and ``result`` run on the worker's hot path: they append a tuple to a bounded
deque and return (a full buffer drops the event and counts it in ``audit_dropped``). The
background task ``run`` takes batches and writes them with COPY (events) and one
multi-row upsert (durable results), in one transaction. A broken, slow or unreachable
PostgreSQL only delays the writer: it drops the connection, reconnects with jittered
exponential backoff and keeps the batch it was writing; task execution never waits for it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter, deque
from datetime import UTC, datetime
from typing import Any

from ..lifecycle import AuditSink, Event
from ..message import Envelope, dumps, now_ms
from .config import StoreConfig
from .connection import connect, transient
from .schema import AUDIT_COLUMNS, quoted

log = logging.getLogger("nautilus_tasks.store")

ERROR_LIMIT = 2000

Record = tuple[Any, ...]
"""A noted event: the AUDIT_COLUMNS values, times as epoch milliseconds."""


def _when(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


class AuditWriter(AuditSink):
    """Buffers lifecycle events and durable results of one worker; writes them to
    PostgreSQL from ``run``. Counts into ``counts`` (the worker's stats): ``audit_written``,
    ``audit_dropped``, ``results_written``, ``audit_write_errors``."""

    def __init__(self, config: StoreConfig, counts: Counter[str] | None = None) -> None:
        self.config = config
        self.counts: Counter[str] = Counter() if counts is None else counts
        self._events: deque[Record] = deque()
        self._results: deque[Record] = deque()
        self._batch: tuple[list[Record], list[Record]] | None = None
        """The batch being written; kept across a failed try."""
        self._conn: Any = None
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.failures = 0
        """Consecutive failed writes (0 when the last write succeeded)."""

    @property
    def pending(self) -> int:
        """Events and results noted and not written yet."""
        held = self._batch
        return len(self._events) + len(self._results) + (len(held[0]) + len(held[1]) if held else 0)

    def _room(self) -> bool:
        if len(self._events) + len(self._results) >= self.config.buffer_size:
            self.counts["audit_dropped"] += 1
            return False
        return True

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
        if not self._room():
            return
        record = (
            event, envelope.id, engine, envelope.name, envelope.priority, envelope.attempt,
            worker, envelope.enqueued_at, now_ms(), duration_ms,
            None if error is None else type(error).__name__,
            None if error is None else str(error)[:ERROR_LIMIT], reason,
        )  # fmt: skip
        self._events.append(record)
        if len(self._events) >= self.config.batch_size:
            self._wake.set()

    def result(self, engine: str, envelope: Envelope, body: dict[str, Any]) -> None:
        if self._room():
            self._results.append((engine, envelope.id, envelope.name, body, now_ms()))

    async def run(self) -> None:
        """Write batches until cancelled (after ``flush`` on a graceful stop): every
        ``flush_interval``, or at once when a batch is full or a flush asks."""
        try:
            while True:
                if len(self._events) < self.config.batch_size and self._batch is None:
                    try:
                        async with asyncio.timeout(self.config.flush_interval):
                            await self._wake.wait()
                    except TimeoutError:
                        pass
                self._wake.clear()
                if self.pending and not await self.write_once():
                    await asyncio.sleep(self._backoff())
                if not self.pending:
                    self._idle.set()
        finally:
            self.terminate()

    def _take(self) -> tuple[list[Record], list[Record]]:
        if self._batch is None:
            size = self.config.batch_size
            events = [self._events.popleft() for _ in range(min(size, len(self._events)))]
            results = [self._results.popleft() for _ in range(min(size, len(self._results)))]
            self._batch = (events, results)
        return self._batch

    async def write_once(self) -> bool:
        """Write one batch (the held one first). False when it must be tried again later."""
        events, results = self._take()
        try:
            async with asyncio.timeout(self.config.write_timeout):
                if self._conn is None:
                    self._conn = await connect(self.config.dsn, self.config.write_timeout)
                await self._write(events, results)
        except Exception as exc:
            self.terminate()  # a timed-out or broken connection is never reused
            return self._failed(exc, len(events) + len(results))
        self._batch = None
        self.counts["audit_written"] += len(events)
        self.counts["results_written"] += len(results)
        if self.failures:
            log.info("audit writing resumed after %d failed tries", self.failures)
        self.failures = 0
        return True

    def _failed(self, exc: Exception, size: int) -> bool:
        self.counts["audit_write_errors"] += 1
        self.failures += 1
        if transient(exc):
            log.warning(
                "audit: cannot write %d rows to PostgreSQL (%s: %s); retrying in the background",
                size, type(exc).__name__, exc,
            )  # fmt: skip
            return False
        # the SQL itself failed (schema not migrated, bad data): this batch will never go in
        self._batch = None
        self.counts["audit_dropped"] += size
        log.error(
            "audit: PostgreSQL refused %d rows (%s: %s); they are dropped. Is the schema"
            " migrated (nautilus-tasks db migrate)?",
            size, type(exc).__name__, exc,
        )  # fmt: skip
        return False

    def _backoff(self) -> float:
        return random.uniform(0.5, 1.0) * min(
            self.config.backoff_max, 0.1 * 2.0 ** min(self.failures, 30)
        )

    async def _write(self, events: list[Record], results: list[Record]) -> None:
        schema = self.config.schema_name
        rows = [
            (*r[:7], _when(r[7]), _when(r[8]), *r[9:])  # epoch ms -> timestamptz
            for r in events
        ]
        async with self._conn.transaction():
            if rows:
                await self._conn.copy_records_to_table(
                    "audit", records=rows, columns=AUDIT_COLUMNS, schema_name=schema
                )
            if results:
                await self._conn.executemany(
                    f"INSERT INTO {quoted(schema)}.results AS r"
                    " (engine, message_id, task, ok, body, finished_at)"
                    " VALUES ($1, $2, $3, $4, $5::jsonb, $6) ON CONFLICT (engine, message_id)"
                    " DO UPDATE SET task = excluded.task, ok = excluded.ok,"
                    " body = excluded.body, finished_at = excluded.finished_at",
                    [
                        (e, m, t, bool(b.get("ok")), dumps(b).decode(), _when(at))
                        for e, m, t, b, at in results
                    ],
                )

    async def flush(self, limit: float) -> bool:
        """Wait until everything noted is written, at most ``limit`` seconds (``run`` must
        be running). False, with the count logged, if some could not be written."""
        if self.pending == 0:
            return True
        self._wake.set()
        try:
            async with asyncio.timeout(limit):
                while self.pending:
                    self._idle.clear()
                    self._wake.set()
                    await self._idle.wait()
        except TimeoutError:
            log.error(
                "audit: %d events and results not written to PostgreSQL within %.1fs of the"
                " stop; they are lost",
                self.pending, limit,
            )  # fmt: skip
            return False
        return True

    def terminate(self) -> None:
        """Drop the connection at once (the buffer stays); the next write reconnects."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()
