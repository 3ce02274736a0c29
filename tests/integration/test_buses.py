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


def two_buses(logic: EmbeddedServer, market: EmbeddedServer) -> Buses:
    return Buses(
        {"default": BusConfig.from_url(logic.url), "marketdata": BusConfig.from_url(market.url)},
        routes={"market.#": "marketdata"},
    )


async def test_each_bus_has_its_own_health_check(
    two_servers: tuple[EmbeddedServer, EmbeddedServer],
) -> None:
    logic, market = two_servers
    buses = two_buses(logic, market)
    engine = strategy([])
    async with await Client.connect(buses) as client:
        config = WorkerConfig(concurrency=2, grace=5, block_ms=100)
        on_logic, on_market = workers_for(engine, client, buses, config)  # one per bus
        runs = [asyncio.create_task(w.run()) for w in (on_logic, on_market)]
        await asyncio.gather(on_logic.started.wait(), on_market.started.wait())
        assert on_logic.healthy() and on_market.healthy()
        limit = max(5.0, 3 * config.block_ms / 1000)
        await asyncio.to_thread(market.stop)  # the marketdata bus goes down
        stalled = on_market.fetcher.last_fetch  # its reads fail from now on
        # the default bus keeps reading: wait for a read well after the market one stopped
        await wait_for(lambda: on_logic.fetcher.last_fetch > stalled + 0.5)
        assert on_market.fetcher.last_fetch == stalled
        later = stalled + limit + 0.1  # a clock past the limit for the stalled bus only
        assert not on_market.healthy(now=later)
        assert on_logic.healthy(now=later)
        await asyncio.to_thread(market.start)  # the same port: the worker reads again
        await wait_for(lambda: on_market.fetcher.last_fetch > stalled, timeout=30)
        assert on_market.healthy() and on_logic.healthy()
        for worker in (on_logic, on_market):
            worker.stop()
        await asyncio.gather(*runs)


async def test_an_engine_on_another_bus_gets_its_tasks_on_that_server(
    two_servers: tuple[EmbeddedServer, EmbeddedServer],
) -> None:
    logic, market = two_servers
    buses = two_buses(logic, market)
    feed = Engine("feed", bus="marketdata")
    done: list[int] = []

    @feed.task
    async def ingest(n: int) -> None:
        done.append(n)

    assert buses.for_engine(feed) == ["marketdata"]  # no inbox on default
    async with await Client.connect(buses) as client:
        client.bind(feed)
        await ingest.send(3)
        on_logic, on_market = (
            aioredis.Redis.from_url(logic.url),
            aioredis.Redis.from_url(market.url),
        )
        try:
            assert await on_market.xlen("nt:{feed}:q:normal") == 1  # stored where it routes
            assert await on_logic.xlen("nt:{feed}:q:normal") == 0
            [worker] = workers_for(feed, client, buses, WorkerConfig(concurrency=2, grace=5))
            run = asyncio.create_task(worker.run())
            await wait_for(lambda: done == [3])
            worker.stop()
            await run
            assert worker.stats.counts["succeeded"] == 1
            assert await on_market.xlen("nt:{feed}:q:normal") == 0  # acked and deleted
            assert not await on_logic.exists("nt:{feed}:q:normal")
        finally:
            await on_logic.aclose()
            await on_market.aclose()
