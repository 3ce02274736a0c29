"""Messages whose TTL passed before they started never run (acceptance test 11).

By default an expired message is dead-lettered with reason ``expired``; a task declared
``on_expire="drop"`` drops it instead, and the worker counts ``expired_dropped`` in its
stats. The messages are sent while no worker runs; the test waits past the TTL (by
Redis TIME, and by this host's clock, which the envelope's ``enqueued_at`` comes from),
then starts a real worker process.
"""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
import redis.asyncio as aioredis

from nautilus_tasks import Client
from tests.apps.timed import FLEETING_TTL, droppable, fleeting, stamp, timed
from tests.helpers import wait_for
from tests.ledger import Ledger
from tests.procs import start_worker, stop_workers

pytestmark = pytest.mark.integration

APP = "tests.apps.timed:timed"
TTL = 0.2


async def _redis_ms(raw: aioredis.Redis) -> int:
    seconds, micros = await raw.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def _wait_past(raw: aioredis.Redis, ttl: float) -> None:
    """Wait until ``ttl`` seconds (and a margin) have passed since now, by Redis TIME and
    by this host's clock."""
    margin_ms = int(ttl * 1000) + 50
    redis_deadline = await _redis_ms(raw) + margin_ms
    local_deadline = time.time_ns() // 1_000_000 + margin_ms

    async def past() -> bool:
        return (
            await _redis_ms(raw) > redis_deadline and time.time_ns() // 1_000_000 > local_deadline
        )

    await wait_for(past, 10)


async def _counts(raw: aioredis.Redis, stats_key: str) -> dict[str, int]:
    """The counters of every worker of the engine, added up."""
    total: dict[str, int] = {}
    for data in (await raw.hgetall(stats_key)).values():
        for name, value in orjson.loads(data)["counts"].items():
            total[name] = total.get(name, 0) + int(value)
    return total


async def test_expired_messages_are_dead_lettered_not_run(
    client: Client, raw: aioredis.Redis, redis_url: str, prefix: str, tmp_path: Path
) -> None:
    client.bind(timed)
    keys = client.broker.keys("timed")
    ledger = Ledger(raw, prefix)
    expired: dict[str, tuple[int, str]] = {}  # message id -> (n, task)
    for n in range(0, 20):  # per-send TTL
        expired[await stamp.send_with(ttl=TTL)(n)] = (n, "stamp")
    for n in range(20, 40):  # the TTL the task declares
        expired[await fleeting.send(n)] = (n, "fleeting")
    for n in range(40, 60):  # controls: a long TTL, and none
        await stamp.send_with(ttl=60.0)(n)
        ledger.sent.add(n)
    for n in range(60, 80):
        await stamp.send(n)
        ledger.sent.add(n)
    await _wait_past(raw, max(TTL, FLEETING_TTL))

    log = tmp_path / "worker.log"
    proc = start_worker(APP, redis_url, prefix, "-c", "20", log=log)
    try:
        await wait_for(ledger.all_ran, 30)
        await wait_for(lambda: _dead_at_least(raw, keys.dead, len(expired)), 30)

        async def counted() -> bool:  # the worker writes its counters every second
            return (await _counts(raw, keys.stats)).get("dead_expired", 0) >= len(expired)

        await wait_for(counted, 30)
        assert proc.poll() is None, log.read_text()
        assert stop_workers([proc]) == [0], log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    report = await ledger.check()
    assert report.missing == set(), "the unexpired messages ran"
    assert report.unknown == set(), "no expired message ran"
    assert report.duplicates == 0
    dead = await raw.xrange(keys.dead)
    assert len(dead) == len(expired)
    for _, entry in dead:
        message_id = entry[b"message_id"].decode()
        n, task = expired.pop(message_id)
        assert entry[b"reason"] == b"expired"
        assert entry[b"task"] == task.encode()
        envelope = orjson.loads(entry[b"orig:envelope"])
        assert envelope["id"] == message_id
        assert envelope["body"]["args"] == [n]
    assert expired == {}, "each expired message was dead-lettered exactly once"
    for stream in keys.streams:
        assert await raw.xlen(stream) == 0
    counts = await _counts(raw, keys.stats)
    assert counts.get("dead_expired") == 40
    assert "expired_dropped" not in counts


async def _dead_at_least(raw: aioredis.Redis, dead_key: str, n: int) -> bool:
    return int(await raw.xlen(dead_key)) >= n


async def test_expired_messages_of_a_drop_task_are_dropped_and_counted(
    client: Client, raw: aioredis.Redis, redis_url: str, prefix: str, tmp_path: Path
) -> None:
    client.bind(timed)
    keys = client.broker.keys("timed")
    ledger = Ledger(raw, prefix)
    for n in range(30):
        await droppable.send_with(ttl=TTL)(n)
    for n in range(30, 40):  # controls without a TTL
        await droppable.send(n)
        ledger.sent.add(n)
    await _wait_past(raw, TTL)

    async def dropped() -> int:
        return (await _counts(raw, keys.stats)).get("expired_dropped", 0)

    async def all_dropped() -> bool:
        return await dropped() >= 30

    log = tmp_path / "worker.log"
    proc = start_worker(APP, redis_url, prefix, "-c", "20", log=log)
    try:
        await wait_for(ledger.all_ran, 30)
        await wait_for(all_dropped, 30)  # stats are written every second
        assert proc.poll() is None, log.read_text()
        assert stop_workers([proc]) == [0], log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    report = await ledger.check()
    assert report.missing == set(), "the unexpired messages ran"
    assert report.unknown == set(), "no expired message ran"
    assert report.duplicates == 0
    assert await dropped() == 30
    assert await raw.xlen(keys.dead) == 0, "dropped, not dead-lettered"
    for stream in keys.streams:
        assert await raw.xlen(stream) == 0, "dropped messages are acked and deleted"
    info = await client.broker.inspect("timed")
    assert sum(t.pending for t in info.tiers) == 0
