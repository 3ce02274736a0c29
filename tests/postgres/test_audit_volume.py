"""Acceptance 3: 10,000 tasks run by two worker processes with the audit switched on by
NT_POSTGRES_DSN alone, with retries and dead letters; SQL then finds the complete
lifecycle of every message the test sent, and nothing else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from nautilus_tasks import Client
from nautilus_tasks.store import StoreConfig
from tests.apps.audited import audited
from tests.helpers import wait_for
from tests.procs import start_worker, stop_workers

TOTAL = 10_000
EXPECTED = {
    "ok": "received:0,started:0,succeeded:0",
    "flaky": "failed:0,received:0,retried:0,started:0,received:1,started:1,succeeded:1",
    "doomed": "failed:0,received:0,retried:0,started:0,"
    "dead_lettered:1,failed:1,received:1,started:1",
}


def _kind(n: int) -> str:
    return "flaky" if n % 10 == 3 else "doomed" if n % 10 == 7 else "ok"


async def test_ten_thousand_lifecycles(
    client: Client,
    raw: aioredis.Redis,
    store: StoreConfig,
    pg: Any,
    redis_url: str,
    prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NT_POSTGRES_DSN", store.dsn)
    monkeypatch.setenv("NT_POSTGRES_SCHEMA", store.schema_name)
    logs = [tmp_path / f"w{i}.log" for i in range(2)]
    procs = [
        start_worker("tests.apps.audited:audited", redis_url, prefix, "-c", "200", log=log)
        for log in logs
    ]
    sent: list[tuple[str, str]] = []
    try:
        for start in range(0, TOTAL, 1000):
            for kind in ("ok", "flaky", "doomed"):
                task = audited.tasks[kind]
                calls = [((n,), {}) for n in range(start, start + 1000) if _kind(n) == kind]
                ids = await client.send_many(task, calls)
                sent += [(i, kind) for i in ids]
        dead_key = client.broker.keys("audited").dead
        done_key = f"{prefix}:test:done"

        async def finished() -> bool:
            done = int(await raw.get(done_key) or 0)
            return done == 9000 and await raw.xlen(dead_key) == 1000

        await wait_for(finished, timeout=60, interval=0.2)
    finally:
        codes = stop_workers(procs)
    assert codes == [0, 0], [log.read_text()[-3000:] for log in logs]
    s = store.schema_name
    await pg.execute("CREATE TEMP TABLE sent (message_id text PRIMARY KEY, kind text)")
    await pg.copy_records_to_table("sent", records=sent)
    rows = await pg.fetch(
        f"""SELECT s.kind, a.sig, count(*) AS n
            FROM sent s LEFT JOIN (
                SELECT message_id, string_agg(event || ':' || attempt, ','
                                              ORDER BY attempt, event) AS sig
                FROM "{s}".audit GROUP BY message_id) a USING (message_id)
            GROUP BY 1, 2"""
    )
    got = {(r["kind"], r["sig"]): r["n"] for r in rows}
    assert got == {
        ("ok", EXPECTED["ok"]): 8000,
        ("flaky", EXPECTED["flaky"]): 1000,
        ("doomed", EXPECTED["doomed"]): 1000,
    }
    strays = await pg.fetchval(
        f'SELECT count(*) FROM "{s}".audit a WHERE NOT EXISTS'
        " (SELECT 1 FROM sent s WHERE s.message_id = a.message_id)"
    )
    assert strays == 0
    bad = await pg.fetchval(
        f"""SELECT count(*) FROM "{s}".audit a JOIN sent s USING (message_id)
            WHERE a.engine <> 'audited' OR a.task <> s.kind OR a.priority <> 'normal'
               OR a.worker IS NULL OR a.enqueued_at IS NULL OR a.enqueued_at > a.event_at
               OR ((a.event IN ('succeeded', 'failed')) <> (a.duration_ms IS NOT NULL))
               OR ((a.event IN ('failed', 'dead_lettered')) <> (a.error_type IS NOT NULL))"""
    )
    assert bad == 0
    workers = await pg.fetchval(f'SELECT count(DISTINCT worker) FROM "{s}".audit')
    assert workers == 2
    dead = await pg.fetch(
        f"SELECT DISTINCT error_type, reason FROM \"{s}\".audit WHERE event = 'dead_lettered'"
    )
    assert [tuple(r) for r in dead] == [("ValueError", "failed")]
