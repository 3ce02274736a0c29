"""A zombie worker: paused (SIGSTOP) mid-task past its lease, then resumed (SIGCONT).

Meanwhile a second worker, the rescuer, reclaims the entry and runs it. When the zombie comes
back (after the rescuer acked the entry, or while the rescuer still runs it), its ack (or,
when its handler raises, its retry or its dead-letter) must be refused: the scripts check
that this consumer still owns the entry. The entry ends acked exactly once, by the rescuer,
and nothing is scheduled to run again. In the ``reply`` variant the message is a request
(``hold.request(...)``): the requester gets exactly one reply, the rescuer's (the handler
returns its pid), and the zombie's reply, refused with its ack by ``finish.lua``, never
reaches the reply stream.

What the framework guarantees is about the entry: its ack, retry and dead-letter (and
replies, when they come) happen once, by the owner. A paused process cannot be kept from
finishing its own code once it resumes, so the zombie's handler body does finish, and any
side effect it has happens a second time: that is the documented duplicate window of a lost
lease (handlers are made idempotent with the stable message id). So the test records handler
completions (``P:test:runs``) apart from completion records, the engine's ``acked``
counters, which the framework raises only when its ownership-checked ack script succeeded.
"""

from __future__ import annotations

import asyncio
import re
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from nautilus_tasks import Client, Task
from tests.apps import slow_tools as tools
from tests.apps.slow import hold, hold_once, ready, slow
from tests.helpers import wait_for
from tests.ledger import Ledger

pytestmark = pytest.mark.integration

LEASE = 1.0


@dataclass(frozen=True)
class Variant:
    task: Task[Any, Any]
    fail: bool
    """The zombie's handler raises after it resumed (instead of finishing)."""
    refusal: str
    """What the zombie logs when the server refuses its outcome (a regular expression)."""
    counted: str
    """The zombie's counter of what it did before it tried to settle the entry."""
    request: bool = False
    """Sent with ``request(...)``: the outcome carries a reply to the test's client."""


VARIANTS = {
    "ack": Variant(
        hold, False, r"ack refused for 1 entries of slow: another consumer", "succeeded"
    ),
    "reply": Variant(
        hold, False, r"ack refused for 1 entries of slow: another consumer", "succeeded", True
    ),
    "retry": Variant(hold, True, r"retry of \S+ refused: another consumer", "failed"),
    "dead-letter": Variant(
        hold_once, True, r"ack refused for 1 entries of slow: another consumer", "failed"
    ),
}


