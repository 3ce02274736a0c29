"""Acceptance 4: a TCP proxy between the worker's audit writer and PostgreSQL cuts, then
stalls, the connection during a run. Every task still completes, the audit events that
did not fit the small buffer are dropped and counted, and writing resumes after the heal."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from nautilus_tasks import Client, Engine, WorkerConfig
from nautilus_tasks.store import StoreConfig
from tests.faults.proxy import Proxy
from tests.helpers import wait_for
from tests.postgres.helpers import audited_worker, lifecycles

DONE = "received:0,started:0,succeeded:0"


async def test_cut_and_stall_of_postgres(
    client: Client, raw: aioredis.Redis, store: StoreConfig, pg: Any, prefix: str
) -> None:
    done_key = f"{prefix}:test:done"
    engine = Engine("faulty")

    @engine.task
    async def work(n: int) -> int:
        await raw.incr(done_key)
        return n

    client.bind(engine)

    async def done() -> int:
        return int(await raw.get(done_key) or 0)

    def finished(count: int) -> Any:
        async def check() -> bool:
            return await done() == count

        return check

    async def send(count: int) -> list[str]:
        return await client.send_many(work, [((n,), {}) for n in range(count)])

    async def audited(ids: list[str]) -> bool:
        found = await lifecycles(pg, store.schema_name, ids)
        return len(found) == len(ids) and set(found.values()) == {DONE}

    async with Proxy("127.0.0.1", 5432) as proxy:
        via_proxy = store.model_copy(
            update={
                "dsn": store.dsn.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}"),
                "buffer_size": 300, "batch_size": 100, "write_timeout": 0.5,
            }
        )  # fmt: skip
        config = WorkerConfig(concurrency=50, grace=5)
        async with audited_worker(engine, client, via_proxy, config) as worker:
            counts = worker.stats.counts
            before = await send(100)
            await wait_for(lambda: audited(before))
            assert counts["audit_dropped"] == 0

            assert proxy.cut() >= 1  # the writer's connection is reset
            await send(500)
            await wait_for(finished(600))
            writer = worker.audit
            assert writer is not None
            await wait_for(lambda: writer.pending == 0)

            proxy.stall()
            proxy.cut()  # and the next connections hang
            await send(2000)
            await wait_for(finished(2600))  # every task completes meanwhile
            await wait_for(lambda: counts["succeeded"] == 2600)  # and its events are noted
            assert counts["audit_dropped"] > 0
            assert counts["audit_write_errors"] > 0
            dropped = counts["audit_dropped"]

            proxy.resume()
            await wait_for(lambda: writer.pending == 0)  # the backlog goes in
            assert counts["audit_dropped"] == dropped
            after = await send(100)
            await wait_for(lambda: audited(after))  # written again after the heal
            assert counts["succeeded"] == 2700
        assert await done() == 2700
    distinct = await pg.fetchval(
        f"SELECT count(*) FROM (SELECT DISTINCT message_id, event, attempt FROM"
        f' "{store.schema_name}".audit) d'
    )
    # nothing is lost silently: each of the 3 events of the 2,700 runs is written or counted
    assert distinct + counts["audit_dropped"] == 3 * 2700
    assert counts["audit_dropped"] == dropped  # nothing dropped after the heal
