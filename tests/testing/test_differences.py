"""Every place where the in-memory bus differs from a real server, each shown on both
backends (docs/testing.md, "Differences from a server", lists them in this order); and
the lease scripts, which behave alike on both.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import fakeredis
import pytest
from redis.exceptions import ResponseError

from nautilus_tasks import BusConfig
from nautilus_tasks.broker.redis import RedisBroker
from nautilus_tasks.dlq import DeadLetters
from nautilus_tasks.embedded import EmbeddedServer
from nautilus_tasks.errors import BacklogFull, BusError, BusFull
from nautilus_tasks.message import Envelope, encode
from nautilus_tasks.priority import Priority
from nautilus_tasks.testing import TestBus
from tests.helpers import wait_for

from .apps import calls, explode, remind, shop

pytestmark = pytest.mark.nt_engines(shop)
PAYLOAD = encode(Envelope(id="m1", name="remind", body={"args": ["x"], "kwargs": {}}))


@pytest.fixture(autouse=True)
def _fresh_calls() -> None:
    calls.clear()


# 1. Script flags ------------------------------------------------------------------------


async def test_1_script_flags_run_as_a_comment_in_memory(
    nt_any_bus: TestBus, nt_backend: str
) -> None:
    """Our scripts start with ``#!lua flags=allow-oom``; plain fakeredis cannot compile
    that line, the test bus's fakeredis reads it as a comment."""
    script = "#!lua flags=allow-oom\nreturn 'ran'"
    assert await nt_any_bus.client.broker._redis.eval(script, 0) == b"ran"
    if nt_backend == "memory":
        with pytest.raises(ResponseError, match="near '#'"):
            await fakeredis.FakeAsyncRedis().eval(script, 0)


# 2. No memory limit ---------------------------------------------------------------------


@pytest.fixture
async def small_broker(
    nt_backend: str, tmp_path: Path, nt_any_bus: TestBus
) -> AsyncIterator[RedisBroker]:
    """A bus with maxmemory set: fakeredis accepts the setting; a server of this test's own
    (the setting would hurt the shared one) enforces it."""
    if nt_backend == "memory":
        broker = nt_any_bus.client.broker
        await broker._redis.config_set("maxmemory", "2mb")
        yield broker
        return
    server = EmbeddedServer(tmp_path / "small")
    server.start()
    broker = await RedisBroker.connect(BusConfig.from_url(server.url))
    await broker._redis.config_set("maxmemory-policy", "noeviction")
    await broker._redis.config_set("maxmemory", "2mb")
    try:
        yield broker
    finally:
        await broker.close()
        server.stop()


async def test_2_memory_is_not_limited_in_memory(
    small_broker: RedisBroker, nt_backend: str
) -> None:
    """fakeredis has no maxmemory: BusFull (OOM) never happens in memory."""
    big = b"x" * 512 * 1024

    async def fill() -> None:
        for _ in range(16):  # 8 MB, four times the limit
            await small_broker.enqueue("shop", Priority.NORMAL, big)

    if nt_backend == "memory":
        await fill()
    else:
        with pytest.raises(BusFull):
            await fill()


# 3. Server introspection ----------------------------------------------------------------


async def test_3_info_and_config_get_are_missing_in_memory(
    nt_any_bus: TestBus, nt_backend: str
) -> None:
    """fakeredis has no INFO nor CONFIG GET: no server version, no eviction-policy check."""
    broker = nt_any_bus.client.broker
    if nt_backend == "memory":
        with pytest.raises(BusError, match="unknown command 'info'"):
            await broker.server_version()
        assert await broker.config_get("maxmemory-policy") is None
    else:
        assert (await broker.server_version()).split()[0] in {"valkey", "redis"}
        assert await broker.config_get("maxmemory-policy") is not None


# 4. advance() ---------------------------------------------------------------------------


