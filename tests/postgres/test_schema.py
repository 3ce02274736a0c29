"""The versioned schema: migrate is idempotent, safe to run twice at once; prune."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from click.testing import CliRunner

from nautilus_tasks.cli import cli
from nautilus_tasks.store.schema import (
    MIGRATIONS,
    is_hypertable,
    migrate,
    prune,
    timescale,
    version,
)


async def test_migrate_is_idempotent(pg: Any, pg_schema: str) -> None:
    latest = MIGRATIONS[-1][0]
    assert await version(pg, pg_schema) == latest
    assert await migrate(pg, pg_schema) == []
    rows = await pg.fetch(f'SELECT version FROM "{pg_schema}".schema_version ORDER BY 1')
    assert [r["version"] for r in rows] == [v for v, _ in MIGRATIONS]
    tables = await pg.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1",
        pg_schema,
    )
    assert [t["table_name"] for t in tables] == ["audit", "results", "schema_version"]


async def test_two_migrations_at_once_apply_each_step_once(pg_dsn: str, pg: Any) -> None:
    name = f"t_{uuid.uuid4().hex[:12]}"
    conns = [await asyncpg.connect(pg_dsn) for _ in range(2)]
    try:
        results = await asyncio.gather(*(migrate(c, name) for c in conns))
        assert sorted(results) == [[], [v for v, _ in MIGRATIONS]]
        assert await version(pg, name) == MIGRATIONS[-1][0]
    finally:
        for c in conns:
            await c.close()
        await pg.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


async def test_timescale_is_detected_never_required(pg: Any, pg_schema: str) -> None:
    state = await timescale(pg)
    # the same, asked independently: pg_available_extensions lists what the server has,
    # with the version installed in this database (NULL when not created here)
    row = await pg.fetchrow(
        "SELECT installed_version FROM pg_available_extensions WHERE name = 'timescaledb'"
    )
    expected = (
        "absent" if row is None else "available" if row["installed_version"] is None
        else "installed"
    )  # fmt: skip
    assert state == expected
    hyper = await is_hypertable(pg, pg_schema)
    assert hyper == (state == "installed")  # migrate made it one wherever it could
    if not hyper:  # then the audit is a plain table
        kind = await pg.fetchval(
            "SELECT relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = $1 AND c.relname = 'audit'",
            pg_schema,
        )
        assert kind == "r"


async def test_prune_removes_only_old_rows(pg: Any, pg_schema: str) -> None:
    now = datetime.now(UTC)
    ages = [timedelta(days=40), timedelta(days=31), timedelta(days=29), timedelta(hours=1)]
    await pg.executemany(
        f'INSERT INTO "{pg_schema}".audit (event, message_id, engine, task, priority, attempt,'
        " event_at) VALUES ('received', $1, 'e', 't', 'normal', 0, $2)",
        [(f"m{i}", now - age) for i, age in enumerate(ages)],
    )
    await pg.execute(
        f'INSERT INTO "{pg_schema}".results VALUES'
        " ('e', 'old', 't', true, '{}', $1), ('e', 'new', 't', true, '{}', $2)",
        now - timedelta(days=45),
        now,
    )
    assert await prune(pg, pg_schema, 30 * 86400) == (2, 1)
    left = await pg.fetch(f'SELECT message_id FROM "{pg_schema}".audit ORDER BY 1')
    assert [r["message_id"] for r in left] == ["m2", "m3"]


def test_db_commands(pg_dsn: str) -> None:
    name = f"t_{uuid.uuid4().hex[:12]}"
    env = {"NT_POSTGRES_DSN": pg_dsn, "NT_POSTGRES_SCHEMA": name}
    runner = CliRunner()
    try:
        first = runner.invoke(cli, ["db", "migrate"], env=env)
        assert first.exit_code == 0, first.output
        assert f"schema {name} migrated to version 1" in first.output
        again = runner.invoke(cli, ["db", "migrate"], env=env)
        assert f"schema {name} is up to date at version 1" in again.output
        pruned = runner.invoke(cli, ["db", "prune", "--older-than", "30d"], env=env)
        assert pruned.exit_code == 0, pruned.output
        assert "pruned 0 audit rows and 0 results" in pruned.output
    finally:
        asyncio.run(_drop(pg_dsn, name))
    missing = runner.invoke(cli, ["db", "migrate"], env={"NT_POSTGRES_DSN": ""})
    assert missing.exit_code == 2 and "NT_POSTGRES_DSN" in missing.output


async def _drop(dsn: str, name: str) -> None:
    conn = await asyncpg.connect(dsn)
    await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    await conn.close()
