"""The behaviour suite: the same tests, unchanged, on the in-memory bus and a real server.

Every test takes ``nt_any_bus``, so the plugin runs it twice: ``[memory]`` on fakeredis and
``[server]`` on the session's embedded Valkey (or NT_TEST_REDIS_URL). While a test runs on
the memory backend, ``no_sockets`` makes any socket connection raise: the in-memory half
opens none (test_the_guard_refuses_connections shows that the guard bites).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

import nautilus_tasks.task
from nautilus_tasks import Engine, Priority
from nautilus_tasks.testing import TestBus

from .apps import (
    Order,
    Receipt,
    audit,
    calls,
    charge,
    crunch,
    explode,
    halt,
    on_order,
    place,
    price,
    remind,
    restock,
    settle,
    shop,
)
from .guard import SocketOpened, forbid_sockets


@pytest.fixture
def no_sockets(nt_backend: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """On the memory backend, any socket connection raises for the whole test."""
    if nt_backend == "memory":
        forbid_sockets(monkeypatch)
    yield


@pytest.fixture
def nt_engines(no_sockets: None) -> list[Engine]:
    """The engines of the suite; the socket guard is in place before the bus opens."""
    calls.clear()
    return [shop, audit]


async def assert_nothing_in_flight(bus: TestBus) -> None:
    """No entry in any inbox tier, none pending in a group, nothing delayed."""
    broker = bus.client.broker
    redis = broker._redis
    for engine in bus.engines:
        keys = broker.keys(engine.name)
        for stream in keys.streams:
            assert await redis.xlen(stream) == 0, stream
            summary = await redis.xpending(stream, keys.group)
            assert summary["pending"] == 0, (stream, summary)
        assert await redis.zcard(keys.delayed) == 0


@pytest.mark.nt_backends("memory")
async def test_the_guard_refuses_connections(nt_any_bus: TestBus) -> None:
    with pytest.raises(SocketOpened):
        socket.create_connection(("127.0.0.1", 6379), timeout=1)
    with pytest.raises(SocketOpened):
        await asyncio.open_connection("127.0.0.1", 6379)
    with pytest.raises(SocketOpened):
        await asyncio.get_running_loop().create_connection(asyncio.Protocol, "127.0.0.1", 6379)
    sock = socket.socket()
    try:
        with pytest.raises(SocketOpened):
            sock.connect(("127.0.0.1", 6379))
    finally:
        sock.close()


async def test_typed_task_and_its_result(nt_any_bus: TestBus) -> None:
    order = Order(id="o-1", qty=3, price=2.5)
    await price.send(order)
    await nt_any_bus.drain()
    await assert_nothing_in_flight(nt_any_bus)  # run, acked and deleted before drain returns
    [sent] = nt_any_bus.sent(price)
    assert sent.args == [{"id": "o-1", "qty": 3, "price": 2.5}]
    assert sent.priority is Priority.NORMAL
    assert nt_any_bus.results(price) == [Receipt(order_id="o-1", total=7.5)]
    assert calls == [("price", "o-1")]


async def test_nothing_is_in_flight_after_a_drain(nt_any_bus: TestBus) -> None:
    """drain() returns once every handler has finished and its ack is done: here one
    handler is still busy long after the inboxes are read empty."""
    await crunch.send(2000)
    for i in range(3):
        await restock.send(i)
    await nt_any_bus.drain()
    await assert_nothing_in_flight(nt_any_bus)
    assert ("crunch", 2000) in calls and nt_any_bus.results(crunch) == [2000]


async def test_critical_runs_ahead_of_a_low_backlog(nt_any_bus: TestBus) -> None:
    for i in range(30):
        await restock.send(i)
    await halt.send("fire drill")
    await nt_any_bus.drain()
    await assert_nothing_in_flight(nt_any_bus)
    assert calls[0] == ("halt", "fire drill")
    assert sorted(n for name, n in calls if name == "restock") == list(range(30))
    assert len(nt_any_bus.results(restock)) == 30


async def test_retry_with_backoff_is_made_due_by_advance(nt_any_bus: TestBus) -> None:
    await charge.send("o-7")
    await nt_any_bus.drain()  # Retry asks for another run: collected, not raised
    assert calls == [("charge", 0)]  # failed once; the retry waits 30 s in the delayed set
    [error] = nt_any_bus.errors
    assert error.task == "shop.charge" and "card processor busy" in str(error.exception)
    await nt_any_bus.advance(20)
    await nt_any_bus.drain()
    assert calls == [("charge", 0)]  # 20 s later: not due yet
    await nt_any_bus.advance(15)
    await nt_any_bus.drain()
    await assert_nothing_in_flight(nt_any_bus)
    assert calls == [("charge", 0), ("charge", 1)]
    assert nt_any_bus.results(charge) == ["charged o-7"]
    assert len(nt_any_bus.sent(charge)) == 1  # a retry is the same message, not a new one


async def test_a_retry_waits_the_tasks_own_backoff(
    nt_any_bus: TestBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ordinary exception is retried after the task's backoff: ``backoff_base=60``
    capped by ``backoff_max=30``. The full jitter picks its upper bound here, so the retry
    is due in exactly 30 s (the default base of 1 s would be due in the first drain)."""
    monkeypatch.setattr(nautilus_tasks.task, "random", SimpleNamespace(uniform=lambda a, b: b))
    await settle.send("o-8")
    await nt_any_bus.drain(raise_errors=False)
    assert calls == [("settle", 0)]
    [error] = nt_any_bus.errors
    assert isinstance(error.exception, ValueError) and error.task == "shop.settle"
    await nt_any_bus.advance(25)
    await nt_any_bus.drain()
    assert calls == [("settle", 0)]  # 25 s later: not due yet
    await nt_any_bus.advance(10)  # 35 s: past the cap of 30, short of the base's 60
    await nt_any_bus.drain()
    await assert_nothing_in_flight(nt_any_bus)
    assert calls == [("settle", 0), ("settle", 1)]
    assert nt_any_bus.results(settle) == ["settled o-8"]
    assert await nt_any_bus.dead_letters(shop) == []