ORDERS = ("after-rescue", "during-rescue")
"""When the zombie resumes: after the rescuer acked the entry (it is gone), or while the
rescuer still runs it (it is pending with another consumer: the ownership check decides)."""


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("name", list(VARIANTS))
async def test_zombie_cannot_settle_what_another_consumer_took_over(
    name: str,
    order: str,
    client: Client,
    raw: aioredis.Redis,
    redis_url: str,
    prefix: str,
    tmp_path: Path,
) -> None:
    variant = VARIANTS[name]
    during = order == "during-rescue"
    ledger = Ledger(raw, prefix)
    client.bind(slow)
    options = {"fail": variant.fail, "wait_later": during}
    answer: asyncio.Task[int] | None = None
    if variant.request:
        answer = asyncio.create_task(variant.task.request(0, **options, timeout=60))
    else:
        await client.send_many(variant.task, [((0,), options)])

    zombie_log, rescuer_log = tmp_path / "zombie.log", tmp_path / "rescuer.log"
    lease = ["--lease", str(LEASE)]
    with tools.workers(redis_url, prefix) as group:
        zombie = group.start(zombie_log, "-c", "1", "--prefetch", "0", *lease)
        # mid-task: the handler started in the zombie and waits at the gate
        await wait_for(lambda: _holder_is(raw, prefix, zombie.pid), 30)
        ledger.sent.add(0)  # it runs: the send (or request) was stored
        zombie.send_signal(signal.SIGSTOP)
        zombie_consumer = await tools.consumer_named(raw, prefix, zombie.pid)
        assert await tools.held_by(raw, prefix, zombie_consumer) == [0]

        # past the lease, the rescuer reclaims the entry (XAUTOCLAIM) and runs it
        rescuer = group.start(rescuer_log, "-c", "4", *lease)
        await wait_for(lambda: _started(raw, prefix, 2), 30)
        rescuer_consumer = await tools.consumer_named(raw, prefix, rescuer.pid)
        if not during:  # ... and acks it: the entry is gone before the zombie resumes
            await wait_for(ledger.all_ran, 30)
            await wait_for(lambda: tools.settled(raw, prefix), 30)
        assert zombie.poll() is None, "the zombie is still paused, not dead"

        zombie.send_signal(signal.SIGCONT)
        await ready(raw.rpush(_key(prefix, "gate"), "go"))
        await wait_for(lambda: re.search(variant.refusal, zombie_log.read_text()) is not None, 30)
        if during:
            # refused while the rescuer owns the entry: still pending there, untouched
            assert await tools.held_by(raw, prefix, rescuer_consumer) == [0]
            assert await tools.queued(raw, prefix) == 1
            await ready(raw.rpush(_key(prefix, "gate2"), "go"))
            await wait_for(lambda: tools.settled(raw, prefix), 30)
        await tools.stop(zombie, zombie_log)
        await tools.stop(rescuer, rescuer_log)
        zombie_stats = await tools.stats_of_pid(raw, prefix, zombie.pid)
        rescuer_stats = await tools.stats_of_pid(raw, prefix, rescuer.pid)

    print(f"\nzombie {name}, {order}: zombie {dict(zombie_stats)}, rescuer {dict(rescuer_stats)}")
    # two starts: the zombie's first delivery, then the rescuer's reclaimed second one
    assert await _starts(raw, prefix) == [f"{zombie.pid}:1", f"{rescuer.pid}:2"]

    # the zombie's outcome was refused and counted; it settled nothing
    assert zombie_stats[variant.counted] == 1, zombie_stats
    assert zombie_stats["ownership_lost"] == 1, zombie_stats
    for outcome in ("acked", "retried", "dead_failed", "reclaimed"):
        assert zombie_stats[outcome] == 0, (outcome, zombie_stats)

    # exactly one completion record: the rescuer's ack
    assert rescuer_stats["reclaimed"] == 1, rescuer_stats
    assert rescuer_stats["acked"] == 1, rescuer_stats
    everyone = await tools.stats(raw, prefix)
    assert sum(c["acked"] for c in everyone.values()) == 1, everyone

    # nothing left to run again: no entry, nothing pending, no delayed retry, no dead letter
    assert await tools.settled(raw, prefix)
    assert int(await raw.zcard(tools.keys(prefix).delayed)) == 0
    assert int(await raw.xlen(tools.keys(prefix).dead)) == 0

    # handler completions: the rescuer's, plus the zombie's body when it did not raise
    report = await ledger.check()
    assert not report.missing and not report.unknown
    assert report.duplicates == (0 if variant.fail else 1)
    if answer is not None:
        await _check_one_reply(client, raw, prefix, answer, rescuer.pid)


async def _check_one_reply(
    client: Client, raw: aioredis.Redis, prefix: str, answer: asyncio.Task[int], rescuer: int
) -> None:
    """The requester got the rescuer's reply, and no other reply was ever written: once both
    workers are gone, the client's reader has read (and deleted) everything in its reply
    stream, and a second reply would have been counted there as ``late``."""
    assert await asyncio.wait_for(answer, 30) == rescuer, "the reply came from the rescuer"
    replies = client.link_of(slow).replies
    stream = f"{prefix}:reply:{replies.client_id}"
    await wait_for(lambda: _empty(raw, stream), 30)
    assert replies.late == 0, "a second reply (the zombie's) reached the requester"


async def _empty(raw: aioredis.Redis, stream: str) -> bool:
    return int(await raw.xlen(stream)) == 0


async def _starts(raw: aioredis.Redis, prefix: str) -> list[str]:
    return [s.decode() for s in await ready(raw.lrange(_key(prefix, "starts"), 0, -1))]


async def _started(raw: aioredis.Redis, prefix: str, n: int) -> bool:
    return len(await _starts(raw, prefix)) >= n


def _key(prefix: str, name: str) -> str:
    """``tests.apps.common.key`` for this test's prefix (the test process has no NT_PREFIX)."""
    return f"{prefix}:test:{name}"


async def _holder_is(raw: aioredis.Redis, prefix: str, pid: int) -> bool:
    holder = await raw.get(_key(prefix, "holder"))
    return holder is not None and int(holder) == pid
