"""TestBus on its own: errors and their tracebacks, inspection, the sync face, timeouts."""

from __future__ import annotations

import asyncio
import threading
import traceback
from pathlib import Path

import pytest

from nautilus_tasks import (
    BacklogFull,
    BusUnavailable,
    ConfigurationError,
    Engine,
    NotBound,
    TaskFailed,
)
from nautilus_tasks.errors import DrainTimeout
from nautilus_tasks.testing import SyncTestBus, TestBus

from .apps import (
    Order,
    Receipt,
    audit,
    calls,
    charge,
    explode,
    explode_sync,
    hang,
    price,
    remind,
    shop,
    stamp,
    verify,
)

pytestmark = pytest.mark.nt_engines(shop, audit)


@pytest.fixture(autouse=True)
def _fresh_calls() -> None:
    calls.clear()


def _frames(tb: pytest.ExceptionInfo[BaseException]) -> list[tuple[str, str]]:
    return [(Path(str(entry.path)).name, entry.name) for entry in tb.traceback]


async def test_a_handler_exception_surfaces_with_the_handlers_traceback(nt_bus: TestBus) -> None:
    await explode.send(9)
    with pytest.raises(RuntimeError, match="exploded on 9") as info:
        await nt_bus.drain()
    assert _frames(info)[-1] == ("apps.py", "explode")  # the innermost frame: the handler
    assert 'raise RuntimeError(f"exploded on {x}")' in str(info.traceback[-1].statement)
    text = "".join(traceback.format_exception(info.value))
    assert 'apps.py", line' in text and "in explode" in text
    assert any("during TestBus.drain()" in note for note in info.value.__notes__)
    # the drain finished its work before raising: the message is dead-lettered
    assert [d.reason for d in await nt_bus.dead_letters(shop)] == ["failed"]


async def test_a_sync_handler_exception_keeps_its_traceback_from_the_thread(
    nt_bus: TestBus,
) -> None:
    await explode_sync.send(3)
    with pytest.raises(LookupError, match="nothing at 3") as info:
        await nt_bus.drain()
    assert _frames(info)[-1] == ("apps.py", "explode_sync")


async def test_the_first_error_is_raised_and_the_rest_still_run(nt_bus: TestBus) -> None:
    await explode.send(1)
    await price.send(Order(id="o-9", qty=1, price=1.0))
    await explode.send(2)
    with pytest.raises(RuntimeError, match="exploded on 1") as info:
        await nt_bus.drain()
    assert any("2 handler errors" in note for note in info.value.__notes__)
    assert [str(e.exception) for e in nt_bus.errors] == ["exploded on 1", "exploded on 2"]
    assert nt_bus.results(price) == [Receipt(order_id="o-9", total=1.0)]


async def test_raise_errors_false_collects_instead(nt_bus: TestBus) -> None:
    await explode.send(5)
    await nt_bus.drain(raise_errors=False)
    [error] = nt_bus.errors
    assert (error.task, error.envelope.body) == ("shop.explode", {"args": [5], "kwargs": {}})
    assert isinstance(error.exception, RuntimeError)
    await nt_bus.drain()  # errors of earlier drains are not raised again


async def test_a_handler_can_request_while_the_bus_drains(nt_bus: TestBus) -> None:
    await verify.send(Order(id="o-5", qty=4, price=2.0))
    await nt_bus.drain()
    assert nt_bus.results(verify) == [8.0]
    assert calls == [("verify", "o-5"), ("price", "o-5")]


async def test_a_stuck_handler_makes_drain_time_out(nt_bus: TestBus) -> None:
    await hang.send()
    with pytest.raises(DrainTimeout, match="shop"):
        await nt_bus.drain(timeout=0.5)
    assert calls == [("hang", None)]


async def test_sync_handlers_run_in_threads(nt_bus: TestBus) -> None:
    await stamp.send("a")
    await nt_bus.drain()
    [result] = nt_bus.results(stamp)
    assert result.startswith("a@")
    [(_, thread)] = calls  # the name of the thread the handler ran in
    assert thread.startswith("nt-test-shop") and thread != threading.current_thread().name


