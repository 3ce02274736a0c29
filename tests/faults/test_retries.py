"""Retries with backoff, then the dead-letter stream, on a real worker process (issue 3, #5).

A task that always raises runs exactly 1 + retries times, each retry after a delay drawn
with full jitter under its cap, then lands in the DLQ with reason ``failed``; ``dlq
replay`` runs it again with attempts reset, and ``dlq purge`` removes it. Run times come
from Redis TIME, recorded by the handlers of ``tests/apps/flaky.py``; the delay of each
retry is the one the worker logs as it schedules it ("retrying in 0.37s"), and a retry
never runs before it (the retry script adds the delay to Redis TIME).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from nautilus_tasks import Client
from nautilus_tasks.dlq import DeadLetter, DeadLetters
from tests.apps.flaky import always_fails, asks_retry, fixable, flaky, picky, refuses
from tests.helpers import wait_for
from tests.procs import ROOT, start_worker

pytestmark = pytest.mark.integration

ROUNDING_MS = 10.0
"""The logged delays have two decimals (5 ms), and the retry script truncates to 1 ms."""
BASE, CAP = 0.2, 2.0
"""The backoff of ``always_fails``: the retry after run k waits U[0, min(CAP, BASE * 2**k)]."""
RETRIES = 3
MANY = 30
"""Always-failing messages of the growth test: each attempt k draws MANY delays, and all
of them stay under the previous attempt's cap with probability at most 2**-MANY."""


@pytest.fixture
async def worker(
    client: Client, redis_url: str, prefix: str, tmp_path: Path
) -> AsyncIterator[subprocess.Popen[bytes]]:
    """A worker process of the flaky engine with a 1 s lease; stopped with SIGTERM after."""
    client.bind(flaky)
    log = tmp_path / "worker.log"
    proc = start_worker("tests.apps.flaky:flaky", redis_url, prefix, "--lease", "1", log=log)
    try:
        yield proc
        assert proc.poll() is None, log.read_text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def cli(redis_url: str, prefix: str, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "NT_REDIS_URL": redis_url, "NT_PREFIX": prefix}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "nautilus_tasks", *args,
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def _runs(raw: aioredis.Redis, prefix: str, n: int) -> list[dict[str, Any]]:
    return [orjson.loads(r) for r in await raw.lrange(f"{prefix}:test:runs:{n}", 0, -1)]


async def _run_count(raw: aioredis.Redis, prefix: str, n: int, count: int) -> bool:
    return int(await raw.llen(f"{prefix}:test:runs:{n}")) >= count


async def _done(raw: aioredis.Redis, prefix: str) -> dict[int, int]:
    data = await raw.hgetall(f"{prefix}:test:done")
    return {int(k): int(v) for k, v in data.items()}


async def _dead(client: Client) -> list[DeadLetter]:
    return await DeadLetters(client).list("flaky", newest_first=False)


async def _dead_count(client: Client, n: int) -> bool:
    return int(await client.broker._redis.xlen(client.broker.keys("flaky").dead)) >= n


async def _settled(client: Client, raw: aioredis.Redis) -> bool:
    """Nothing of the engine is left to run: no stream entry, nothing delayed."""
    keys = client.broker.keys("flaky")
    lengths = [int(await raw.xlen(s)) for s in keys.streams]
    return sum(lengths) == 0 and int(await raw.zcard(keys.delayed)) == 0


_RETRYING = re.compile(
    r"task \S*\b(\w+) failed \(run (\d+) of \d+, message ([^)\s]+)\): .*?; retrying in ([\d.]+)s"
)


def _logged_delays(log: Path, task: str) -> dict[str, list[tuple[int, float]]]:
    """The worker's retry delays: message id -> (attempt that failed, seconds), in order."""
    out: dict[str, list[tuple[int, float]]] = {}
    for name, run, message_id, delay in _RETRYING.findall(log.read_text()):
        if name == task:
            out.setdefault(message_id, []).append((int(run) - 1, float(delay)))
    return out


def _cap(attempt: int) -> float:
    return min(CAP, BASE * 2**attempt)


