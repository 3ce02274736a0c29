"""Durable pub/sub with glob patterns: each engine its own copy, replicas share."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter
from typing import Any

import pytest
import redis.asyncio as aioredis
from pydantic import BaseModel
from redis.asyncio.client import Pipeline, Redis

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


async def test_a_publish_is_one_round_trip_and_the_version_check_is_free(
    client: Client, raw: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    engines = [subscriber(n, p, []) for n, p in (("a", "risk.*"), ("b", "risk.breach.#"))]
    engines.append(subscriber("c", "#.detected", []))
    await _register(client, *engines)
    loads: list[int] = []
    load = client.broker.subscriptions

    async def counted_load() -> tuple[int, dict[str, list[str]]]:
        loads.append(1)
        return await load()

    monkeypatch.setattr(client.broker, "subscriptions", counted_load)
    round_trips: list[list[str]] = []  # the commands of each pipeline, or one plain command
    execute, command = Pipeline.execute, Redis.execute_command

    async def counted_execute(self: Pipeline, raise_on_error: bool = True) -> list[Any]:
        round_trips.append([str(args[0]).upper() for args, _ in self.command_stack])
        return await execute(self, raise_on_error)

    async def counted_command(self: Redis, *args: Any, **options: Any) -> Any:
        round_trips.append([str(args[0]).upper()])
        return await command(self, *args, **options)

    monkeypatch.setattr(Pipeline, "execute", counted_execute)
    monkeypatch.setattr(Redis, "execute_command", counted_command)
    for n in range(100):  # a stable registry: "risk.breach" -> a, b; the other -> b, c
        await client.publish("risk.breach" if n % 2 else "risk.breach.detected", {"n": n})
    monkeypatch.undo()
    assert len(loads) == 1  # the registry was loaded once, by the first publish
    assert round_trips[0] == ["GET", "HKEYS"]  # that load: one pipelined round trip
    # then each publish: one pipelined round trip, the version GET with one XADD per engine
    assert round_trips[1:] == [["GET", "XADD", "XADD"]] * 100
    lengths = [await raw.xlen(client.broker.keys(e).stream(Priority.NORMAL)) for e in "abc"]
    assert lengths == [50, 100, 50]


async def test_a_sync_handler_runs_on_a_worker_with_its_payload_validated(
    client: Client,
) -> None:
    got: list[tuple[str, Alert, bool]] = []
    engine = Engine("syncsub")

    @engine.on("sync.*")
    def handle(alert: Alert, topic: str) -> None:  # a plain def: run in the worker's threads
        got.append((topic, alert, threading.current_thread() is threading.main_thread()))

    await _register(client, engine)
    await client.publish("sync.one", {"n": 1})
    async with running_worker(engine, client):
        await wait_for(lambda: len(got) == 1)
    [(topic, alert, on_main)] = got
    assert topic == "sync.one" and isinstance(alert, Alert) and alert == Alert(n=1)
    assert not on_main  # not called on the event loop's thread


async def test_an_unmatched_event_is_counted_and_logged_at_debug(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="nautilus_tasks.events")
    event_id = await client.publish("nobody.listens", {"n": 1})
    assert client.publisher.unmatched == 1
    [record] = [r for r in caplog.records if r.name == "nautilus_tasks.events"]
    assert record.levelno == logging.DEBUG
    assert record.getMessage() == f"event {event_id} on 'nobody.listens' matched no subscriber"
