"""Lease primitives on a real server: renew, reclaim, poison, deleted entries."""

from __future__ import annotations

import logging

import pytest
import redis.asyncio as aioredis

from nautilus_tasks import Client, Engine, Priority, WorkerConfig
from nautilus_tasks.message import now_ms
from tests.helpers import running_worker, wait_for

pytestmark = pytest.mark.integration

NORMAL = Priority.NORMAL


async def _setup(client: Client, n: int) -> list[str]:
    engine = Engine("lease")

    @engine.task
    def job(i: int) -> None: ...

    client.bind(engine)
    await client.broker.ensure_groups("lease", "a")
    await client.send_many(job, [((i,), {}) for i in range(n)])
    got = await client.broker.read("lease", "a", n, (0, 0, 0), block_ms=0)
    return [d.entry_id for d in got]


async def _pending(raw: aioredis.Redis, client: Client, entry_id: str) -> tuple[str, int]:
    stream = client.broker.keys("lease").stream(NORMAL)
    [row] = await raw.xpending_range(stream, "lease", min=entry_id, max=entry_id, count=1)
    return row["consumer"].decode(), int(row["times_delivered"])


async def _idle_at_least(raw: aioredis.Redis, client: Client, ms: int) -> bool:
    stream = client.broker.keys("lease").stream(NORMAL)
    rows = await raw.xpending_range(stream, "lease", min="-", max="+", count=100)
    return bool(rows) and all(int(r["time_since_delivered"]) >= ms for r in rows)


async def test_renew_keeps_entries_and_does_not_count_a_delivery(
    client: Client, raw: aioredis.Redis
) -> None:
    ids = await _setup(client, 3)
    await wait_for(lambda: _idle_at_least(raw, client, 300))
    assert await client.broker.renew("lease", "a", {NORMAL: ids}) == ([], [])
    step = await client.broker.reclaim(
        "lease", "b", NORMAL, cursor="0-0", count=10, min_idle_ms=300, max_deliveries=5,
        now_ms=now_ms(),
    )  # fmt: skip
    assert step.deliveries == []  # renewed just now: not idle past the lease
    assert await _pending(raw, client, ids[0]) == ("a", 1)


async def test_reclaim_takes_idle_entries_and_ownership_moves(
    client: Client, raw: aioredis.Redis
) -> None:
    ids = await _setup(client, 3)
    await wait_for(lambda: _idle_at_least(raw, client, 200))
    step = await client.broker.reclaim(
        "lease", "b", NORMAL, cursor="0-0", count=10, min_idle_ms=200, max_deliveries=5,
        now_ms=now_ms(),
    )  # fmt: skip
    assert [d.entry_id for d in step.deliveries] == ids
    assert [d.deliveries for d in step.deliveries] == [2, 2, 2]
    assert step.cursor == "0-0"
    # the old owner can no longer renew, ack or requeue them
    assert await client.broker.renew("lease", "a", {NORMAL: ids}) == (ids, [])  # lost
    assert await client.broker.ack("lease", "a", {NORMAL: ids}) == (ids, [])  # taken
    assert await client.broker.requeue("lease", "a", {NORMAL: ids}) == 0
    assert await client.broker.ack("lease", "b", {NORMAL: ids}) == ([], [])
    assert await client.broker.ack("lease", "b", {NORMAL: ids}) == ([], ids)  # gone: no-op
    assert await client.broker.renew("lease", "b", {NORMAL: ids}) == ([], ids)
    assert await raw.xlen(client.broker.keys("lease").stream(NORMAL)) == 0


async def test_reclaim_dead_letters_poison_and_reports_deleted_entries(
    client: Client, raw: aioredis.Redis
) -> None:
    ids = await _setup(client, 2)
    keys = client.broker.keys("lease")
    await raw.xdel(keys.stream(NORMAL), ids[1])  # data lost outside the framework
    for round_ in range(3):
        await wait_for(lambda: _idle_at_least(raw, client, 100))
        step = await client.broker.reclaim(
            "lease", "b", NORMAL, cursor="0-0", count=10, min_idle_ms=100, max_deliveries=2,
            now_ms=now_ms(),
        )  # fmt: skip
        if round_ == 0:
            assert step.deleted == [ids[1]]
            assert [d.entry_id for d in step.deliveries] == [ids[0]]  # delivered twice: ok
        else:
            assert step.poisoned == [ids[0]]  # the third delivery is past max_deliveries
            break
    [(_, dead)] = await raw.xrange(keys.dead)
    assert dead[b"reason"] == b"poison"
    assert dead[b"deliveries"] == b"3"
    assert b'"args":[0]' in dead[b"orig:envelope"]  # the original entry, preserved
    assert await raw.xlen(keys.stream(NORMAL)) == 0


async def test_worker_counts_and_logs_pending_entries_deleted_outside_the_framework(
    client: Client, raw: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """A dead consumer's pending entry is XDELed by hand: the worker's reclaim (XAUTOCLAIM)
    reports it deleted. The worker counts it as ``deleted_pending``, logs it as an ERROR,
    and still reclaims and runs the dead consumer's other entry."""
    engine = Engine("lease")
    ran: list[int] = []

    @engine.task
    async def job(i: int) -> None:
        ran.append(i)

    client.bind(engine)
    await client.broker.ensure_groups("lease", "dead")
    await client.send_many(job, [((i,), {}) for i in range(2)])
    held = await client.broker.read("lease", "dead", 2, (0, 0, 0), block_ms=0)
    kept, lost = (d.entry_id for d in held)
    await raw.xdel(client.broker.keys("lease").stream(NORMAL), lost)  # data lost outside
    config = WorkerConfig(concurrency=4, lease=0.3, grace=5)
    with caplog.at_level(logging.ERROR, logger="nautilus_tasks.worker"):
        async with running_worker(engine, client, config) as worker:
            await wait_for(lambda: ran == [0] and worker.stats.counts["deleted_pending"] >= 1)
            await wait_for(lambda: worker.stats.counts["acked"] == 1)
            counts = dict(worker.stats.counts)
    assert counts["deleted_pending"] == 1, counts
    assert counts["reclaimed"] == 1, counts  # the kept entry, taken from the dead consumer
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    message = errors[0].getMessage()
    assert "1 pending entries of lease normal were deleted outside the framework" in message
    assert lost in message and kept not in message
    assert ran == [0]
    stream = client.broker.keys("lease").stream(NORMAL)
    assert int((await raw.xpending(stream, "lease"))["pending"]) == 0


async def test_ack_finds_its_own_entries_beyond_the_first_thousand_it_holds(
    client: Client, raw: aioredis.Redis
) -> None:
    # ack.lua checks ownership with one XPENDING of the consumer's first n + 1000 entries;
    # ids past them are each looked up alone: owned ones are acked, not taken for gone
    ids = await _setup(client, 1_200)
    stream = client.broker.keys("lease").stream(NORMAL)
    late = ids[-10:]
    assert await client.broker.ack("lease", "a", {NORMAL: late}) == ([], [])
    assert await raw.xlen(stream) == 1_190
    assert await client.broker.ack("lease", "a", {NORMAL: [*ids[:5], *late]}) == ([], late)
    assert await raw.xlen(stream) == 1_185
    assert await client.broker.ack("lease", "b", {NORMAL: ids[5:8]}) == (ids[5:8], [])
    assert await raw.xlen(stream) == 1_185