def _check_backoff(runs: list[dict[str, Any]], delays: list[tuple[int, float]]) -> None:
    """Attempts 0, 1, 2... in order; the retry after attempt k was scheduled with a delay
    under its full-jitter cap, and did not run before that delay had passed."""
    assert [r["attempt"] for r in runs] == list(range(len(runs)))
    assert [k for k, _ in delays] == list(range(len(runs) - 1)), delays
    for (attempt, delay), (a, b) in zip(delays, pairwise(runs), strict=True):
        assert 0 <= delay <= _cap(attempt) + 0.005, (attempt, delay)
        assert b["at"] - a["at"] >= delay * 1000 - ROUNDING_MS, (attempt, delay, a, b)


async def test_always_failing_task_runs_four_times_then_dead_then_replay_then_purge(
    worker: subprocess.Popen[bytes], client: Client, raw: aioredis.Redis, redis_url: str,
    prefix: str, tmp_path: Path,
) -> None:  # fmt: skip
    log = tmp_path / "worker.log"
    message_id = await always_fails.send(1)
    await wait_for(lambda: _dead_count(client, 1), 30)
    await wait_for(lambda: _settled(client, raw))  # nothing left that could run again
    runs = await _runs(raw, prefix, 1)
    assert len(runs) == 4, runs
    assert {r["message_id"] for r in runs} == {message_id}
    _check_backoff(runs, _logged_delays(log, "always_fails")[message_id])
    [dead] = await _dead(client)
    assert (dead.reason, dead.task, dead.message_id) == ("failed", "always_fails", message_id)
    assert (dead.error_type, dead.error, dead.attempts) == ("Boom", "boom 1", 4)
    assert "Boom: boom 1" in dead.traceback
    assert dead.origin == "normal" and dead.envelope is not None
    assert dead.envelope["attempt"] == 3

    code, out, err = await cli(redis_url, prefix, "dlq", "replay", "flaky", dead.id)
    assert (code, out.strip()) == (0, "replayed 1"), err
    await wait_for(lambda: _run_count(raw, prefix, 1, 8), 30)  # attempts reset: 4 more runs
    await wait_for(lambda: _dead_count(client, 1), 30)
    await wait_for(lambda: _settled(client, raw))
    runs = await _runs(raw, prefix, 1)
    assert len(runs) == 8
    assert {r["message_id"] for r in runs} == {message_id}
    _check_backoff(runs[4:], _logged_delays(log, "always_fails")[message_id][3:])
    [again] = await _dead(client)
    assert again.id != dead.id and again.attempts == 4 and again.message_id == message_id

    code, out, err = await cli(redis_url, prefix, "dlq", "purge", "flaky", again.id)
    assert (code, out.strip()) == (0, "purged 1"), err
    assert await _dead(client) == []
    assert len(await _runs(raw, prefix, 1)) == 8