async def test_4_advance_moves_the_clock_in_memory_and_due_times_on_a_server(
    nt_any_bus: TestBus, nt_backend: str
) -> None:
    """In memory advance() moves Redis TIME, so an ETA set after it is judged by the moved
    clock; a server's TIME cannot move, so advance() moves the delayed messages instead,
    and only those already delayed."""
    redis = nt_any_bus.client.broker._redis
    before, _ = await redis.time()
    await nt_any_bus.advance(3600)
    after, _ = await redis.time()
    await remind.send_with(eta=time.time() + 1800)("an hour later, half an hour ago")
    await nt_any_bus.drain()
    if nt_backend == "memory":
        assert after - before >= 3600
        assert calls == [("remind", "an hour later, half an hour ago")]
    else:
        assert after - before < 3600
        assert calls == []


async def test_4_dead_letter_retention_by_age_follows_advance_in_memory_only(
    nt_any_bus: TestBus, nt_backend: str
) -> None:
    """trim_dead.lua takes its MINID from Redis TIME: in memory, after advance(3600) a
    dead letter written a moment ago is an hour old; a server's TIME did not move."""
    broker = nt_any_bus.client.broker
    await explode.send(1)
    await nt_any_bus.drain(raise_errors=False)
    assert await broker.trim_dead("shop", max_len=None, max_age_ms=600_000) == 0  # fresh
    await nt_any_bus.advance(3600)
    removed = await broker.trim_dead("shop", max_len=None, max_age_ms=600_000)
    left = await nt_any_bus.dead_letters(shop)
    if nt_backend == "memory":
        assert (removed, left) == (1, [])
    else:
        assert (removed, [d.reason for d in left]) == (0, ["failed"])


async def test_4_only_time_moves_in_memory(nt_any_bus: TestBus, nt_backend: str) -> None:
    """advance() moves TIME alone: stream auto-ids, XPENDING idle times and key expiry keep
    the real clock on both backends, so in memory they drift from TIME by the moved time
    (an hour here, against the moments this test takes)."""
    broker = nt_any_bus.client.broker
    redis = broker._redis
    await broker.ensure_groups("shop", "probe")
    await broker.enqueue("shop", Priority.NORMAL, PAYLOAD)
    [held] = await broker.read("shop", "probe", 10, [0, 0, 0], 0)
    ttl_key = f"{nt_any_bus.prefix}:probe:ttl"
    await redis.set(ttl_key, b"1", px=600_000)
    await nt_any_bus.advance(3600)
    seconds, micros = await redis.time()
    time_ms = seconds * 1000 + micros // 1000
    entry_id = await redis.xadd(f"{nt_any_bus.prefix}:probe:ids", {"x": "1"})
    id_ms = int(entry_id.split(b"-")[0])
    [pending] = await redis.xpending_range(
        broker.keys("shop").stream(Priority.NORMAL), "shop", min="-", max="+", count=10
    )
    assert pending["message_id"].decode() == held.entry_id
    assert pending["time_since_delivered"] < 1_800_000  # not aged by advance(): no lease ends
    assert await redis.exists(ttl_key) == 1  # not expired by advance()
    if nt_backend == "memory":
        assert time_ms - id_ms > 1_800_000  # TIME is an hour ahead of the ids
    else:
        assert abs(time_ms - id_ms) < 1_800_000  # they stay together


# Alike on both: the lease scripts (XAUTOCLAIM, XCLAIM JUSTID, XPENDING) -------------------


