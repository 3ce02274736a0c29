"""The versioned schema: ordered migrations, recorded in ``<schema>.schema_version``.

``migrate`` applies the migrations a schema lacks, in order, each in the transaction that
records it, under an advisory lock (two migrations at once apply each step once). It is
idempotent. Where the TimescaleDB extension is installed (or available and creatable), the
audit table becomes a hypertable on ``event_at``; it is never required.
"""

from __future__ import annotations

import logging
from typing import Any

from .config import check_schema

log = logging.getLogger("nautilus_tasks.store")

AUDIT_COLUMNS = (
    "event", "message_id", "engine", "task", "priority", "attempt", "worker",
    "enqueued_at", "event_at", "duration_ms", "error_type", "error", "reason",
)  # fmt: skip
"""The columns of ``audit`` that the writer fills, in the order of its records."""

MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        """
        CREATE TABLE {s}.audit (
            event       text NOT NULL,
            message_id  text NOT NULL,
            engine      text NOT NULL,
            task        text NOT NULL,
            priority    text NOT NULL,
            attempt     integer NOT NULL,
            worker      text,
            enqueued_at timestamptz,
            event_at    timestamptz NOT NULL,
            duration_ms double precision,
            error_type  text,
            error       text,
            reason      text
        );
        CREATE INDEX audit_message ON {s}.audit (message_id) WHERE event = 'received';
        CREATE INDEX audit_time ON {s}.audit USING brin (event_at);
        CREATE TABLE {s}.results (
            engine      text NOT NULL,
            message_id  text NOT NULL,
            task        text NOT NULL,
            ok          boolean NOT NULL,
            body        jsonb NOT NULL,
            finished_at timestamptz NOT NULL,
            PRIMARY KEY (engine, message_id)
        );
        CREATE INDEX results_finished ON {s}.results (finished_at);
        """,
    ),
)
"""(version, SQL) in order; ``{s}`` is the quoted schema. Append, never edit.

Indexes are few on purpose: every audit row is an insert on the workers' critical CPU. A
BRIN index on ``event_at`` serves time windows; message ids are indexed on ``received``
rows only (one per delivery, a third of the rows), which locate a message's lifecycle in
time (``queries.history``)."""

_LOCK = "SELECT pg_advisory_xact_lock(hashtext('nautilus_tasks.migrate.' || $1))"


def quoted(schema: str) -> str:
    """The schema as an SQL identifier (checked, then quoted)."""
    return f'"{check_schema(schema)}"'


async def timescale(conn: Any) -> str:
    """``installed``, ``available`` (can be created) or ``absent``."""
    if await conn.fetchval("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'"):
        return "installed"
    if await conn.fetchval("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"):
        return "available"
    return "absent"


async def version(conn: Any, schema: str) -> int:
    """The schema's version: 0 when it was never migrated."""
    exists = await conn.fetchval(
        "SELECT 1 FROM information_schema.tables WHERE table_schema = $1"
        " AND table_name = 'schema_version'",
        schema,
    )
    if not exists:
        return 0
    found = await conn.fetchval(f"SELECT max(version) FROM {quoted(schema)}.schema_version")
    return int(found or 0)


async def migrate(conn: Any, schema: str) -> list[int]:
    """Apply the missing migrations; returns the versions applied (empty: up to date)."""
    s = quoted(schema)
    applied = []
    async with conn.transaction():
        await conn.execute(_LOCK, schema)
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {s}.schema_version (version integer PRIMARY KEY,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        current = await version(conn, schema)
        for number, sql in MIGRATIONS:
            if number <= current:
                continue
            await conn.execute(sql.format(s=s))
            if number == 1:
                await _hypertable(conn, s)
            await conn.execute(f"INSERT INTO {s}.schema_version (version) VALUES ($1)", number)
            applied.append(number)
    if applied:
        log.info("schema %s migrated to version %d (applied %s)", schema, applied[-1], applied)
    return applied


async def _hypertable(conn: Any, s: str) -> None:
    """Make ``audit`` a hypertable when TimescaleDB is there; else leave a plain table."""
    state = await timescale(conn)
    if state == "available":
        try:
            async with conn.transaction():  # a savepoint: a failure leaves the migration intact
                await conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            state = "installed"
        except Exception as exc:  # e.g. not in shared_preload_libraries; optional anyway
            log.warning("TimescaleDB is available but could not be created (%s): plain table", exc)
    if state == "installed":
        await conn.execute(
            f"SELECT create_hypertable('{s}.audit', 'event_at', if_not_exists => TRUE)"
        )
        log.info("%s.audit is a TimescaleDB hypertable", s)


async def is_hypertable(conn: Any, schema: str) -> bool:
    if await timescale(conn) != "installed":
        return False
    found = await conn.fetchval(
        "SELECT 1 FROM timescaledb_information.hypertables"
        " WHERE hypertable_schema = $1 AND hypertable_name = 'audit'",
        schema,
    )
    return bool(found)


async def prune(conn: Any, schema: str, older_than: float) -> tuple[int, int]:
    """Delete audit rows and durable results older than ``older_than`` seconds (by the
    database's clock); returns (audit rows, results) removed. Old hypertable chunks are
    dropped whole first."""
    s = quoted(schema)
    cutoff = await conn.fetchval("SELECT now() - make_interval(secs => $1)", float(older_than))
    async with conn.transaction():
        if await is_hypertable(conn, schema):
            await conn.execute(f"SELECT drop_chunks('{s}.audit', older_than => $1)", cutoff)
        audit = await conn.execute(f"DELETE FROM {s}.audit WHERE event_at < $1", cutoff)
        results = await conn.execute(f"DELETE FROM {s}.results WHERE finished_at < $1", cutoff)
    return _count(audit), _count(results)


def _count(status: str) -> int:
    """The row count of a command status like ``DELETE 12``."""
    return int(status.rsplit(" ", 1)[-1])
