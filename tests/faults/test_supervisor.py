"""``worker --processes N``: children share the work, a crashed child is restarted."""

from __future__ import annotations

import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from nautilus_tasks import Client
from tests.apps.recorder import record, recorder
from tests.helpers import wait_for
from tests.procs import start_worker

pytestmark = pytest.mark.integration


async def test_two_processes_share_work_and_a_killed_child_is_replaced(
    client: Client, raw: aioredis.Redis, redis_url: str, prefix: str, tmp_path: Path
) -> None:
    log = tmp_path / "supervisor.log"
    sup = start_worker(
        "tests.apps.recorder:recorder", redis_url, prefix, "-p", "2", "-c", "10", log=log
    )
    try:
        workers_key = client.broker.keys("recorder").workers

        async def members() -> list[str]:
            return [m.decode() for m in await raw.zrange(workers_key, 0, -1)]

        await wait_for(lambda: _len_at_least(members, 2), 30)
        first = await members()
        victim = int(first[0].split("-")[-2])  # consumer names are host-pid-random
        os.kill(victim, signal.SIGKILL)
        await wait_for(lambda: b"restarting" in log.read_bytes(), 30)
        await wait_for(lambda: _len_at_least(members, 3), 30)  # a new consumer joined
        client.bind(recorder)
        await client.send_many(record, [((n,), {}) for n in range(200)])
        await wait_for(lambda: _runs_at_least(raw, prefix, 200), 60)
        sup.send_signal(signal.SIGTERM)
        assert sup.wait(60) == 0, log.read_text()
    finally:
        if sup.poll() is None:
            sup.kill()
    runs = await raw.hgetall(f"{prefix}:test:runs")
    assert len(runs) == 200
    assert "exited with -9; restarting" in log.read_text()


async def _len_at_least(members: Callable[[], Awaitable[list[str]]], n: int) -> bool:
    return len(await members()) >= n


async def _runs_at_least(raw: aioredis.Redis, prefix: str, n: int) -> bool:
    return int(await raw.hlen(f"{prefix}:test:runs")) >= n
