"""The local fallback of requests, and replies refused to a consumer that lost its entry."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from nautilus_tasks import BusConfig, BusUnavailable, Client, Engine, Priority, current_message
from nautilus_tasks.broker.base import Delivery, Finish, Reply, StoreResult
from nautilus_tasks.broker.redis import RedisBroker
from nautilus_tasks.embedded import EmbeddedServer
from nautilus_tasks.message import now_ms
from tests.helpers import running_worker

pytestmark = pytest.mark.integration


def pricing() -> tuple[Engine, list[str]]:
    engine = Engine("pricing")
    where: list[str] = []

    @engine.task
    async def price(qty: float, px: float) -> float:
        where.append("worker" if current_message() is not None else "local")
        return qty * px

    return engine, where


async def test_fallback_runs_locally_when_no_worker_answers(client: Client) -> None:
    engine, where = pricing()
    price = engine.tasks["price"]
    client.bind(engine)
    assert await price.request(2, 3.5, timeout=0.2, fallback="local") == 7.0
    assert where == ["local"] and price.fallbacks == 1


async def test_fallback_is_not_used_when_the_bus_and_a_worker_answer(client: Client) -> None:
    engine, where = pricing()
    price = engine.tasks["price"]
    client.bind(engine)
    async with running_worker(engine, client):
        assert await price.request(2, 3.5, timeout=10, fallback="local") == 7.0
    assert where == ["worker"] and price.fallbacks == 0


async def test_fallback_runs_locally_when_the_bus_is_down(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine, where = pricing()
    price = engine.tasks["price"]
    server = EmbeddedServer(tmp_path)
    server.start()
    client = await Client.connect(BusConfig.from_url(server.url, prefix="fb"))
    client.bind(engine)
    server.stop()  # the bus goes away
    try:
        with pytest.raises(BusUnavailable):
            await price.request(1, 1.0, timeout=5)
        assert price.fallbacks == 0  # no fallback asked: none counted
        with caplog.at_level(logging.WARNING, logger="nautilus_tasks.task"):
            assert await price.request(2, 3.5, timeout=5, fallback="local") == 7.0
    finally:
        await client.close()
    assert where == ["local"] and price.fallbacks == 1
    [record] = [r for r in caplog.records if r.name == "nautilus_tasks.task"]
    assert record.levelno == logging.WARNING
    assert record.getMessage().startswith("request of pricing.price ran locally (fallback): ")


async def _taken_over(broker: RedisBroker) -> Delivery:
    """The one pricing entry, read by "zombie" and then taken over by "rescuer" (as if the
    zombie had been paused past its lease)."""
    [held] = await broker.read("pricing", "zombie", 1, (0, 0, 0), block_ms=0)
    step = await broker.reclaim(
        "pricing", "rescuer", Priority.NORMAL, cursor="0-0", count=10, min_idle_ms=0,
        max_deliveries=5, now_ms=now_ms(),
    )  # fmt: skip
    assert [d.entry_id for d in step.deliveries] == [held.entry_id]
    return held


async def test_a_consumer_that_lost_its_entry_cannot_reply(
    client: Client, raw: aioredis.Redis, prefix: str
) -> None:
    engine, _ = pricing()
    client.bind(engine)
    broker = client.broker
    await broker.ensure_groups("pricing", "zombie")
    await engine.tasks["price"].send(1, 1.0)
    held = await _taken_over(broker)
    reply = Reply("requester-1", b'{"v":1,"id":"r","kind":"reply","name":"price"}', 60_000)
    record = Finish(Priority.NORMAL, held.entry_id, (reply,))
    assert await broker.finish("pricing", "zombie", [record]) == ([held.entry_id], [])
    assert await raw.exists(f"{prefix}:reply:requester-1") == 0  # the zombie wrote nothing
    assert await broker.finish("pricing", "rescuer", [record]) == ([], [])
    assert await raw.xlen(f"{prefix}:reply:requester-1") == 1  # the owner's reply
    assert 0 < await raw.pttl(f"{prefix}:reply:requester-1") <= 60_000


async def test_a_result_is_stored_by_the_script_that_acks_only_for_the_owner(
    client: Client, raw: aioredis.Redis, prefix: str
) -> None:
    engine, _ = pricing()
    client.bind(engine)
    broker = client.broker
    await broker.ensure_groups("pricing", "zombie")
    message_id = await engine.tasks["price"].send_with(result_ttl=60)(1, 1.0)
    held = await _taken_over(broker)
    stored = StoreResult("pricing", message_id, b'{"v":1,"kind":"reply","body":1}', 60_000)
    record = Finish(Priority.NORMAL, held.entry_id, (stored,))
    key = f"{prefix}:{{pricing}}:result:{message_id}"
    assert await broker.finish("pricing", "zombie", [record]) == ([held.entry_id], [])
    assert await raw.exists(key) == 0  # refused with its ack: no result either
    assert await raw.xlen(f"{prefix}:{{pricing}}:q:normal") == 1  # and not acked
    assert await broker.finish("pricing", "rescuer", [record]) == ([], [])
    assert await raw.get(key) == stored.payload  # the owner's ack wrote it, with a TTL
    assert 0 < await raw.pttl(key) <= 60_000
    assert await raw.xlen(f"{prefix}:{{pricing}}:q:normal") == 0
