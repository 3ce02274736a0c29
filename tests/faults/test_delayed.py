"""Delayed tasks promoted by several worker processes at once: each runs once, never early.

Acceptance test 10 of the reliability issue. Due times come from Redis TIME: the
schedule script adds the countdown to the TIME it reads, and the promote script moves
only what is due by TIME. So the Redis TIME read just before a send, plus the
countdown, is a lower bound of the due time, and the handler (which reads TIME as it
starts) must never see an earlier TIME than that.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
import redis.asyncio as aioredis

from nautilus_tasks import Client
from tests.apps.timed import stamp, timed
from tests.helpers import wait_for
from tests.ledger import Ledger
from tests.procs import start_worker, stop_workers

pytestmark = pytest.mark.integration

APP = "tests.apps.timed:timed"
BATCH = 200


async def _redis_us(raw: aioredis.Redis) -> int:
    """Redis TIME in microseconds."""
    seconds, micros = await raw.time()
    return int(seconds) * 1_000_000 + int(micros)


async def _starts(raw: aioredis.Redis, prefix: str) -> dict[int, list[int]]:
    """Each task's start times (Redis TIME, epoch ms, floored), from the handler's log."""
    out: dict[int, list[int]] = {}
    for item in await raw.lrange(f"{prefix}:test:starts", 0, -1):
        n, us = item.decode().split(":")
        out.setdefault(int(n), []).append(int(us) // 1000)
    return out


def _start_workers(
    count: int, redis_url: str, prefix: str, log: Path
) -> list[subprocess.Popen[bytes]]:
    return [start_worker(APP, redis_url, prefix, "-c", "50", log=log) for _ in range(count)]


async def _all_joined(raw: aioredis.Redis, workers_key: str, count: int) -> bool:
    return int(await raw.zcard(workers_key)) >= count


async def _promoted(raw: aioredis.Redis, stats_key: str) -> list[int]:
    """Each worker's ``promoted`` counter, from the stats it wrote as it stopped."""
    return [
        int(orjson.loads(data)["counts"].get("promoted", 0))
        for data in (await raw.hgetall(stats_key)).values()
    ]


