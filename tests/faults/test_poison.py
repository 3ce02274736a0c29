"""A poison message (its handler kills the worker process) is dead-lettered, once.

Acceptance test 4 of the reliability issue. The handler of ``crash`` calls
``os._exit(1)``; each time the worker dies the test starts a new one. With
``--max-deliveries 3 --lease 1`` the entry is delivered three times (three starts,
three dead workers), and the fourth delivery, by XAUTOCLAIM in the reclaim script,
dead-letters it as ``poison`` without running it. The 200 good tasks around it all run.
"""

from __future__ import annotations

import functools
import subprocess
import time
from pathlib import Path

import orjson
import pytest
import redis.asyncio as aioredis

from nautilus_tasks import Client
from tests.apps.poison import crash, good, poison
from tests.helpers import wait_for
from tests.ledger import Ledger
from tests.procs import start_worker, stop_workers

pytestmark = pytest.mark.integration

APP = "tests.apps.poison:poison"
MAX_DELIVERIES = 3
CONCURRENCY = 4
GOOD = 200
Calls = list[tuple[tuple[int, float], dict[str, object]]]
WORKER_ARGS = (
    *("--lease", "1", "--max-deliveries", str(MAX_DELIVERIES)),
    *("-c", str(CONCURRENCY), "--prefetch", "0", "--grace", "10"),
)


async def test_poison_task_is_dead_lettered_once_and_the_rest_complete(
    client: Client, raw: aioredis.Redis, redis_url: str, prefix: str, tmp_path: Path
) -> None:
    client.bind(poison)
    keys = client.broker.keys("poison")
    ledger = Ledger(raw, prefix)
    # the poison sits in the middle of the good work; good tasks take a little time so
    # that some are in flight (and unacked) when a worker dies
    first: Calls = [((n, 0.02), {}) for n in range(GOOD // 2)]
    await client.send_many(good, first)
    ledger.sent.update(range(GOOD // 2))
    poison_id = await crash.send(-1)
    second: Calls = [((n, 0.02), {}) for n in range(GOOD // 2, GOOD)]
    await client.send_many(good, second)
    ledger.sent.update(range(GOOD // 2, GOOD))

    async def dead_letters() -> int:
        return int(await raw.xlen(keys.dead))

    async def exited_or_dead(proc: subprocess.Popen[bytes]) -> bool:
        return proc.poll() is not None or await dead_letters() > 0

    log = tmp_path / "worker.log"
    exits: list[int] = []
    proc = start_worker(APP, redis_url, prefix, *WORKER_ARGS, log=log)
    try:
        deadline = time.monotonic() + 60
        while await dead_letters() == 0:
            assert time.monotonic() < deadline, f"no dead letter after {exits=}"
            assert len(exits) <= MAX_DELIVERIES, f"too many crashes {exits=}: {log.read_text()}"
            await wait_for(functools.partial(exited_or_dead, proc), 30)
            if proc.poll() is not None:  # died on the poison: restart it
                exits.append(proc.wait())
                proc = start_worker(APP, redis_url, prefix, *WORKER_ARGS, log=log)
        # the worker that dead-lettered the poison is alive and finishes the good work
        await wait_for(ledger.all_ran, 60)
        assert proc.poll() is None, log.read_text()
        assert stop_workers([proc]) == [0], log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    assert exits == [1] * MAX_DELIVERIES, "each delivery of the poison killed its worker"
    assert int(await raw.get(f"{prefix}:test:crash_starts") or 0) == MAX_DELIVERIES
    seen = [int(d) for d in await raw.lrange(f"{prefix}:test:crash_deliveries", 0, -1)]
    assert seen == list(range(1, MAX_DELIVERIES + 1)), "deliveries counted by the PEL"

    [(_, dead)] = await raw.xrange(keys.dead)
    assert dead[b"reason"] == b"poison"
    assert dead[b"deliveries"] == str(MAX_DELIVERIES + 1).encode()
    assert dead[b"error_type"] == b"PoisonMessage"
    assert dead[b"origin"] == b"normal"
    envelope = orjson.loads(dead[b"orig:envelope"])
    assert envelope["id"] == poison_id
    assert envelope["name"] == "crash"

    report = await ledger.check()
    assert report.missing == set(), "every good task ran"
    assert report.unknown == set(), "nothing ran that was never sent"
    # A duplicate needs a crash between a handler's end and its ack: at most the other
    # slots of each of the three dying workers.
    assert report.duplicates <= MAX_DELIVERIES * (CONCURRENCY - 1), report
    print(f"poison: {report.duplicates} duplicate executions of good tasks over 3 crashes")

    for stream in keys.streams:
        assert await raw.xlen(stream) == 0, "everything was acked and deleted"
    info = await client.broker.inspect("poison")
    assert sum(t.pending for t in info.tiers) == 0