async def test_sent_and_published_record_in_order(nt_bus: TestBus) -> None:
    await price.send(Order(id="a", qty=1, price=1.0))
    await price.send_with(priority="high")(Order(id="b", qty=1, price=1.0))
    await shop.publish("shop.order.cancelled", {"id": "a"})
    await shop.publish("shop.audit.skipped", {"id": "b"})
    assert [m.args[0]["id"] for m in nt_bus.sent(price)] == ["a", "b"]
    assert [m.priority.label for m in nt_bus.sent(price)] == ["normal", "high"]
    assert [e.topic for e in nt_bus.published()] == ["shop.order.cancelled", "shop.audit.skipped"]
    assert [e.engines for e in nt_bus.published("shop.#")] == [{"audit"}, frozenset()]
    assert nt_bus.results(price) == []  # nothing ran: messages wait for drain()


async def test_engines_are_unbound_after_the_bus_closes() -> None:
    lone = Engine("lone")

    @lone.task
    async def ping() -> str:
        return "pong"

    async with TestBus(lone) as bus:
        assert await ping.request(timeout=5) == "pong"
        assert lone.client is bus.client
    with pytest.raises(NotBound):
        await ping.send()


def test_the_sync_face_for_plain_def_tests(nt_sync_bus: SyncTestBus) -> None:
    order = Order(id="s-1", qty=2, price=3.0)
    assert nt_sync_bus.request(price, order, timeout=5) == Receipt(order_id="s-1", total=6.0)
    nt_sync_bus.send_with(remind, countdown=60)("later")
    nt_sync_bus.send(charge, "s-1")
    nt_sync_bus.drain(raise_errors=False)
    assert [name for name, _ in calls] == ["price", "charge"]
    nt_sync_bus.advance(61)
    nt_sync_bus.drain()
    assert sorted(name for name, _ in calls[2:]) == ["charge", "remind"]
    assert nt_sync_bus.results(charge) == ["charged s-1"]
    nt_sync_bus.send(explode, 1)
    with pytest.raises(RuntimeError):
        nt_sync_bus.drain()
    assert [d.reason for d in nt_sync_bus.dead_letters(shop)] == ["failed"]


def test_the_sync_face_publishes_runs_and_inspects(nt_sync_bus: SyncTestBus) -> None:
    event_id = nt_sync_bus.publish("shop.order.placed", {"order_id": "s-2", "total": 4.0})
    nt_sync_bus.send(price, Order(id="s-3", qty=1, price=2.0))
    message_id = nt_sync_bus.run(remind.send_with(countdown=5)("soon"))  # any awaitable
    nt_sync_bus.send(explode, 3)
    [event] = nt_sync_bus.published("shop.order.*")
    assert (event.envelope.id, event.payload, event.engines) == (
        event_id, {"order_id": "s-2", "total": 4.0}, {"audit"},
    )  # fmt: skip
    assert [m.args[0]["id"] for m in nt_sync_bus.sent(price)] == ["s-3"]
    assert [m.id for m in nt_sync_bus.sent(remind)] == [message_id]
    nt_sync_bus.drain(raise_errors=False)
    [error] = nt_sync_bus.errors
    assert (error.task, str(error.exception)) == ("shop.explode", "exploded on 3")
    ran = {o.task: o.result for o in nt_sync_bus.outcomes}
    assert ran == {"audit.on:on_order": "s-2", "shop.price": Receipt(order_id="s-3", total=2.0)}
    assert nt_sync_bus.results(remind) == []  # its countdown has not passed


async def test_the_sync_face_refuses_a_running_loop() -> None:
    """The documented limit: in an async def test, use TestBus."""
    bus = SyncTestBus(shop)
    with pytest.raises(ConfigurationError, match="inside a running one"):
        bus.__enter__()
    assert shop._client is None  # nothing was opened or bound
    with pytest.raises(ConfigurationError, match="not open"):
        bus.run(asyncio.sleep(0))