async def test_retry_delays_grow_with_the_attempt_under_full_jitter(
    worker: subprocess.Popen[bytes], client: Client, raw: aioredis.Redis, prefix: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    """Over MANY always-failing messages, the delays after attempt k all stay under
    min(CAP, BASE * 2**k), and some exceed the cap of attempt k - 1: the caps grow, so the
    worker gives the policy the right attempt (a fixed or first-attempt cap fails this)."""
    numbers = range(100, 100 + MANY)
    sent = await client.send_many(always_fails, [((n,), {}) for n in numbers])
    ids = dict(zip(sent, numbers, strict=True))
    await wait_for(lambda: _dead_count(client, MANY), 60)
    await wait_for(lambda: _settled(client, raw))
    logged = _logged_delays(tmp_path / "worker.log", "always_fails")
    assert logged.keys() == ids.keys()
    for message_id, n in ids.items():
        runs = await _runs(raw, prefix, n)
        assert len(runs) == 1 + RETRIES, runs
        _check_backoff(runs, logged[message_id])
    by_attempt = {k: [d[k][1] for d in logged.values()] for k in range(RETRIES)}
    print(f"\nlargest delay per attempt: {[max(v) for v in by_attempt.values()]}")
    for attempt in range(1, RETRIES):
        assert max(by_attempt[attempt]) > _cap(attempt - 1), (attempt, by_attempt[attempt])


async def test_replay_after_the_fix_succeeds(
    worker: subprocess.Popen[bytes], client: Client, raw: aioredis.Redis, redis_url: str,
    prefix: str,
) -> None:  # fmt: skip
    message_id = await fixable.send(2)
    await wait_for(lambda: _dead_count(client, 1), 30)
    [dead] = await _dead(client)
    assert (dead.reason, dead.error_type, dead.attempts) == ("failed", "RuntimeError", 2)
    await raw.set(f"{prefix}:test:fixed", 1)  # the fix is deployed
    code, out, err = await cli(redis_url, prefix, "dlq", "replay", "flaky", "--task", "fixable")
    assert (code, out.strip()) == (0, "replayed 1"), err
    await wait_for(lambda: _has_done(raw, prefix, 2), 30)
    assert (await _done(raw, prefix))[2] == 0  # a fresh first attempt
    runs = await _runs(raw, prefix, 2)
    assert [r["attempt"] for r in runs] == [0, 1, 0]
    assert {r["message_id"] for r in runs} == {message_id}
    assert await _dead(client) == []


async def _has_done(raw: aioredis.Redis, prefix: str, n: int) -> bool:
    return n in await _done(raw, prefix)


async def test_raise_retry_waits_at_least_its_delay(
    worker: subprocess.Popen[bytes], client: Client, raw: aioredis.Redis, prefix: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    first = await asks_retry.send(3, delay=0.5, until=2)  # two retries asked, then success
    await asks_retry.send(4, delay=0.1, until=99)  # asks more than its 3 retries
    await wait_for(lambda: _has_done(raw, prefix, 3), 30)
    await wait_for(lambda: _dead_count(client, 1), 30)
    runs = await _runs(raw, prefix, 3)
    # scheduled with the asked delay, not the backoff; due = Redis TIME at the retry (after
    # the run began) + delay, promoted by TIME: never earlier
    assert _logged_delays(tmp_path / "worker.log", "asks_retry")[first] == [(0, 0.5), (1, 0.5)]
    assert [r["attempt"] for r in runs] == [0, 1, 2]
    for a, b in pairwise(runs):
        assert b["at"] - a["at"] >= 500 - 2
    assert [r["attempt"] for r in await _runs(raw, prefix, 4)] == [0, 1, 2, 3]
    [dead] = await _dead(client)
    assert (dead.reason, dead.task, dead.error_type, dead.attempts) == (
        "failed", "asks_retry", "Retry", 4,
    )  # fmt: skip
    assert dead.error == "not yet (3)"


async def test_dont_retry_on_goes_straight_to_the_dlq(
    worker: subprocess.Popen[bytes], client: Client, raw: aioredis.Redis, prefix: str
) -> None:
    await refuses.send(5)
    await wait_for(lambda: _dead_count(client, 1), 30)
    await wait_for(lambda: _settled(client, raw))
    assert [r["attempt"] for r in await _runs(raw, prefix, 5)] == [0]
    [dead] = await _dead(client)
    assert (dead.reason, dead.task, dead.attempts) == ("failed", "refuses", 1)
    assert (dead.error_type, dead.error) == ("ValueError", "bad value 5")


async def test_retry_on_retries_only_its_types(
    worker: subprocess.Popen[bytes], client: Client, raw: aioredis.Redis, prefix: str
) -> None:
    await picky.send(6, "connection")
    await picky.send(7, "key")
    await wait_for(lambda: _has_done(raw, prefix, 6), 30)
    await wait_for(lambda: _dead_count(client, 1), 30)
    await wait_for(lambda: _settled(client, raw))
    assert (await _done(raw, prefix))[6] == 2
    assert [r["attempt"] for r in await _runs(raw, prefix, 6)] == [0, 1, 2]
    assert [r["attempt"] for r in await _runs(raw, prefix, 7)] == [0]
    [dead] = await _dead(client)
    assert (dead.task, dead.error_type, dead.attempts) == ("picky", "KeyError", 1)
    assert 7 not in await _done(raw, prefix)
