"""Two buses on two servers: messages land where their route says; one worker reads both."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from nautilus_tasks import BusConfig, Client, ConfigurationError, Engine, WorkerConfig
from nautilus_tasks.buses import Buses
from nautilus_tasks.embedded import EmbeddedServer
from nautilus_tasks.worker.runner import workers_for
from tests.helpers import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
async def two_servers(tmp_path: Path) -> AsyncIterator[tuple[EmbeddedServer, EmbeddedServer]]:
    logic, market = EmbeddedServer(tmp_path / "logic"), EmbeddedServer(tmp_path / "market")
    await asyncio.gather(asyncio.to_thread(logic.start), asyncio.to_thread(market.start))
    try:
        yield logic, market
    finally:
        await asyncio.gather(asyncio.to_thread(logic.stop), asyncio.to_thread(market.stop))


def strategy(got: list[str]) -> Engine:
    engine = Engine("strategy")

    @engine.on("market.tick.*")
    async def on_tick(tick: dict[str, float], topic: str) -> None:
        got.append(topic)

    @engine.on("risk.#")
    async def on_risk(alert: dict[str, str], topic: str) -> None:
        got.append(topic)

    @engine.task
    async def rebalance(n: int) -> None:
        got.append(f"rebalance {n}")

    return engine


async def test_messages_land_on_the_routed_server_and_one_worker_reads_both(
    two_servers: tuple[EmbeddedServer, EmbeddedServer],
) -> None:
    logic, market = two_servers
    buses = Buses(
        {"default": BusConfig.from_url(logic.url), "marketdata": BusConfig.from_url(market.url)},
        routes={"market.#": "marketdata"},
    )
    got: list[str] = []
    engine = strategy(got)
    assert buses.for_engine(engine) == ["default", "marketdata"]
    async with await Client.connect(buses) as client:
        client.bind(engine)
        workers = workers_for(engine, client, buses, WorkerConfig(concurrency=4, grace=5))
        runs = [asyncio.create_task(w.run()) for w in workers]
        await asyncio.gather(*(w.started.wait() for w in workers))
        await client.publish("market.tick.aapl", {"px": 1.0})
        await client.publish("risk.breach.detected", {"level": "high"})
        await engine.tasks["rebalance"].send(7)
        await wait_for(lambda: len(got) == 3)
        for worker in workers:
            worker.stop()
        await asyncio.gather(*runs)
    assert sorted(got) == ["market.tick.aapl", "rebalance 7", "risk.breach.detected"]
    # checked directly on each server: each registry holds only the patterns routed there
    for server, patterns in ((logic, [b"strategy risk.#"]), (market, [b"strategy market.tick.*"])):
        raw = aioredis.Redis.from_url(server.url)
        assert sorted(await raw.hkeys("nt:{subs}")) == patterns
        stats = await raw.hgetall("nt:{strategy}:stats")
        await raw.aclose()
        assert len(stats) == 1  # one consumer of this engine worked on this server


async def test_the_route_names_the_server_that_stores_the_event(
    two_servers: tuple[EmbeddedServer, EmbeddedServer],
) -> None:
    logic, market = two_servers
    buses = Buses(
        {"default": BusConfig.from_url(logic.url), "marketdata": BusConfig.from_url(market.url)},
        routes={"market.#": "marketdata"},
    )
    engine = strategy([])
    async with await Client.connect(buses) as client:
        for name in buses.for_engine(engine):
            broker = client.links[name].broker
            await broker.ensure_groups("strategy")
            patterns = [p for p in engine.patterns if buses.for_topic(p) == name]
            await broker.register_subscriptions("strategy", patterns)
        await client.publish("market.tick.msft", {"px": 2.0})
        client.bind(engine)
        await engine.tasks["rebalance"].send(1)
    on_logic, on_market = aioredis.Redis.from_url(logic.url), aioredis.Redis.from_url(market.url)
    try:
        assert await on_market.xlen("nt:{strategy}:q:normal") == 1  # the tick
        assert await on_logic.xlen("nt:{strategy}:q:normal") == 1  # the task
    finally:
        await on_logic.aclose()
        await on_market.aclose()


def test_routes_must_name_known_buses() -> None:
    with pytest.raises(ConfigurationError, match="unknown bus"):
        Buses({"default": BusConfig.from_url("redis://x")}, routes={"a.#": "nope"})
    with pytest.raises(ConfigurationError, match="default"):
        Buses({"other": BusConfig.from_url("redis://x")})
