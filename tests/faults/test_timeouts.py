"""Per-task time limits (``timeout=``) on a real worker process (issue 3, time limits).

An async handler past its limit is cancelled: it sees the cancellation, never finishes, the
run counts as failed, is retried by its policy (``retries=1``), and then is dead-lettered as
``failed`` with ``TimeoutError``. A sync handler cannot be cancelled (docs/operations.md,
time limits): past the limit the worker stops waiting, the run counts as failed and is retried
while its thread is still busy, and the thread finishes its work in the background. A call
still waiting for a free thread when its limit passes never runs at all. The handlers of
``tests/apps/timeouts.py`` record each start, cancellation and finished body in Redis.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from contextlib import AbstractContextManager
from pathlib import Path

import orjson
import pytest
import redis.asyncio as aioredis

from nautilus_tasks import Client
from nautilus_tasks.broker.redis.keys import Keys
from nautilus_tasks.dlq import DeadLetter, DeadLetters
from tests.apps.timeouts import blocks, sleeps, timeouts
from tests.helpers import wait_for
from tests.procs import stop_workers, worker_process

pytestmark = pytest.mark.integration

APP = "tests.apps.timeouts:timeouts"
ENGINE = "timeouts"


def worker(
    url: str, prefix: str, log: Path, *options: str
) -> AbstractContextManager[subprocess.Popen[bytes]]:
    """A worker process of the timeouts engine, killed at the end if still running."""
    return worker_process(APP, url, prefix, "--lease", "5", *options, log=log)


def _key(prefix: str, name: str) -> str:
    return f"{prefix}:test:{name}"


async def _list(raw: aioredis.Redis, prefix: str, name: str) -> list[int]:
    return [int(v) for v in await raw.lrange(_key(prefix, name), 0, -1)]


async def _finished(raw: aioredis.Redis, prefix: str, n: int) -> int:
    return int(await raw.hget(_key(prefix, "finished"), str(n)) or 0)


async def _dead(client: Client) -> list[DeadLetter]:
    return await DeadLetters(client).list(ENGINE, newest_first=False)


async def _has_dead(raw: aioredis.Redis, prefix: str) -> bool:
    return int(await raw.xlen(Keys(prefix, ENGINE).dead)) >= 1


async def _settled(raw: aioredis.Redis, prefix: str) -> bool:
    """No entry left in the tier streams and nothing delayed: nothing can run again."""
    keys = Keys(prefix, ENGINE)
    lengths = [int(await raw.xlen(s)) for s in keys.streams]
    return sum(lengths) == 0 and int(await raw.zcard(keys.delayed)) == 0


async def _stats(raw: aioredis.Redis, prefix: str, pid: int) -> Counter[str]:
    """The final counters of worker ``pid`` (consumer names are host-pid-random)."""
    data = await raw.hgetall(Keys(prefix, ENGINE).stats)
    found = [v for k, v in data.items() if int(k.decode().split("-")[-2]) == pid]
    assert len(found) == 1, data
    return Counter({k: int(v) for k, v in orjson.loads(found[0])["counts"].items()})


def _check_dead(dead: DeadLetter, task: str, message_id: str) -> None:
    assert (dead.reason, dead.task, dead.message_id) == ("failed", task, message_id)
    assert (dead.error_type, dead.attempts) == ("TimeoutError", 2)
    assert "TimeoutError" in dead.traceback


def _check_counts(stats: Counter[str]) -> None:
    """Both runs counted as failures; the first retried, the second dead-lettered."""
    assert stats["failed"] == 2, stats
    assert stats["retried"] == 1, stats
    assert stats["dead_failed"] == 1, stats
    assert stats["succeeded"] == 0, stats


async def test_async_handler_past_its_timeout_is_cancelled_retried_then_dead(
    client: Client, raw: aioredis.Redis, redis_url: str, prefix: str, tmp_path: Path
) -> None:
    client.bind(timeouts)
    log = tmp_path / "worker.log"
    with worker(redis_url, prefix, log) as proc:
        message_id = await sleeps.send(1)
        await wait_for(lambda: _has_dead(raw, prefix), 30)
        await wait_for(lambda: _settled(raw, prefix), 30)
        assert stop_workers([proc]) == [0], log.read_text()
    [dead] = await _dead(client)
    _check_dead(dead, "sleeps", message_id)
    assert await _list(raw, prefix, "starts:1") == [0, 1], "1 + retries runs"
    cancelled = await _list(raw, prefix, "cancelled:1")
    assert cancelled == [0, 1], ("each run was cancelled", log.read_text())
    assert await _finished(raw, prefix, 1) == 0, "no run got past its sleep"
    _check_counts(await _stats(raw, prefix, proc.pid))


@pytest.mark.parametrize("threads", [8, 1])
async def test_sync_handler_past_its_timeout_fails_and_is_retried_while_its_thread_runs(
    threads: int, client: Client, raw: aioredis.Redis, redis_url: str, prefix: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    """With a free thread the retry starts while the first run still blocks its thread; with
    one thread, the retry waits for it, times out without having started, and never runs."""
    client.bind(timeouts)
    log = tmp_path / "worker.log"
    with worker(redis_url, prefix, log, "--threads", str(threads)) as proc:
        message_id = await blocks.send(2)
        await wait_for(lambda: _has_dead(raw, prefix), 30)
        await wait_for(lambda: _settled(raw, prefix), 30)
        started = await _list(raw, prefix, "starts:2")
        assert started == ([0, 1] if threads > 1 else [0]), started
        # both limits passed while every started thread was still blocked at the gate
        assert await _finished(raw, prefix, 2) == 0
        [dead] = await _dead(client)
        _check_dead(dead, "blocks", message_id)
        # the threads were not killed: opened, each finishes its work in the background
        await raw.rpush(_key(prefix, "gate"), *["go"] * len(started))
        await wait_for(lambda: _is_finished(raw, prefix, 2, len(started)), 30)
        assert stop_workers([proc]) == [0], log.read_text()
    assert await _list(raw, prefix, "starts:2") == started, "a timed-out queued call never ran"
    assert await _finished(raw, prefix, 2) == len(started)
    _check_counts(await _stats(raw, prefix, proc.pid))
    assert len(await _dead(client)) == 1


async def _is_finished(raw: aioredis.Redis, prefix: str, n: int, count: int) -> bool:
    return await _finished(raw, prefix, n) >= count
