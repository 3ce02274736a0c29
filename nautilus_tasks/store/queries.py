"""Reading the audit back: history, per-task statistics, durable results; and the
direct write of ``replayed`` events by ``dlq replay``."""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from ..lifecycle import Event
from ..message import now_ms
from .config import StoreConfig
from .connection import connect
from .schema import AUDIT_COLUMNS, quoted

HISTORY_COLUMNS = (
    "event_at", "event", "engine", "task", "message_id", "attempt", "priority", "worker",
    "enqueued_at", "duration_ms", "error_type", "error", "reason",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class TaskStats:
    """The figures of one task over a window. Durations in milliseconds."""

    engine: str
    task: str
    runs: int
    """Finished runs: ``succeeded`` plus ``failed`` events."""
    failed: int
    dead_lettered: int
    failure_rate: float
    """failed / runs."""
    p50: float | None
    p95: float | None
    p99: float | None


def _filters(
    since: float | None, task: str | None, status: str | None, engine: str | None = None
) -> tuple[str, list[Any]]:
    where: list[str] = []
    args: list[Any] = []
    if since is not None:
        args.append(float(since))
        where.append(f"event_at >= now() - make_interval(secs => ${len(args)})")
    if task is not None:
        eng, dot, name = task.rpartition(".")
        if dot:  # engine.task
            args += [eng, name]
            where.append(f"engine = ${len(args) - 1} AND task = ${len(args)}")
        else:
            args.append(task)
            where.append(f"task = ${len(args)}")
    if engine is not None:
        args.append(engine)
        where.append(f"engine = ${len(args)}")
    if status is not None:
        args.append(Event(status).value)
        where.append(f"event = ${len(args)}")
    return (" WHERE " + " AND ".join(where)) if where else "", args


async def history(
    conn: Any,
    schema: str,
    *,
    task: str | None = None,
    status: str | None = None,
    since: float | None = None,
    message_id: str | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Audit rows, newest first. ``task`` is ``name`` or ``engine.name``; ``status`` an
    event name (``failed``, ``dead_lettered``...); ``since`` in seconds."""
    clause, args = _filters(since, task, status)
    table = f"{quoted(schema)}.audit"
    if message_id is not None:
        # every event of a message comes after its first ``received`` (indexed), give or
        # take the clock skew of the workers: that bounds the time scan (BRIN)
        args.append(message_id)
        n = len(args)
        clause += (" AND " if clause else " WHERE ") + (
            f"message_id = ${n} AND event_at >= coalesce((SELECT min(event_at) -"
            f" interval '1 hour' FROM {table} WHERE message_id = ${n} AND event = 'received'),"
            " '-infinity')"
        )
    args.append(int(limit))
    rows = await conn.fetch(
        f"SELECT {', '.join(HISTORY_COLUMNS)} FROM {table}{clause}"
        f" ORDER BY event_at DESC LIMIT ${len(args)}",
        *args,
    )
    return [dict(row) for row in rows]


async def stats(
    conn: Any, schema: str, *, since: float | None = None, engine: str | None = None
) -> builtins.list[TaskStats]:
    """Per task: finished runs, failures, dead letters, failure rate and duration
    percentiles (``percentile_cont``, interpolated), all computed in SQL."""
    clause, args = _filters(since, None, None, engine)
    rows = await conn.fetch(
        f"""
        SELECT engine, task,
            count(*) FILTER (WHERE event IN ('succeeded', 'failed')) AS runs,
            count(*) FILTER (WHERE event = 'failed') AS failed,
            count(*) FILTER (WHERE event = 'dead_lettered') AS dead_lettered,
            percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY duration_ms)
                FILTER (WHERE event IN ('succeeded', 'failed')) AS pct
        FROM {quoted(schema)}.audit{clause}
        GROUP BY engine, task
        ORDER BY engine, task
        """,
        *args,
    )
    out = []
    for row in rows:
        runs, failed = int(row["runs"]), int(row["failed"])
        pct = row["pct"] or [None, None, None]
        stat = TaskStats(
            engine=row["engine"], task=row["task"], runs=runs, failed=failed,
            dead_lettered=int(row["dead_lettered"]),
            failure_rate=failed / runs if runs else 0.0, p50=pct[0], p95=pct[1], p99=pct[2],
        )  # fmt: skip
        out.append(stat)
    return out


async def fetch_result(conn: Any, schema: str, engine: str, message_id: str) -> Any | None:
    """The stored outcome body (``{"ok": ...}``) of a durable result, or None."""
    raw = await conn.fetchval(
        f"SELECT body FROM {quoted(schema)}.results WHERE engine = $1 AND message_id = $2",
        engine,
        message_id,
    )
    return None if raw is None else orjson.loads(raw)


def replayed_record(
    engine: str, message_id: str, task: str, priority: str, worker: str
) -> tuple[Any, ...]:
    """An audit row (AUDIT_COLUMNS order) for a replayed dead letter, attempt 0."""
    now = datetime.fromtimestamp(now_ms() / 1000, UTC)
    return (
        Event.REPLAYED.value, message_id, engine, task, priority or "normal", 0, worker,
        None, now, None, None, None, "replayed",
    )  # fmt: skip


async def insert_events(conn: Any, schema: str, rows: Iterable[tuple[Any, ...]]) -> int:
    """COPY ready rows (AUDIT_COLUMNS order, times as datetimes) into the audit."""
    records = list(rows)
    if records:
        await conn.copy_records_to_table(
            "audit", records=records, columns=AUDIT_COLUMNS, schema_name=schema
        )
    return len(records)


async def record_replays(
    config: StoreConfig, engine: str, letters: Iterable[tuple[str, str, str]], actor: str
) -> int:
    """Write a ``replayed`` event for each (message id, task, priority) of ``engine``."""
    rows = [replayed_record(engine, m, t, p, actor) for m, t, p in letters if m]
    if not rows:
        return 0
    conn = await connect(config.dsn, config.write_timeout)
    try:
        return await insert_events(conn, config.schema_name, rows)
    finally:
        await conn.close()
