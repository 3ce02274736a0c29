"""Durable pub/sub with glob patterns: each engine its own copy, replicas share."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from pydantic import BaseModel

from nautilus_tasks import Client, Engine, Priority, WorkerConfig
from tests.helpers import running_worker, wait_for

pytestmark = pytest.mark.integration

TOPICS = [
    "risk",
    "risk.breach",
    "risk.limit",
    "risk.breach.detected",
    "risk.breach.var.detected",
    "market.anomaly.detected",
    "detected",
    "market.tick",
]


class Alert(BaseModel):
    n: int
    level: str = "warn"


def subscriber(name: str, pattern: str, got: list[tuple[str, int]]) -> Engine:
    engine = Engine(name)

    @engine.on(pattern)
    async def handle(alert: Alert, topic: str) -> None:
        assert isinstance(alert, Alert)
        got.append((topic, alert.n))

    return engine


async def _register(client: Client, *engines: Engine) -> None:
    for engine in engines:
        await client.broker.ensure_groups(engine.name)
        await client.broker.register_subscriptions(engine.name, engine.patterns)


async def test_each_engine_receives_exactly_the_events_its_pattern_matches(
    client: Client,
) -> None:
    got: dict[str, list[tuple[str, int]]] = {"a": [], "b": [], "c": []}
    engines = [
        subscriber("a", "risk.*", got["a"]),
        subscriber("b", "risk.breach.#", got["b"]),
        subscriber("c", "#.detected", got["c"]),
    ]
    await _register(client, *engines)
    for n, topic in enumerate(TOPICS):
        await client.publish(topic, Alert(n=n), priority=Priority.HIGH)
    expected = {
        "a": {("risk.breach", 1), ("risk.limit", 2)},
        "b": {("risk.breach", 1), ("risk.breach.detected", 3), ("risk.breach.var.detected", 4)},
        "c": {
            ("risk.breach.detected", 3),
            ("risk.breach.var.detected", 4),
            ("market.anomaly.detected", 5),
            ("detected", 6),
        },
    }
    async with (
        running_worker(engines[0], client),
        running_worker(engines[1], client),
        running_worker(engines[2], client),
    ):
        await wait_for(lambda: all(len(got[k]) == len(expected[k]) for k in got))
    assert {k: set(v) for k, v in got.items()} == expected
    assert client.publisher.unmatched == 2  # "risk" and "market.tick" matched nobody


async def test_two_replicas_split_an_event_stream_without_duplicates(client: Client) -> None:
    got: list[tuple[str, int]] = []
    engine = subscriber("fanout", "ticks.#", got)
    await _register(client, engine)
    config = WorkerConfig(concurrency=5, grace=5)
    async with (
        running_worker(engine, client, config) as one,
        running_worker(engine, client, config) as two,
    ):
        await asyncio.gather(*(client.publish("ticks.aapl", {"n": n}) for n in range(500)))
        await wait_for(lambda: len(got) >= 500)
        shares = [one.stats.counts["succeeded"], two.stats.counts["succeeded"]]
    assert Counter(n for _, n in got) == Counter(range(500))  # each exactly once
    assert sum(shares) == 500 and min(shares) > 0, shares  # both replicas took a share


async def test_an_engine_offline_during_the_publish_gets_the_events_when_it_starts(
    client: Client,
) -> None:
    got: list[tuple[str, int]] = []
    engine = subscriber("late", "orders.*", got)
    await _register(client, engine)  # registered once, then offline
    for n in range(20):
        await client.publish("orders.filled", {"n": n})
    async with running_worker(engine, client):
        await wait_for(lambda: len(got) == 20)
    assert sorted(n for _, n in got) == list(range(20))


async def test_a_new_subscription_is_seen_by_a_publisher_with_a_stale_cache(
    client: Client,
) -> None:
    got: list[tuple[str, int]] = []
    await client.publish("fx.eurusd", {"n": 0})  # caches an empty registry
    assert client.publisher.unmatched == 1
    engine = subscriber("fx", "fx.*", got)
    await _register(client, engine)  # the version moves; the client's cache is stale
    await client.publish("fx.eurusd", {"n": 1})  # delivered anyway: version checked
    async with running_worker(engine, client):
        await wait_for(lambda: len(got) == 1)
    assert got == [("fx.eurusd", 1)]


async def test_an_invalid_payload_is_dead_lettered(client: Client) -> None:
    got: list[tuple[str, int]] = []
    engine = subscriber("strict", "x.*", got)
    await _register(client, engine)
    await client.publish("x.y", {"n": "not a number"})
    await client.publish("x.y", {"n": 3})
    async with running_worker(engine, client):
        await wait_for(lambda: len(got) == 1)
        await wait_for(lambda: _dead(client, "strict", 1))
    assert got == [("x.y", 3)]


async def _dead(client: Client, engine: str, n: int) -> bool:
    return (await client.broker.inspect(engine)).dead >= n


async def test_a_worker_removes_subscriptions_dropped_from_the_code(client: Client) -> None:
    got: list[tuple[str, int]] = []
    await _register(client, subscriber("gone", "old.*", got))
    assert await client.broker.subscriptions() == (1, {"old.*": ["gone"]})
    async with running_worker(Engine("gone"), client):  # redeployed without the handler
        pass
    version, subs = await client.broker.subscriptions()
    assert subs == {} and version == 2
    await client.publish("old.news", {"n": 1})
    assert client.publisher.unmatched == 1


async def test_engine_publish_goes_through_its_client(client: Client) -> None:
    got: list[tuple[str, int]] = []
    listener = subscriber("listener", "news.*", got)
    await _register(client, listener)
    source = Engine("source")
    client.bind(source)
    await source.publish("news.flash", {"n": 5}, priority="critical")
    async with running_worker(listener, client):
        await wait_for(lambda: got == [("news.flash", 5)])
