"""The audit writer's buffer: bounded, drops counted, batches, retries a broken write."""

from __future__ import annotations

from collections import Counter
from contextlib import asynccontextmanager
from typing import Any

import pytest

from nautilus_tasks.lifecycle import Event
from nautilus_tasks.message import Envelope
from nautilus_tasks.store import AuditWriter, StoreConfig

pytest.importorskip("asyncpg")


def _envelope(n: int) -> Envelope:
    return Envelope(id=f"m{n}", name="job", enqueued_at=1_700_000_000_000 + n, attempt=n % 2)


class FakeConnection:
    """Records what the writer sends; fails the next ``fail`` writes with ``error``."""

    def __init__(self) -> None:
        self.copies: list[list[tuple[Any, ...]]] = []
        self.upserts: list[list[tuple[Any, ...]]] = []
        self.fail = 0
        self.error: Exception = OSError("link down")
        self.terminated = 0

    @asynccontextmanager
    async def transaction(self) -> Any:
        yield

    async def copy_records_to_table(self, table: str, **kw: Any) -> None:
        if self.fail:
            self.fail -= 1
            raise self.error
        assert table == "audit"
        self.copies.append(list(kw["records"]))  # an iterator: read once per try

    async def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        self.upserts.append(rows)

    def terminate(self) -> None:
        self.terminated += 1


def _writer(**settings: Any) -> tuple[AuditWriter, Counter[str]]:
    counts: Counter[str] = Counter()
    config = StoreConfig(dsn="postgresql://unused", **settings)
    return AuditWriter(config, counts), counts


def test_a_full_buffer_drops_and_counts() -> None:
    writer, counts = _writer(buffer_size=5)
    for n in range(8):
        writer.event(Event.RECEIVED, "eng", _envelope(n), "w1")
    assert writer.pending == 5
    assert counts["audit_dropped"] == 3
    for n in range(6):  # durable results have a buffer of the same size
        writer.result("eng", _envelope(n), {"ok": True, "result": n})
    assert writer.pending == 10
    assert counts["audit_dropped"] == 4


async def test_batches_of_batch_size_in_order() -> None:
    writer, counts = _writer(batch_size=3)
    conn = FakeConnection()
    writer._conn = conn
    for n in range(7):
        writer.event(Event.STARTED, "eng", _envelope(n), "w1", duration_ms=float(n))
    writer.result("eng", _envelope(1), {"ok": True, "result": [1]})
    while writer.pending:
        assert await writer.write_once()
    assert [len(c) for c in conn.copies] == [3, 3, 1]
    rows = [r for c in conn.copies for r in c]
    assert [r[1] for r in rows] == [f"m{n}" for n in range(7)]
    first = rows[0]
    assert first[0] == "started" and first[2:7] == ("eng", "job", "normal", 0, "w1")
    # times go as timestamptz's binary form: microseconds since 2000-01-01 UTC
    assert first[7] == (1_700_000_000_000 - 946_684_800_000) * 1000  # enqueued_at
    assert first[9] == 0.0
    assert conn.upserts == [
        [("eng", "m1", "job", True, '{"ok":true,"result":[1]}', conn.upserts[0][0][5])]
    ]
    assert counts["audit_written"] == 7 and counts["results_written"] == 1


async def test_a_broken_write_keeps_its_batch_and_retries() -> None:
    writer, counts = _writer(batch_size=10)
    conn = FakeConnection()
    conn.fail = 2
    writer._conn = conn
    for n in range(4):
        writer.event(Event.FAILED, "eng", _envelope(n), "w1", 1.0, ValueError(f"bad {n}"))
    assert not await writer.write_once()
    assert writer._conn is None and conn.terminated == 1  # never reused after a failure
    writer._conn = conn
    assert not await writer.write_once()
    writer._conn = conn
    assert await writer.write_once()
    assert len(conn.copies) == 1 and len(conn.copies[0]) == 4
    assert conn.copies[0][3][10:12] == ("ValueError", "bad 3")
    assert counts["audit_write_errors"] == 2 and counts["audit_dropped"] == 0
    assert writer.failures == 0


async def test_a_refused_batch_is_dropped_and_counted() -> None:
    import asyncpg

    writer, counts = _writer(batch_size=10)
    conn = FakeConnection()
    conn.fail = 1
    conn.error = asyncpg.UndefinedTableError("relation does not exist")
    writer._conn = conn
    for n in range(3):
        writer.event(Event.RECEIVED, "eng", _envelope(n), "w1")
    assert not await writer.write_once()
    assert writer.pending == 0
    assert counts["audit_dropped"] == 3


