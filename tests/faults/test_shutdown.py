"""Graceful shutdown of a real worker process: SIGTERM with work in flight loses nothing."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from nautilus_tasks import Client
from tests.apps.recorder import record, recorder
from tests.helpers import wait_for
from tests.procs import start_worker

pytestmark = pytest.mark.integration

TOTAL = 2000


async def _runs(raw: aioredis.Redis, prefix: str) -> dict[int, int]:
    data = await raw.hgetall(f"{prefix}:test:runs")
    return {int(k): int(v) for k, v in data.items()}


async def _pending(raw: aioredis.Redis, client: Client) -> int:
    info = await client.broker.inspect("recorder")
    return sum(t.pending for t in info.tiers)


async def test_sigterm_with_100_in_flight_then_new_worker_runs_everything(
    client: Client, raw: aioredis.Redis, redis_url: str, prefix: str, tmp_path: Path
) -> None:
    client.bind(recorder)
    for start in range(0, TOTAL, 500):
        await client.send_many(record, [((n, 0.05), {}) for n in range(start, start + 500)])
    log = tmp_path / "worker.log"
    first = start_worker("tests.apps.recorder:recorder", redis_url, prefix, "-c", "100", log=log)
    try:
        # wait until the worker holds its full window: 100 running plus prefetched
        await wait_for(lambda: _pending(raw, client), 30)
        await wait_for(lambda: _in_flight_at_least(raw, client, prefix, 100), 30)
        first.send_signal(signal.SIGTERM)
        assert first.wait(60) == 0, log.read_text()
    finally:
        if first.poll() is None:
            first.kill()
    after_first = await _runs(raw, prefix)
    assert 0 < len(after_first) < TOTAL
    assert await _pending(raw, client) == 0  # in-flight finished, unstarted handed back
    second = start_worker("tests.apps.recorder:recorder", redis_url, prefix, "-c", "100", log=log)
    try:
        await wait_for(lambda: _count(raw, prefix, TOTAL), 120)
        second.send_signal(signal.SIGTERM)
        assert second.wait(60) == 0, log.read_text()
    finally:
        if second.poll() is None:
            second.kill()
    runs = await _runs(raw, prefix)
    assert set(runs) == set(range(TOTAL)), "every task ran"
    assert max(runs.values()) == 1, "a graceful stop runs nothing twice"
    for stream in client.broker.keys("recorder").streams:
        assert await raw.xlen(stream) == 0, "acked entries are deleted"


async def _in_flight_at_least(raw: aioredis.Redis, client: Client, prefix: str, n: int) -> bool:
    started = int(await raw.get(f"{prefix}:test:started") or 0)
    done = len(await raw.hkeys(f"{prefix}:test:runs"))
    return started - done >= n


async def _count(raw: aioredis.Redis, prefix: str, n: int) -> bool:
    return int(await raw.hlen(f"{prefix}:test:runs")) >= n


async def test_second_signal_exits_at_once_leaving_work_pending(
    client: Client, raw: aioredis.Redis, redis_url: str, prefix: str, tmp_path: Path
) -> None:
    client.bind(recorder)
    await client.send_many(record, [((n, 30.0), {}) for n in range(20)])
    log = tmp_path / "worker.log"
    proc = start_worker("tests.apps.recorder:recorder", redis_url, prefix, "-c", "10", log=log)
    try:
        await wait_for(lambda: _in_flight_at_least(raw, client, prefix, 10), 30)
        proc.send_signal(signal.SIGTERM)
        await wait_for(lambda: b"stopping gracefully" in log.read_bytes(), 30)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code != 0
    assert await _runs(raw, prefix) == {}
    # the ten that were running are still pending (not lost); nothing was acked
    assert await _pending(raw, client) >= 10
    total = sum([await raw.xlen(s) for s in client.broker.keys("recorder").streams])
    assert total == 20
