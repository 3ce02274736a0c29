"""kill -9 of a busy worker, three times, during 5,000 tasks: nothing acknowledged is lost.

The documented duplicate window: a worker killed with SIGKILL leaves pending what it held,
running, prefetched, or finished but not yet acked (acks are batched every ~1 ms). After the
lease, the next worker reclaims those entries with XAUTOCLAIM and runs them again; those
that had already finished run twice. So the duplicates are at most
kills x (concurrency + prefetch), and nothing else may run twice.

The test checks that window exactly, too. Only one worker is alive at a time, so after each
kill it knows which messages the dead consumer still held (its pending entries) and which
of them that worker had already run (their execution count rose since the previous kill).
Each such message runs once more after the reclaim, and nothing else may run twice: the
duplicates must equal the sum of those counts.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from nautilus_tasks import Client
from tests.apps import slow_tools as tools
from tests.apps.slow import quick, slow
from tests.helpers import wait_for
from tests.ledger import Ledger

pytestmark = pytest.mark.integration

TOTAL = 5000
KILLS = 3
CONCURRENCY = 50
PREFETCH = 12
LEASE = 1.0
PAUSE = 0.02
"""Seconds of work per task: short, but long enough that 5,000 tasks outlast four workers
(the second one lives past the lease, to reclaim what the first left behind)."""
BATCH = 1000
"""Messages per ``send_many`` call; each call's messages are acknowledged when it returns."""
PROGRESS = (100, 800)
"""A worker is killed after it has run a random number of new tasks in this range (at least
the first, and fewer if that would pass its cap)."""
ROOM = 600
"""Messages kept for each later worker: kill i happens by TOTAL - 300 - ROOM * (kills left)
executions, so every kill hits a busy worker and the final worker has work left."""
RECLAIM_BEFORE_KILL = 1
"""The worker (by index) that is killed only after it has reclaimed entries that the
previously killed worker held, so that the kill can hit reclaimed entries again."""


@dataclass
class Kill:
    executed: int
    """Messages run at least once when the worker was killed."""
    held: int
    """Entries the dead consumer still held (pending): each is delivered again."""
    ran: int
    """Of those, messages the killed worker had already run: each runs exactly once more."""
    lived: float
    """Seconds between the start of the worker and its kill."""
    took: int
    """Entries of the previously killed worker that this one reclaimed before its kill."""


def _options() -> list[str]:
    return [
        "-c", str(CONCURRENCY), "--prefetch", str(PREFETCH), "--lease", str(LEASE),
        "--max-deliveries", "10", "--grace", "5",
    ]  # fmt: skip


async def test_kill9_three_times_loses_nothing_and_duplicates_stay_in_the_window(
    client: Client,
    raw: aioredis.Redis,
    redis_url: str,
    prefix: str,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    seed = int(os.environ.get("NT_FAULT_SEED") or random.randrange(2**32))
    rng = random.Random(seed)
    ledger = Ledger(raw, prefix)
    client.bind(slow)
    for start in range(0, TOTAL, BATCH):
        numbers = range(start, min(TOTAL, start + BATCH))
        await client.send_many(quick, [((n, PAUSE), {}) for n in numbers])
        ledger.sent.update(numbers)  # acknowledged: send_many returned

    log = tmp_path / "workers.log"
    kills: list[Kill] = []
    before: dict[int, int] = {}  # executions per message at the previous kill
    dead: str | None = None  # the consumer of the previously killed worker
    with tools.workers(redis_url, prefix) as group:
        for index in range(KILLS):
            cap = TOTAL - 300 - ROOM * (KILLS - 1 - index)
            at_start = await ledger.executed_count()
            proc = group.start(log, *_options())
            born = time.monotonic()
            if index == RECLAIM_BEFORE_KILL and dead is not None:
                # after the lease, XAUTOCLAIM takes over (some of) what the dead one held
                fewer = partial(_reclaimed_some, ledger, dead, kills[-1].held, cap)
                await wait_for(fewer, 30)
            wanted = await ledger.executed_count() + rng.randint(*PROGRESS)
            target = max(at_start + PROGRESS[0], min(wanted, cap))
            await wait_for(partial(_executed_at_least, ledger, target), 60)
            await tools.sigkill(proc)
            lived = time.monotonic() - born
            took = 0
            if dead is not None:
                took = kills[-1].held - len(await tools.held_by(raw, prefix, dead))
            dead = await tools.consumer_named(raw, prefix, proc.pid)
            held = await tools.held_by(raw, prefix, dead)
            now = await ledger.executions()
            ran = sum(1 for n in held if now.get(n, 0) > before.get(n, 0))
            kills.append(Kill(len(now), len(held), ran, lived, took))
            before = now
        final = group.start(log, *_options())
        await wait_for(ledger.all_ran, 60)
        # every entry acked and deleted: nothing can run again after the check below
        await wait_for(lambda: tools.settled(raw, prefix), 30)
        await tools.stop(final, log)
        final_stats = await tools.stats_of_pid(raw, prefix, final.pid)

    report = await ledger.check()
    runs = await ledger.executions()
    bound = KILLS * (CONCURRENCY + PREFETCH)
    explained = sum(k.ran for k in kills)
    print(
        f"\nkill -9 x{KILLS} during {TOTAL} tasks (seed {seed}): duplicates {report.duplicates}"
        f" (documented bound {bound}; explained by finished-but-unacked entries {explained});"
        f" most runs of one message {max(runs.values())};"
        f" reclaimed by the final worker {final_stats['reclaimed']}"
    )
    for i, k in enumerate(kills, 1):
        print(
            f"  kill {i}: after {k.lived:.2f}s, {k.executed} executed, {k.took} reclaimed from"
            f" the previous one; the dead consumer held {k.held}, of which {k.ran} had already run"
        )
    record_property("duplicates", report.duplicates)
    record_property("seed", seed)
    assert not report.missing, f"acknowledged sends lost: {sorted(report.missing)[:20]}"
    assert not report.unknown, f"ran but never sent: {sorted(report.unknown)[:20]}"
    assert report.duplicates <= bound, tools.tail(log)
    assert report.duplicates == explained, "only finished-but-unacked held entries run twice"
    assert max(runs.values()) <= 1 + KILLS
    assert all(k.executed < TOTAL for k in kills), "each kill hit a busy worker"
    # the last killed worker held work, so the final worker must have reclaimed it
    assert final_stats["reclaimed"] >= kills[-1].held > 0, tools.tail(log)
    assert int(await raw.xlen(tools.keys(prefix).dead)) == 0, "nothing was dead-lettered"


async def _executed_at_least(ledger: Ledger, n: int) -> bool:
    return await ledger.executed_count() >= n


async def _reclaimed_some(ledger: Ledger, consumer: str, held: int, cap: int) -> bool:
    """The dead ``consumer`` holds fewer than ``held`` entries now, or (should the live worker
    reclaim only when it has free capacity, late) the run reached its ``cap``."""
    if len(await tools.held_by(ledger.raw, ledger.prefix, consumer)) < held:
        return True
    return await ledger.executed_count() >= cap