async def test_lease_scripts_behave_alike(nt_any_bus: TestBus) -> None:
    broker = nt_any_bus.client.broker
    for consumer in ("a", "b"):
        await broker.ensure_groups("shop", consumer)
    await broker.enqueue("shop", Priority.HIGH, PAYLOAD)
    [held] = await broker.read("shop", "a", 10, [0, 0, 0], 0)
    assert await broker.renew("shop", "a", {Priority.HIGH: [held.entry_id]}) == ([], [])
    assert await broker.renew("shop", "b", {Priority.HIGH: [held.entry_id]}) == (
        [held.entry_id],
        [],
    )
    taken = await broker.reclaim(
        "shop", "b", Priority.HIGH, cursor="0-0", count=10, min_idle_ms=0,
        max_deliveries=5, now_ms=0,
    )  # fmt: skip
    assert [(d.entry_id, d.deliveries) for d in taken.deliveries] == [(held.entry_id, 2)]
    assert await broker.owned_pending("shop", "a") == {p: [] for p in Priority}
    assert await broker.release("shop", "b") is False  # b holds the entry
    assert await broker.requeue("shop", "b", {Priority.HIGH: [held.entry_id]}) == 1
    [again] = await broker.read("shop", "a", 10, [0, 0, 0], 0)
    poisoned = await broker.reclaim(
        "shop", "b", Priority.HIGH, cursor="0-0", count=10, min_idle_ms=0,
        max_deliveries=1, now_ms=0,
    )  # fmt: skip
    assert poisoned.poisoned == [again.entry_id]
    assert [d.reason for d in await nt_any_bus.dead_letters(shop)] == ["poison"]
    assert await broker.release("shop", "b") is True


async def test_dead_letter_and_backlog_scripts_behave_alike(nt_any_bus: TestBus) -> None:
    """replay.lua, XTRIM MAXLEN / MINID (trim_dead.lua), enqueue.lua's XLEN bound."""
    broker = nt_any_bus.client.broker
    for x in range(3):
        await explode.send(x)
    await nt_any_bus.drain(raise_errors=False)
    letters = await nt_any_bus.dead_letters(shop)
    assert [letter.reason for letter in letters] == ["failed"] * 3
    dead = DeadLetters(nt_any_bus.client)
    assert await dead.replay("shop", ids=[letters[0].id]) == 1
    assert await dead.replay("shop", ids=[letters[0].id]) == 0  # gone: replayed once
    assert await broker.trim_dead("shop", max_len=1, max_age_ms=None) == 1
    await nt_any_bus.drain(raise_errors=False)  # the replayed message fails again
    assert len(await nt_any_bus.dead_letters(shop)) == 2
    removed, deadline = 0, time.monotonic() + 5
    while removed < 2 and time.monotonic() < deadline:  # by age: once TIME passed their ms
        removed += await broker.trim_dead("shop", max_len=None, max_age_ms=0)
        await asyncio.sleep(0.002)
    assert removed == 2
    await broker.enqueue_bounded("shop", Priority.LOW, PAYLOAD, max_backlog=1)
    with pytest.raises(BacklogFull):
        await broker.enqueue_bounded("shop", Priority.LOW, PAYLOAD, max_backlog=1)


async def test_blocking_group_reads_behave_alike(nt_any_bus: TestBus, nt_backend: str) -> None:
    """No longer a difference: since fakeredis 2.41 an ``XREADGROUP ... BLOCK`` waits in
    memory too, and a send from the same event loop wakes it, as on a server."""
    broker = nt_any_bus.client.broker
    await broker.ensure_groups("shop", "probe")
    reading = asyncio.create_task(broker.read("shop", "probe", 10, [0, 0, 0], block_ms=20_000))
    if nt_backend == "server":

        async def blocked() -> bool:  # the read is parked in the server
            info = await broker._redis.info("clients")
            return int(info["blocked_clients"]) >= 1

        await wait_for(blocked, 10)
    else:  # no INFO in memory (difference 3 above): a read answered at once would be done by now
        done, _ = await asyncio.wait({reading}, timeout=0.5)
        assert not done, "the blocking read returned before anything was sent"
    assert not reading.done()
    await broker.enqueue("shop", Priority.NORMAL, PAYLOAD)
    got = await asyncio.wait_for(reading, 10)
    assert [d.fields[b"envelope"] for d in got] == [PAYLOAD]  # woken by it
