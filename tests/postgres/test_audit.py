"""The audit of an in-process worker: each lifecycle event with its columns, durable
results through ``handle.result()``, expiry, and ``dlq replay``."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from click.testing import CliRunner

from nautilus_tasks import Client, Engine, Retry, TaskFailed, current_message
from nautilus_tasks.cli import cli
from nautilus_tasks.store import StoreConfig
from tests.helpers import wait_for
from tests.postgres.helpers import audited_worker, lifecycles


def _engine() -> Engine:
    engine = Engine("audited")

    @engine.task(retries=1, backoff_base=0.01, backoff_max=0.02)
    async def once_then_ok(n: int) -> int:
        msg = current_message()
        assert msg is not None
        if msg.attempt == 0:
            raise Retry(delay=0.01)
        return n

    @engine.task(retries=1, backoff_base=0.01, backoff_max=0.02)
    async def doomed(n: int) -> None:
        raise ValueError(f"doomed {n}")

    @engine.task(durable_result=True)
    def square(n: int) -> int:
        return n * n

    @engine.task
    async def plain(n: int) -> int:
        return n + 1

    return engine


async def test_lifecycle_rows(client: Client, store: StoreConfig, pg: Any) -> None:
    engine = _engine()
    client.bind(engine)
    async with audited_worker(engine, client, store) as worker:
        ok = await engine.tasks["plain"].send(1)
        retried = await engine.tasks["once_then_ok"].send(2)
        dead = await engine.tasks["doomed"].send(3)
        expired = await engine.tasks["plain"].send_with(ttl=0.001, countdown=0.05)(4)
        await wait_for(lambda: worker.stats.counts["dead_failed"] + worker.stats.counts[
            "dead_expired"] == 2 and worker.stats.counts["succeeded"] == 2)  # fmt: skip
    s = store.schema_name
    assert await lifecycles(pg, s) == {
        ok: "received:0,started:0,succeeded:0",
        retried: "failed:0,received:0,retried:0,started:0,received:1,started:1,succeeded:1",
        dead: "failed:0,received:0,retried:0,started:0,dead_lettered:1,failed:1,received:1,"
        "started:1",
        expired: "dead_lettered:0,expired:0,received:0",
    }
    row = await pg.fetchrow(
        f"SELECT * FROM \"{s}\".audit WHERE message_id = $1 AND event = 'dead_lettered'", dead
    )
    assert (row["engine"], row["task"], row["priority"], row["reason"]) == (
        "audited", "doomed", "normal", "failed",
    )  # fmt: skip
    assert (row["error_type"], row["error"], row["worker"]) == (
        "ValueError", "doomed 3", worker.consumer,
    )  # fmt: skip
    assert row["enqueued_at"] is not None and row["enqueued_at"] <= row["event_at"]
    skew = await pg.fetchval(  # the writer sends times in their binary form: check the epoch
        f'SELECT max(abs(extract(epoch FROM now() - event_at))) FROM "{s}".audit'
    )
    assert skew < 60
    runs = await pg.fetch(
        f"SELECT duration_ms FROM \"{s}\".audit WHERE event IN ('succeeded', 'failed')"
    )
    assert len(runs) == 5 and all(r["duration_ms"] >= 0 for r in runs)
    assert worker.stats.counts["audit_written"] == await pg.fetchval(
        f'SELECT count(*) FROM "{s}".audit'
    )
    assert worker.stats.counts["audit_dropped"] == 0


async def test_priority_and_duration_columns(client: Client, store: StoreConfig, pg: Any) -> None:
    engine = Engine("timed")
    entered, release = asyncio.Event(), asyncio.Event()

    @engine.task
    async def held() -> None:
        entered.set()
        await release.wait()

    @engine.task
    async def noop() -> None: ...

    client.bind(engine)
    async with audited_worker(engine, client, store) as worker:
        sent_at = time.perf_counter()
        slow = await held.send_with(priority="high")()
        await asyncio.wait_for(entered.wait(), 20)
        entered_at = time.perf_counter()  # held started before this
        quick = await noop.send_with(priority="critical")()
        await wait_for(lambda: worker.stats.counts["succeeded"] == 1)  # noop's run is over
        released_at = time.perf_counter()
        release.set()  # held ends after this
        await wait_for(lambda: worker.stats.counts["succeeded"] == 2)
        done_at = time.perf_counter()
    rows = await pg.fetch(
        f'SELECT message_id, event, priority, duration_ms FROM "{store.schema_name}".audit'
    )
    priorities = {(r["message_id"], r["event"]): r["priority"] for r in rows}
    assert priorities == {
        (m, e): p for m, p in ((slow, "high"), (quick, "critical"))
        for e in ("received", "started", "succeeded")
    }  # fmt: skip
    took = {r["message_id"]: r["duration_ms"] for r in rows if r["event"] == "succeeded"}
    # held ran from before entered_at to after released_at, and within the test's window;
    # noop ran inside held's run, so took less (causal bounds, not speed)
    assert (released_at - entered_at) * 1000 <= took[slow] <= (done_at - sent_at) * 1000
    assert 0 <= took[quick] < took[slow]


async def test_durable_results(
    client: Client, store: StoreConfig, pg: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NT_POSTGRES_DSN", store.dsn)
    monkeypatch.setenv("NT_POSTGRES_SCHEMA", store.schema_name)
    engine = _engine()
    client.bind(engine)
    async with audited_worker(engine, client, store):
        by_task = await engine.tasks["square"].send(7)
        by_send = await engine.tasks["plain"].send_with(durable_result=True)(41)
        failing = await engine.tasks["doomed"].send_with(durable_result=True)(5)
        assert (by_task.durable, by_send.durable) == (True, True)
        assert await by_task.result(timeout=20) == 49
        assert await by_send.result(timeout=20) == 42
        with pytest.raises(TaskFailed, match="doomed 5"):
            await failing.result(timeout=20)
        not_durable = await engine.tasks["plain"].send(1)
        assert not not_durable.durable
        # the buffered and bulk sends of a durable task keep the flag (no fast path drops it)
        buffered = engine.tasks["square"].send_nowait(3)
        [bulk] = await client.send_many(engine.tasks["square"], [((4,), {})])
        await client.flush()
        assert buffered.durable
        assert await buffered.result(timeout=20) == 9
        assert await client.result(engine.tasks["square"], bulk, 20, durable=True) == 16
    skew = await pg.fetchval(  # finished_at went in its binary form: check the epoch
        "SELECT max(abs(extract(epoch FROM now() - finished_at)))"
        f' FROM "{store.schema_name}".results'
    )
    assert skew < 60


async def test_replay_is_audited(
    client: Client, store: StoreConfig, pg: Any, monkeypatch: pytest.MonkeyPatch, redis_url: str,
    prefix: str,
) -> None:  # fmt: skip
    engine = _engine()
    client.bind(engine)
    async with audited_worker(engine, client, store) as worker:
        dead = await engine.tasks["doomed"].send(8)
        await wait_for(lambda: worker.stats.counts["dead_failed"] == 1)
    monkeypatch.setenv("NT_POSTGRES_DSN", store.dsn)
    monkeypatch.setenv("NT_POSTGRES_SCHEMA", store.schema_name)
    args = ["dlq", "replay", "audited", "--all", "--redis", redis_url, "--prefix", prefix]
    result = await asyncio.to_thread(CliRunner().invoke, cli, args)
    assert result.exit_code == 0, result.output
    assert "replayed 1" in result.output and "recorded 1 replays" in result.output
    row = await pg.fetchrow(f"SELECT * FROM \"{store.schema_name}\".audit WHERE event = 'replayed'")
    assert (row["message_id"], row["task"], row["attempt"]) == (dead, "doomed", 0)