async def test_a_failure_is_dead_lettered(nt_any_bus: TestBus) -> None:
    await explode.send(4)
    await nt_any_bus.drain(raise_errors=False)
    await assert_nothing_in_flight(nt_any_bus)  # dead-lettered, not left pending
    [letter] = await nt_any_bus.dead_letters(shop)
    assert (letter.reason, letter.task, letter.error_type) == ("failed", "explode", "RuntimeError")
    assert letter.error == "exploded on 4"
    assert "raise RuntimeError" in letter.traceback
    assert [type(e.exception) for e in nt_any_bus.errors] == [RuntimeError]


async def test_invalid_arguments_are_dead_lettered(nt_any_bus: TestBus) -> None:
    await price.send({"id": "o-2", "qty": "a few", "price": 1.0})  # type: ignore[arg-type]
    await nt_any_bus.drain()  # not a handler error: the handler never ran
    [letter] = await nt_any_bus.dead_letters(shop)
    assert (letter.reason, letter.task) == ("invalid", "price")
    assert letter.error_type == "InvalidArguments"
    assert "qty" in letter.error
    assert calls == [] and nt_any_bus.errors == []


async def test_a_countdown_runs_once_due(nt_any_bus: TestBus) -> None:
    await remind.send_with(countdown=3600)("renew the lease")
    await nt_any_bus.drain()
    assert calls == []
    await nt_any_bus.advance(3601)
    await nt_any_bus.drain()
    assert calls == [("remind", "renew the lease")]
    await assert_nothing_in_flight(nt_any_bus)


async def test_an_event_reaches_a_glob_subscriber(nt_any_bus: TestBus) -> None:
    await place.send(Order(id="o-3", qty=1, price=10.0))
    await nt_any_bus.drain()
    await assert_nothing_in_flight(nt_any_bus)  # the event ran too, in the same drain
    [event] = nt_any_bus.published("shop.order.*")
    assert event.topic == "shop.order.placed"
    assert event.payload == {"order_id": "o-3", "total": 10.0}
    assert event.engines == {"audit"}
    assert calls == [("place", "o-3"), ("audit", "shop.order.placed")]
    assert nt_any_bus.results(on_order) == ["o-3"]
    assert nt_any_bus.published("shop.refund.#") == []


async def test_request_and_response(nt_any_bus: TestBus) -> None:
    receipt = await price.request(Order(id="o-4", qty=2, price=4.0), timeout=10)
    assert receipt == Receipt(order_id="o-4", total=8.0)
    assert calls == [("price", "o-4")]
