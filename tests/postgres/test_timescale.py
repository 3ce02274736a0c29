"""TimescaleDB, detected and never required, on a fake asyncpg-like connection that reports
the extension installed, available or absent (the local server has no TimescaleDB): what
``migrate`` and ``prune`` send for each case."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest

from nautilus_tasks.store.schema import MIGRATIONS, migrate, prune, timescale

CUTOFF = datetime(2026, 1, 1, tzinfo=UTC)


class FakeTimescale:
    """Answers the catalog queries of ``store.schema`` as a server would with TimescaleDB
    ``state`` (installed, available, absent); records every statement sent."""

    def __init__(self, state: str, create_fails: bool = False, hypertable: bool = False):
        self.state = state
        self.create_fails = create_fails
        self.hypertable = hypertable
        self.sent: list[tuple[str, tuple[Any, ...]]] = []

    @asynccontextmanager
    async def transaction(self) -> Any:
        yield

    async def fetchval(self, sql: str, *args: Any) -> Any:
        self.sent.append((sql, args))
        if "FROM pg_extension" in sql:
            return 1 if self.state == "installed" else None
        if "FROM pg_available_extensions" in sql:
            return 1 if self.state in ("installed", "available") else None
        if "information_schema.tables" in sql:
            return None  # never migrated
        if "timescaledb_information.hypertables" in sql:
            return 1 if self.hypertable else None
        if "make_interval" in sql:
            return CUTOFF
        raise AssertionError(f"unexpected query {sql!r}")

    async def execute(self, sql: str, *args: Any) -> str:
        self.sent.append((sql, args))
        if "CREATE EXTENSION" in sql:
            if self.create_fails:
                raise RuntimeError('extension "timescaledb" must be preloaded')
            self.state = "installed"
        return "DELETE 2" if sql.startswith("DELETE") else "OK"

    def statements(self, word: str) -> list[tuple[str, tuple[Any, ...]]]:
        return [(sql, args) for sql, args in self.sent if word in sql]


@pytest.mark.parametrize("state", ["installed", "available", "absent"])
async def test_timescale_reports_the_catalog(state: str) -> None:
    assert await timescale(FakeTimescale(state)) == state


@pytest.mark.parametrize("state", ["installed", "available"])
async def test_migrate_makes_the_audit_a_hypertable_where_timescale_is(state: str) -> None:
    conn = FakeTimescale(state)
    assert await migrate(conn, "ts_1") == [v for v, _ in MIGRATIONS]
    created = conn.statements("CREATE EXTENSION")
    assert len(created) == (1 if state == "available" else 0)  # created only when missing
    [(sql, _)] = conn.statements("create_hypertable")
    assert "create_hypertable('\"ts_1\".audit', 'event_at'" in sql
    table = next(i for i, (s, _) in enumerate(conn.sent) if 'CREATE TABLE "ts_1".audit' in s)
    hyper = next(i for i, (s, _) in enumerate(conn.sent) if "create_hypertable" in s)
    recorded = next(i for i, (s, _) in enumerate(conn.sent) if "INSERT INTO" in s)
    assert table < hyper < recorded  # in the migration that makes the table


async def test_an_extension_that_cannot_be_created_leaves_a_plain_table(
    caplog: pytest.LogCaptureFixture,
) -> None:
    conn = FakeTimescale("available", create_fails=True)
    with caplog.at_level(logging.WARNING, logger="nautilus_tasks.store"):
        assert await migrate(conn, "ts_2") == [v for v, _ in MIGRATIONS]
    assert len(conn.statements("CREATE EXTENSION")) == 1
    assert conn.statements("create_hypertable") == []
    assert conn.statements('INSERT INTO "ts_2".schema_version')  # the migration went on
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "could not be created" in warning.getMessage()
    assert "must be preloaded" in warning.getMessage()


async def test_no_timescale_no_extension_and_no_hypertable() -> None:
    conn = FakeTimescale("absent")
    assert await migrate(conn, "ts_3") == [v for v, _ in MIGRATIONS]
    assert conn.statements("CREATE EXTENSION") == conn.statements("create_hypertable") == []


async def test_prune_drops_old_chunks_of_a_hypertable_first() -> None:
    conn = FakeTimescale("installed", hypertable=True)
    assert await prune(conn, "ts_4", 30 * 86400) == (2, 2)
    [(sql, args)] = conn.statements("drop_chunks")
    assert "drop_chunks('\"ts_4\".audit', older_than => $1)" in sql and args == (CUTOFF,)
    [lookup] = conn.statements("timescaledb_information.hypertables")
    assert lookup[1] == ("ts_4",)
    dropped = next(i for i, (s, _) in enumerate(conn.sent) if "drop_chunks" in s)
    deleted = next(i for i, (s, _) in enumerate(conn.sent) if s.startswith("DELETE"))
    assert dropped < deleted  # whole chunks first, then the rows left past the cutoff


@pytest.mark.parametrize("state", ["installed", "absent"])  # installed: audit made before
async def test_prune_of_a_plain_table_only_deletes(state: str) -> None:
    conn = FakeTimescale(state, hypertable=False)
    assert await prune(conn, "ts_5", 86400) == (2, 2)
    assert conn.statements("drop_chunks") == []
    deletes = [args for sql, args in conn.sent if sql.startswith("DELETE")]
    assert deletes == [(CUTOFF,), (CUTOFF,)]
    if state == "absent":  # never asks TimescaleDB's catalog when it is not installed
        assert conn.statements("timescaledb_information") == []
