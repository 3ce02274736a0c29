"""PostgreSQL fixtures: the server (NT_TEST_POSTGRES_DSN or the local one), a schema of
each test's own, migrated and dropped after. In CI (CI=true) a missing server fails."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from nautilus_tasks.store import StoreConfig
from nautilus_tasks.store.schema import migrate

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"


async def _reachable(dsn: str) -> str | None:
    """None when a connection works, else why not."""
    try:
        import asyncpg
    except ImportError:
        return "asyncpg is not installed (pip install -e '.[dev,postgres]')"
    try:
        conn = await asyncpg.connect(dsn, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return f"PostgreSQL at {dsn} is unreachable: {exc}"
    await conn.close()
    return None


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    dsn = os.environ.get("NT_TEST_POSTGRES_DSN") or DEFAULT_DSN
    why = asyncio.run(_reachable(dsn))
    if why is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(why)
        pytest.skip(why)
    return dsn


@pytest.fixture
async def pg_schema(pg_dsn: str) -> AsyncIterator[str]:
    """A fresh, migrated schema of this test alone; dropped after."""
    import asyncpg

    name = f"t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(pg_dsn)
    try:
        await migrate(conn, name)
        yield name
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        await conn.close()


@pytest.fixture
async def pg(pg_dsn: str) -> AsyncIterator[Any]:
    """A plain asyncpg connection for checks."""
    import asyncpg

    conn = await asyncpg.connect(pg_dsn)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
def store(pg_dsn: str, pg_schema: str) -> StoreConfig:
    """Settings of a quick writer into the test's schema."""
    return StoreConfig(dsn=pg_dsn, schema_name=pg_schema, flush_interval=0.02, backoff_max=0.5)
