"""An in-process worker with the PostgreSQL audit on, and audit queries for the checks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from nautilus_tasks import Client, Engine, WorkerConfig
from nautilus_tasks.store import StoreConfig
from nautilus_tasks.worker import Worker
from tests.helpers import running_worker


@asynccontextmanager
async def audited_worker(
    engine: Engine, client: Client, store: StoreConfig, config: WorkerConfig | None = None
) -> AsyncIterator[Worker]:
    """A worker of ``engine`` with its audit writer, in this loop; stopped (and its audit
    flushed) when the block ends."""
    config = config or WorkerConfig(concurrency=20, grace=5)
    async with running_worker(engine, client, config, audit=store) as worker:
        yield worker


async def lifecycles(pg: Any, schema: str, ids: list[str] | None = None) -> dict[str, str]:
    """message id -> its events as ``event:attempt``, sorted by attempt then event name."""
    rows = await pg.fetch(
        f"""SELECT message_id, string_agg(event || ':' || attempt, ','
                                          ORDER BY attempt, event) AS sig
            FROM "{schema}".audit
            WHERE $1::text[] IS NULL OR message_id = ANY($1::text[])
            GROUP BY message_id""",
        ids,
    )
    return {r["message_id"]: r["sig"] for r in rows}
