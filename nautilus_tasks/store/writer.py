"""The worker's audit writer: note events in bounded memory, write them in batches.

``event`` and ``result`` run on the worker's hot path: ``event`` extends one flat list with
the event's values as they are (one C call, no object kept that the garbage collector
tracks, no conversion) and returns; a full buffer drops the event and counts it in
``audit_dropped``. The writer cuts the flat list into columns by slicing and converts the
times in bulk. The background task ``run`` takes batches and writes them with COPY
(events) and a pipelined upsert (durable results), in one transaction. A broken, slow or unreachable
PostgreSQL only delays the writer: it drops the connection, reconnects with jittered
exponential backoff and keeps the batch it was writing; task execution never waits for it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from typing import Any

from ..lifecycle import AuditSink, Event
from ..message import Envelope, dumps
from .config import StoreConfig
from .connection import connect, transient
from .schema import AUDIT_COLUMNS, quoted

log = logging.getLogger("nautilus_tasks.store")

ERROR_LIMIT = 2000
PG_EPOCH_US = 946_684_800 * 1_000_000
"""2000-01-01 UTC, PostgreSQL's epoch, in Unix microseconds."""
PG_EPOCH_MS = PG_EPOCH_US // 1000
PG_EPOCH_S = float(PG_EPOCH_US // 1_000_000)
WIDTH = len(AUDIT_COLUMNS)
"""Values per event in the flat buffer (AUDIT_COLUMNS order; event_at as epoch seconds,
enqueued_at as epoch milliseconds)."""
_AT, _ENQUEUED = AUDIT_COLUMNS.index("event_at"), AUDIT_COLUMNS.index("enqueued_at")

Columns = list[list[Any]]
"""A batch, one list per AUDIT_COLUMNS column, times as microseconds since PostgreSQL's
epoch (the binary form of timestamptz, which the writer's connection sends as int8)."""


def columns(flat: list[Any]) -> Columns:
    """Noted events (flat, WIDTH values each) as columns ready for COPY: slices, then the
    two times converted in one pass each."""
    cols = [flat[k::WIDTH] for k in range(WIDTH)]
    cols[_AT] = [int((t - PG_EPOCH_S) * 1_000_000) for t in cols[_AT]]  # _pg_time, inlined
    cols[_ENQUEUED] = [None if ms is None else (ms - PG_EPOCH_MS) * 1000 for ms in cols[_ENQUEUED]]
    return cols


def _pg_time(seconds: float) -> int:
    """Epoch seconds as timestamptz's binary form: microseconds since PostgreSQL's epoch."""
    return int((seconds - PG_EPOCH_S) * 1_000_000)


def _text(error: BaseException) -> str:
    """An error message as PostgreSQL text takes it (no NUL), cut to ERROR_LIMIT."""
    return str(error)[:ERROR_LIMIT].replace("\x00", "\\0")


async def _connect(config: StoreConfig) -> Any:
    """A writer connection. timestamptz goes as its binary form, an int8 of microseconds
    since 2000 (encoded by asyncpg's C codec: no datetime, no Python call per value).
    ``synchronous_commit = off``: a commit does not wait for its WAL flush (an audit
    trail may lose its last few hundred milliseconds if PostgreSQL itself crashes)."""
    conn = await connect(config.dsn, config.write_timeout, statement_cache_size=100)
    await conn.set_builtin_type_codec(
        "timestamptz", schema="pg_catalog", codec_name="int8", format="binary"
    )
    if not config.synchronous_commit:
        await conn.execute("SET synchronous_commit = off")
    return conn


class AuditWriter(AuditSink):
    """Buffers lifecycle events and durable results of one worker; writes them to
    PostgreSQL from ``run``. Counts into ``counts`` (the worker's stats): ``audit_written``,
    ``audit_dropped``, ``results_written``, ``audit_write_errors``."""

    def __init__(self, config: StoreConfig, counts: Counter[str] | None = None) -> None:
        self.config = config
        self.counts: Counter[str] = Counter() if counts is None else counts
        self._flat: list[Any] = []
        """Noted events, WIDTH values each, in AUDIT_COLUMNS order."""
        self._results: deque[tuple[Any, ...]] = deque()
        self._batch: tuple[Columns, list[tuple[Any, ...]]] | None = None
        """The batch being written; kept across a failed try."""
        self._conn: Any = None
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.failures = 0
        """Consecutive failed writes (0 when the last write succeeded)."""
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        """How ``run`` pauses between failed writes (replaceable, for tests)."""
        self._limit = config.buffer_size
        self._batch_size = config.batch_size
        self._cap = config.buffer_size * WIDTH
        self._full = config.batch_size * WIDTH

    @property
    def pending(self) -> int:
        """Events and results noted and not written yet."""
        held = self._batch
        return (
            len(self._flat) // WIDTH + len(self._results)
            + (len(held[0][0]) + len(held[1]) if held else 0)
        )  # fmt: skip

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
        flat = self._flat
        if len(flat) >= self._cap:
            self.counts["audit_dropped"] += 1
            return
        if error is None:
            flat += (
                event, envelope.id, engine, envelope.name, envelope.priority, envelope.attempt,
                worker, envelope.enqueued_at, time.time(), duration_ms, None, None, reason,
            )  # fmt: skip
        else:
            flat += (
                event, envelope.id, engine, envelope.name, envelope.priority, envelope.attempt,
                worker, envelope.enqueued_at, time.time(), duration_ms, type(error).__name__,
                _text(error), reason,
            )  # fmt: skip
        if len(flat) >= self._full:
            self._wake.set()

    def result(self, engine: str, envelope: Envelope, body: dict[str, Any]) -> None:
        if len(self._results) >= self._limit:
            self.counts["audit_dropped"] += 1
            return
        self._results.append((engine, envelope.id, envelope.name, body, time.time()))

    async def run(self) -> None:
        """Write batches until cancelled (after ``flush`` on a graceful stop): every
        ``flush_interval``, or at once when a batch is full or a flush asks."""
        try:
            while True:
                if len(self._flat) < self._full and self._batch is None:
                    try:
                        async with asyncio.timeout(self.config.flush_interval):
                            await self._wake.wait()
                    except TimeoutError:
                        pass
                self._wake.clear()
                if self.pending and not await self.write_once():
                    await self.sleep(self._backoff())
                if not self.pending:
                    self._idle.set()
        finally:
            self.terminate()

    def _take(self) -> tuple[Columns, list[tuple[Any, ...]]]:
        if self._batch is None:
            size = self._batch_size
            flat = self._flat
            if len(flat) <= self._full:  # all of it: swap the list, copy nothing
                self._flat = []
                events = columns(flat)
            else:
                events = columns(flat[: self._full])
                del flat[: self._full]
            results = [self._results.popleft() for _ in range(min(size, len(self._results)))]
            self._batch = (events, results)
        return self._batch

    async def write_once(self) -> bool:
        """Write one batch (the held one first). False when it must be tried again later."""
        events, results = self._take()
        size = len(events[0]) + len(results)
        try:
            async with asyncio.timeout(self.config.write_timeout):
                if self._conn is None:
                    self._conn = await _connect(self.config)
                await self._write(events, results)
        except Exception as exc:
            self.terminate()  # a timed-out or broken connection is never reused
            return self._failed(exc, size)
        self._batch = None
        self.counts["audit_written"] += len(events[0])
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

    async def _write(self, events: Columns, results: list[tuple[Any, ...]]) -> None:
        schema = self.config.schema_name
        async with self._conn.transaction():
            if events[0]:
                await self._conn.copy_records_to_table(
                    "audit", records=zip(*events, strict=True), columns=AUDIT_COLUMNS,
                    schema_name=schema,
                )  # fmt: skip
            if results:
                await self._conn.executemany(
                    f"INSERT INTO {quoted(schema)}.results AS r"
                    " (engine, message_id, task, ok, body, finished_at)"
                    " VALUES ($1, $2, $3, $4, $5::jsonb, $6) ON CONFLICT (engine, message_id)"
                    " DO UPDATE SET task = excluded.task, ok = excluded.ok,"
                    " body = excluded.body, finished_at = excluded.finished_at",
                    [(e, m, t, bool(b.get("ok")), dumps(b).decode(), _pg_time(at))
                     for e, m, t, b, at in results],
                )  # fmt: skip

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
