"""The grace period of a real worker process, with async handlers that would never end.

docs/operations.md, "Graceful shutdown": handlers still running when ``--grace`` is over
are cancelled (an async one gets CancelledError) and every entry the worker holds is handed
back to the tail of its stream; the worker exits 0. A new worker then runs them all.
"""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from nautilus_tasks import Client, WorkerConfig
from tests.apps.graceful import graceful, linger
from tests.helpers import wait_for
from tests.procs import stop_workers, worker_process

pytestmark = pytest.mark.integration

APP = "tests.apps.graceful:graceful"
CONCURRENCY, TOTAL = 10, 15
HELD = WorkerConfig(concurrency=CONCURRENCY).capacity
"""What the worker holds once full: 10 running, 2 prefetched (the other 3 stay queued)."""
EXIT_WITHIN = 20.0
"""Seconds the stop may take: the 1 s grace and a wide margin, yet under the default grace
(30 s), so a worker that ignored ``--grace`` fails; the handlers alone would wait 600 s."""


async def _counts(raw: aioredis.Redis, prefix: str, name: str) -> dict[int, int]:
    data = await raw.hgetall(f"{prefix}:test:{name}")
    return {int(k): int(v) for k, v in data.items()}


async def _totals(client: Client) -> tuple[int, int, int]:
    """Entries in the engine's streams, pending entries, consumers (over the tiers)."""
    info = await client.broker.inspect("graceful")
    return (
        sum(t.length for t in info.tiers),
        sum(t.pending for t in info.tiers),
        max(t.consumers for t in info.tiers),
    )


async def test_handlers_past_the_grace_are_cancelled_handed_back_and_run_by_a_new_worker(
    client: Client, raw: aioredis.Redis, redis_url: str, prefix: str, tmp_path: Path
) -> None:
    client.bind(graceful)
    await client.send_many(linger, [((n,), {}) for n in range(TOTAL)])
    log = tmp_path / "worker.log"
    options = ("-c", str(CONCURRENCY), "--grace", "1")

    async def full() -> bool:
        starts = await _counts(raw, prefix, "starts")
        return len(starts) == CONCURRENCY and (await _totals(client))[1] == HELD

    with worker_process(APP, redis_url, prefix, *options, log=log) as first:
        await wait_for(full, 60)
        first.send_signal(signal.SIGTERM)
        assert first.wait(EXIT_WITHIN) == 0, log.read_text()
    text = log.read_text()
    assert f"grace period over: {CONCURRENCY} running tasks cancelled" in text, text
    handed = re.search(r"handed back (\d+) held, unfinished messages of graceful", text)
    assert handed is not None and int(handed[1]) == HELD, text
    # none finished; every entry is back in its stream, none pending, the consumer gone
    assert await _counts(raw, prefix, "runs") == {}
    assert await _totals(client) == (TOTAL, 0, 0)
    await raw.set(f"{prefix}:test:finish", 1)
    with worker_process(APP, redis_url, prefix, *options, log=log) as second:
        await wait_for(lambda: _all_ran(raw, prefix), 60)
        assert stop_workers([second]) == [0], log.read_text()
    assert await _counts(raw, prefix, "runs") == dict.fromkeys(range(TOTAL), 1)
    starts = await _counts(raw, prefix, "starts")
    assert sum(starts.values()) == TOTAL + CONCURRENCY  # the cancelled ten started twice
    assert await _totals(client) == (0, 0, 0)  # acked entries are deleted


async def _all_ran(raw: aioredis.Redis, prefix: str) -> bool:
    return int(await raw.hlen(f"{prefix}:test:runs")) >= TOTAL