async def test_dead_letters_filter_by_reason(nt_bus: TestBus) -> None:
    await explode.send(1)
    await price.send({"id": "x", "qty": "many", "price": 1.0})  # type: ignore[arg-type]
    await nt_bus.drain(raise_errors=False)
    assert sorted(d.reason for d in await nt_bus.dead_letters(shop)) == ["failed", "invalid"]
    assert [d.task for d in await nt_bus.dead_letters(shop, reason="failed")] == ["explode"]
    assert [d.task for d in await nt_bus.dead_letters("shop", reason="invalid")] == ["price"]
    assert await nt_bus.dead_letters(shop, reason="poison") == []


async def test_time_only_moves_forward(nt_bus: TestBus) -> None:
    await remind.send_with(countdown=60)("later")
    with pytest.raises(ConfigurationError, match="time only moves forward, not by -1s"):
        await nt_bus.advance(-1)
    await nt_bus.advance(0)  # moving by nothing is allowed, and makes nothing due
    await nt_bus.drain()
    assert calls == []


async def test_engines_on_other_buses_and_routed_topics() -> None:
    feed = Engine("feed", bus="market")
    desk = Engine("desk")
    seen: list[str] = []

    @feed.task
    async def tick(symbol: str) -> None:
        await feed.publish(f"md.tick.{symbol}", {"symbol": symbol})

    @desk.on("md.tick.*")
    async def on_tick(payload: dict[str, str]) -> None:
        seen.append(payload["symbol"])

    async with TestBus(feed, desk, routes={"md.#": "market"}) as bus:
        assert sorted(bus.client.links) == ["default", "market"]
        await tick.send("AAPL")
        await bus.drain()
        assert seen == ["AAPL"]
        [event] = bus.published("md.#")
        assert event.engines == {"desk"}


async def test_a_message_to_an_engine_off_the_bus_is_recorded_and_waits(nt_bus: TestBus) -> None:
    other = Engine("other")

    @other.task
    async def note(text: str) -> None:
        calls.append(("note", text))

    nt_bus.client.bind(other)
    await note.send("kept")
    await nt_bus.drain()
    assert [m.args for m in nt_bus.sent(note)] == [["kept"]]
    assert calls == []  # no runner for "other": the message stays in its inbox


async def test_a_failed_request_raises_task_failed_and_the_error_is_collected(
    nt_bus: TestBus,
) -> None:
    with pytest.raises(TaskFailed, match="exploded on 7") as info:
        await explode.request(7, timeout=5)
    assert "raise RuntimeError" in info.value.traceback  # the remote traceback, as text
    assert [str(e.exception) for e in nt_bus.errors] == ["exploded on 7"]
    await nt_bus.drain()  # collected while the request waited: not raised by a drain


async def test_a_bus_that_cannot_connect_raises_and_stays_closed() -> None:
    bus = TestBus(shop, Engine("far", bus="far"), url="redis://127.0.0.1:1", prefix="x")
    with pytest.raises(BusUnavailable):
        await bus.__aenter__()
    assert shop._client is None
    with pytest.raises(ConfigurationError, match="not open"):
        bus.client  # noqa: B018


async def test_bulk_sends_to_a_bounded_engine_are_recorded_and_all_or_nothing() -> None:
    """``client.send_many`` to an engine with ``max_backlog`` goes through its own script
    (enqueue_many_bounded.lua); the bus records what it stored, and nothing of a refused batch."""
    capped = Engine("capped", max_backlog=3)
    done: list[int] = []

    @capped.task
    async def work(n: int) -> None:
        done.append(n)

    async with TestBus(capped) as bus:
        await bus.client.send_many(work, [((n,), {}) for n in range(3)])
        with pytest.raises(BacklogFull):
            await bus.client.send_many(work, [((9,), {})])
        assert [m.args for m in bus.sent(work)] == [[0], [1], [2]]
        await bus.drain()
        assert done == [0, 1, 2]