async def test_a_stale_statement_cache_reconnects_and_keeps_the_batch() -> None:
    import asyncpg

    writer, counts = _writer(batch_size=10)
    conn = FakeConnection()
    conn.fail = 1
    conn.error = asyncpg.InvalidCachedStatementError("cached plan must not change result type")
    writer._conn = conn
    for n in range(3):
        writer.event(Event.RECEIVED, "eng", _envelope(n), "w1")
    assert not await writer.write_once()
    assert writer._conn is None and writer.pending == 3  # dropped the connection, kept rows
    writer._conn = conn
    assert await writer.write_once()
    assert len(conn.copies[0]) == 3 and counts["audit_dropped"] == 0


def test_store_config_from_env() -> None:
    assert StoreConfig.from_env({}) is None
    assert StoreConfig.from_env({"NT_POSTGRES_DSN": ""}) is None
    config = StoreConfig.from_env(
        {"NT_POSTGRES_DSN": "postgresql://x/y", "NT_POSTGRES_SCHEMA": "audit_1",
         "NT_AUDIT_BUFFER": "10", "NT_AUDIT_BATCH": "5", "NT_AUDIT_FLUSH_INTERVAL": "0.5"}
    )  # fmt: skip
    assert config is not None
    assert (config.schema_name, config.buffer_size, config.batch_size) == ("audit_1", 10, 5)
    assert config.flush_interval == 0.5
    with pytest.raises(Exception, match="schema name"):
        StoreConfig(dsn="postgresql://x/y", schema_name="Robert'); DROP")


def test_times_as_microseconds_since_postgres_epoch() -> None:
    from nautilus_tasks.store.writer import WIDTH, _pg_time, columns

    assert _pg_time(946_684_800.0) == 0  # PostgreSQL's epoch is zero
    assert _pg_time(1_700_000_000.123456) == 753_315_200_123_456
    assert _pg_time(0.0) == -946_684_800_000_000
    row = ["started", "m1", "eng", "job", "normal", 0, "w1", None, 946_684_801.5, None]
    flat = [*row, None, None, None, *row[:7], 946_684_800_001, 946_684_800.25, 2.5, "E", "e", None]
    assert len(flat) == 2 * WIDTH
    cols = columns(flat)
    assert cols[1] == ["m1", "m1"] and cols[9] == [None, 2.5] and cols[10] == [None, "E"]
    assert cols[7] == [None, 1000]  # enqueued_at, from epoch milliseconds
    assert cols[8] == [1_500_000, 250_000]  # event_at, from epoch seconds


def test_error_text_fits_postgres_text() -> None:
    from nautilus_tasks.store.writer import ERROR_LIMIT, _text

    assert _text(ValueError("a\x00b")) == "a\\0b"  # PostgreSQL text refuses NUL
    assert len(_text(ValueError("x" * 5000))) == ERROR_LIMIT


def test_the_backoff_grows_with_failures_and_is_capped() -> None:
    writer, _ = _writer(backoff_max=2.0)
    ceilings = {1: 0.2, 2: 0.4, 3: 0.8, 4: 1.6, 5: 2.0, 40: 2.0}  # 0.1 * 2**n, capped
    for failures, ceiling in ceilings.items():
        writer.failures = failures
        delays = [writer._backoff() for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays), (failures, min(delays))
        assert len(set(delays)) > 1  # jittered: writers do not retry in step
    writer.failures = 1
    first = max(writer._backoff() for _ in range(50))
    writer.failures = 3
    assert min(writer._backoff() for _ in range(50)) > first  # grows, whatever the jitter


class Enough(BaseException):
    """Ends a writer's run from its pause (a BaseException: the writer catches Exception)."""


class TightLoop(BaseException):
    """A reconnect that came with no pause before it."""


async def test_run_pauses_for_the_backoff_between_failed_connects(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from nautilus_tasks.store import writer as module

    connects: list[int] = []
    delays: list[float] = []

    async def unreachable(config: StoreConfig) -> Any:
        connects.append(1)
        if len(connects) > len(delays) + 1:
            raise TightLoop
        raise OSError("connection refused")

    monkeypatch.setattr(module, "_connect", unreachable)
    writer, counts = _writer(batch_size=1, backoff_max=1.0)

    async def pause(delay: float) -> None:  # records the pause instead of waiting
        assert len(delays) == len(connects) - 1 == counts["audit_write_errors"] - 1
        delays.append(delay)
        if len(delays) == 8:
            raise Enough

    writer.sleep = pause
    writer.event(Event.RECEIVED, "eng", _envelope(1), "w1")
    with pytest.raises(Enough):
        await writer.run()
    assert len(connects) == len(delays) == 8  # a pause after every failed try
    ceilings = [0.2, 0.4, 0.8, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True)), delays
    assert writer.pending == 1 and counts["audit_dropped"] == 0  # the event is kept
