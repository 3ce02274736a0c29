"""The worker runtime: its startup line, the size of its sync thread pool, and how few
commands it sends in steady state (reads and acks are batched, not one per message)."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections import Counter
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.asyncio.client import Monitor

from nautilus_tasks import Client, Engine, WorkerConfig
from tests.apps.threads import block, threads
from tests.helpers import running_worker, wait_for
from tests.procs import stop_workers, worker_process

pytestmark = pytest.mark.integration

THREADS_APP = "tests.apps.threads:threads"


def _startup_line(text: str) -> str:
    lines = [line for line in text.splitlines() if "of engine 'threads'" in line]
    assert lines, text
    return lines[0]


async def test_startup_line_names_server_engine_streams_and_concurrency(
    client: Client, redis_url: str, prefix: str, tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    with worker_process(THREADS_APP, redis_url, prefix, "-c", "7", log=log) as proc:
        await wait_for(lambda: "of engine 'threads'" in log.read_text(), 60)
        assert stop_workers([proc]) == [0], log.read_text()
    line = _startup_line(log.read_text())
    assert f"at {redis_url}," in line, line
    assert "concurrency 7," in line, line
    version = await client.broker.server_version()
    assert version in line, (version, line)
    streams = client.broker.keys("threads").streams
    assert f"streams {' '.join(streams)}," in line, (streams, line)
    assert [s.rpartition(":")[2] for s in streams] == ["critical", "high", "normal", "low"]
    assert all(s.startswith(f"{prefix}:{{threads}}:q:") for s in streams), streams


async def test_threads_option_bounds_the_sync_handlers_of_a_worker_process(
    client: Client, raw: aioredis.Redis, redis_url: str, prefix: str, tmp_path: Path
) -> None:
    """``--threads 2``: six blocking sync handlers, concurrency 10. The pool never grows
    past 2 threads: each handler records the pool's size as it starts. With a larger pool,
    the third would start on a third thread while the first two still wait for tokens."""
    client.bind(threads)
    await client.send_many(block, [((n,), {}) for n in range(6)])
    log = tmp_path / "worker.log"
    options = ("-c", "10", "--threads", "2")
    with worker_process(THREADS_APP, redis_url, prefix, *options, log=log) as proc:
        await wait_for(lambda: _llen_at_least(raw, f"{prefix}:test:entries", 2), 60)
        await raw.rpush(f"{prefix}:test:gate", *["go"] * 6)
        await wait_for(lambda: _hlen_at_least(raw, f"{prefix}:test:runs", 6), 60)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text()
    entries = [e.decode().split(":") for e in await raw.lrange(f"{prefix}:test:entries", 0, -1)]
    assert sorted(int(n) for n, _ in entries) == list(range(6)), entries
    assert max(int(size) for _, size in entries) == 2, entries
    runs = await raw.hgetall(f"{prefix}:test:runs")
    assert {int(k): int(v) for k, v in runs.items()} == dict.fromkeys(range(6), 1)


async def _llen_at_least(raw: aioredis.Redis, key: str, n: int) -> bool:
    return int(await raw.llen(key)) >= n


async def _hlen_at_least(raw: aioredis.Redis, key: str, n: int) -> bool:
    return int(await raw.hlen(key)) >= n


@pytest.mark.parametrize("size", [2, 3])
async def test_sync_threads_bounds_how_many_sync_handlers_run_at_once(
    client: Client, size: int
) -> None:
    """Six blocking sync handlers, concurrency 10: ``size`` run at once, in a pool of
    ``size`` threads, and all six complete once they are let go."""
    engine = Engine("pool")
    lock = threading.Lock()
    release = threading.Event()
    state = {"running": 0, "peak": 0, "entered": 0}
    pools: list[int] = []
    done: list[int] = []

    @engine.task
    def hold(n: int) -> None:
        with lock:
            state["running"] += 1
            state["entered"] += 1
            state["peak"] = max(state["peak"], state["running"])
            pools.append(pool_threads())
        release.wait(60)
        with lock:
            state["running"] -= 1
            done.append(n)

    client.bind(engine)
    await client.send_many(hold, [((n,), {}) for n in range(6)])
    old_threads = {t.ident for t in threading.enumerate()}  # another pool's, if any is left

    def pool_threads() -> int:
        return sum(
            t.name.startswith("nt-sync") and t.ident not in old_threads
            for t in threading.enumerate()
        )

    config = WorkerConfig(concurrency=10, sync_threads=size, grace=5)
    try:
        async with running_worker(engine, client, config) as worker:
            # all six are handed to the pool (a slot submits in the same step it takes a
            # message) while `size` of them hold their threads
            await wait_for(lambda: len(worker.running) == 6 and state["entered"] == size, 60)
            assert pool_threads() == size
            release.set()
            await wait_for(lambda: len(done) == 6, 60)
    finally:
        release.set()
    assert sorted(done) == list(range(6))
    assert state["peak"] == size and max(pools) == size, (state, pools)


async def test_steady_state_sends_far_fewer_commands_than_messages(
    client: Client, redis_url: str
) -> None:
    """2,000 no-op tasks through one worker (concurrency 100). MONITOR shows every command
    a client sent (those a script runs are marked ``lua``, and are not round trips): the
    worker's reads, ack scripts, lease renewals, stats and the rest add up to well under
    one per message, because a read fetches up to the free room and acks are batched."""
    total = 2000
    engine = Engine("steady")
    ran: list[int] = []
    finished = asyncio.Event()

    @engine.task
    async def noop(n: int) -> None:
        ran.append(n)
        if len(ran) == total:
            finished.set()

    client.bind(engine)
    for start in range(0, total, 500):
        await client.send_many(noop, [((n,), {}) for n in range(start, start + 500)])
    marker = f"end-of-{engine.name}-{id(ran)}"
    watcher = aioredis.Redis.from_url(redis_url)
    try:
        async with watcher.monitor() as monitor:
            sent = asyncio.create_task(_client_commands(monitor, marker))
            async with running_worker(engine, client, WorkerConfig(concurrency=100, grace=5)):
                await asyncio.wait_for(finished.wait(), 60)
            await client.broker.server_version()  # any command; then the marker
            async with aioredis.Redis.from_url(redis_url) as other:
                await other.echo(marker)
            commands = await asyncio.wait_for(sent, 60)
    finally:
        await watcher.aclose()
    assert sorted(ran) == list(range(total))
    assert commands["EVALSHA"] > 0, commands  # the priority reads and the ack batches
    assert sum(commands.values()) < total / 4, commands


async def _client_commands(monitor: Monitor, marker: str) -> Counter[str]:
    """Commands sent by clients (not run by scripts), by name, until ``ECHO marker``."""
    seen: Counter[str] = Counter()
    while True:
        info = await monitor.next_command()
        name = info["command"].partition(" ")[0].upper()
        if name == "ECHO" and marker in info["command"]:
            return seen
        if info["client_type"] != "lua":
            seen[name] += 1