def _kill(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def _check_ran_once_not_early(
    raw: aioredis.Redis, prefix: str, ledger: Ledger, due_ms: dict[int, int]
) -> None:
    report = await ledger.check()
    assert report.missing == set(), "every delayed task ran"
    assert report.unknown == set(), "nothing ran that was never sent"
    assert report.duplicates == 0, "each delayed message was promoted and run exactly once"
    starts = await _starts(raw, prefix)
    assert set(starts) == set(due_ms)
    early = {n: (times, due_ms[n]) for n, times in starts.items() if min(times) < due_ms[n]}
    assert early == {}, "ran before the due time by Redis TIME (run ms, due ms)"


async def test_countdowns_promoted_by_four_workers_run_once_never_early(
    client: Client, raw: aioredis.Redis, redis_url: str, prefix: str, tmp_path: Path
) -> None:
    total = 2000
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    print(f"countdown seed {seed}")
    client.bind(timed)
    keys = client.broker.keys("timed")
    ledger = Ledger(raw, prefix)
    due_ms: dict[int, int] = {}
    log = tmp_path / "worker.log"
    procs = _start_workers(4, redis_url, prefix, log)
    try:
        await wait_for(lambda: _all_joined(raw, keys.workers, 4), 30)
        for start in range(0, total, BATCH):
            countdowns = {n: rng.randrange(0, 3001) / 1000 for n in range(start, start + BATCH)}
            before_ms = await _redis_us(raw) // 1000
            await asyncio.gather(*(stamp.send_with(countdown=c)(n) for n, c in countdowns.items()))
            ledger.sent.update(countdowns)
            for n, c in countdowns.items():
                # the client sends int(countdown * 1000) ms; the script adds it to TIME
                due_ms[n] = before_ms + int(c * 1000)
        await wait_for(ledger.all_ran, 60)
        assert all(p.poll() is None for p in procs), log.read_text()
        assert all(c == 0 for c in stop_workers(procs)), log.read_text()
    finally:
        _kill(procs)

    await _check_ran_once_not_early(raw, prefix, ledger, due_ms)
    assert await raw.zcard(keys.delayed) == 0
    for stream in keys.streams:
        assert await raw.xlen(stream) == 0
    promoted = await _promoted(raw, keys.stats)
    print(f"promoted by each worker: {promoted}")
    assert sum(promoted) == total, "each delayed message was moved exactly once"
    assert sum(1 for n in promoted if n) >= 2, "the workers promoted at once, not one alone"


async def test_eta_promoted_by_two_workers_runs_once_never_early(
    client: Client, raw: aioredis.Redis, redis_url: str, prefix: str, tmp_path: Path
) -> None:
    total = 300
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    print(f"eta seed {seed}")
    client.bind(timed)
    keys = client.broker.keys("timed")
    ledger = Ledger(raw, prefix)
    log = tmp_path / "worker.log"
    procs = _start_workers(2, redis_url, prefix, log)
    try:
        await wait_for(lambda: _all_joined(raw, keys.workers, 2), 30)
        now_ms = await _redis_us(raw) // 1000
        # whole milliseconds, some already past (due at once), most up to 2 s ahead
        due_ms = {n: now_ms + rng.randrange(-500, 2001) for n in range(total)}
        await asyncio.gather(
            *(
                stamp.send_with(eta=datetime.fromtimestamp(ms / 1000, UTC))(n)
                for n, ms in due_ms.items()
            )
        )
        ledger.sent.update(due_ms)
        await wait_for(ledger.all_ran, 60)
        assert all(p.poll() is None for p in procs), log.read_text()
        assert all(c == 0 for c in stop_workers(procs)), log.read_text()
    finally:
        _kill(procs)

    await _check_ran_once_not_early(raw, prefix, ledger, due_ms)
    assert await raw.zcard(keys.delayed) == 0


async def test_workers_killed_while_they_promote_lose_nothing(
    client: Client, raw: aioredis.Redis, redis_url: str, prefix: str, tmp_path: Path
) -> None:
    """Two of four promoting workers get SIGKILL while the delayed set drains. A promotion is
    one script, so a kill lands before or after it, never inside: every message is moved
    once; what the killed workers held is reclaimed after the lease. Only messages they had
    started may run twice, at most what they could hold."""
    total, concurrency, lease = 1000, 50, 1.0
    rng = random.Random()
    client.bind(timed)
    keys = client.broker.keys("timed")
    ledger = Ledger(raw, prefix)
    log = tmp_path / "worker.log"
    args = ("-c", str(concurrency), "--lease", str(lease))
    procs = [start_worker(APP, redis_url, prefix, *args, log=log) for _ in range(4)]
    try:
        await wait_for(lambda: _all_joined(raw, keys.workers, 4), 30)
        countdowns = {n: rng.randrange(0, 3001) / 1000 for n in range(total)}
        await asyncio.gather(*(stamp.send_with(countdown=c)(n) for n, c in countdowns.items()))
        ledger.sent.update(countdowns)

        async def a_quarter_ran() -> bool:
            return await ledger.executed_count() >= total // 4

        await wait_for(a_quarter_ran, 30)
        assert await raw.zcard(keys.delayed) > 0, "the delayed set was still draining"
        _kill(procs[:2])
        await wait_for(ledger.all_ran, 60)
        assert all(c == 0 for c in stop_workers(procs[2:])), log.read_text()
    finally:
        _kill(procs)

    report = await ledger.check()
    assert report.missing == set(), "nothing promoted (or not yet) was lost with the killed"
    assert report.unknown == set()
    held = concurrency + concurrency // 4  # running plus prefetched, per killed worker
    assert report.duplicates <= 2 * (held + max(1, held // 10)), report
    assert await raw.zcard(keys.delayed) == 0
    for stream in keys.streams:
        assert await raw.xlen(stream) == 0
