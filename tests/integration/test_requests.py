"""Request/response, stored results and callback topics on a real server."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from pydantic import BaseModel

from nautilus_tasks import BusConfig, Client, Engine, RequestTimeout, TaskFailed, WorkerConfig
from nautilus_tasks.broker.base import Reply
from nautilus_tasks.message import decode
from nautilus_tasks.requests import REPLY_TTL_MS
from nautilus_tasks.worker import outcomes
from tests.helpers import running_worker, wait_for

pytestmark = pytest.mark.integration


class Trade(BaseModel):
    symbol: str
    qty: float
    price: float


class Verdict(BaseModel):
    ok: bool
    notional: float


def risk_engine(gate: asyncio.Event | None = None) -> Engine:
    risk = Engine("risk")

    @risk.task
    async def validate(trade: Trade, limit: float = 1e6) -> Verdict:
        if gate is not None:
            await gate.wait()
        notional = trade.qty * trade.price
        if notional < 0:
            raise ValueError(f"negative notional {notional}")
        return Verdict(ok=notional <= limit, notional=notional)

    @risk.task
    def echo(n: int) -> int:
        return n

    return risk


async def test_request_returns_typed_results_and_remote_failures(client: Client) -> None:
    risk = risk_engine()
    validate = risk.tasks["validate"]
    client.bind(risk)
    async with running_worker(risk, client):
        verdict = await validate.request(Trade(symbol="AAPL", qty=10, price=100.0), timeout=10)
        assert verdict == Verdict(ok=True, notional=1000.0)
        assert isinstance(verdict, Verdict)  # rebuilt from JSON against the return type
        with pytest.raises(TaskFailed) as failed:
            await validate.request(Trade(symbol="X", qty=-1, price=1.0), timeout=10)
    assert failed.value.error_type == "ValueError"
    assert "negative notional" in failed.value.message
    assert "raise ValueError" in failed.value.traceback


async def test_a_timeout_raises_and_the_late_reply_is_dropped(
    client: Client, raw: aioredis.Redis, prefix: str
) -> None:
    gate = asyncio.Event()
    risk = risk_engine(gate)
    validate = risk.tasks["validate"]
    client.bind(risk)
    async with running_worker(risk, client):
        with pytest.raises(RequestTimeout):
            await validate.request(Trade(symbol="A", qty=1, price=1), timeout=0.3)
        gate.set()  # now the worker answers, too late
        await wait_for(lambda: client.replies.late == 1)
        # the client goes on working, and the late reply left nothing behind
        assert await validate.request(Trade(symbol="B", qty=1, price=2), timeout=10)
    assert await raw.xlen(f"{prefix}:reply:{client.client_id}") == 0


async def test_1000_concurrent_requests_each_get_their_own_result(client: Client) -> None:
    risk = risk_engine()
    echo = risk.tasks["echo"]
    client.bind(risk)
    async with running_worker(risk, client, WorkerConfig(concurrency=50, grace=5)):
        results = await asyncio.gather(*(echo.request(n, timeout=60) for n in range(1000)))
    assert results == list(range(1000))


async def test_a_dead_requesters_reply_stream_expires(
    bus: BusConfig,
    client: Client,
    raw: aioredis.Redis,
    prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(outcomes, "REPLY_TTL_MS", 1500)  # the TTL a worker's reply sets
    risk = risk_engine()
    echo = risk.tasks["echo"]
    requester = await Client.connect(bus)
    requester.bind(risk)
    task = asyncio.create_task(echo.request(7, timeout=30))
    await wait_for(lambda: _queued(raw, prefix))
    task.cancel()
    dead_id = requester.client_id
    await requester.close()  # the requester is gone before the worker answers
    key = f"{prefix}:reply:{dead_id}"
    client.bind(risk)
    async with running_worker(risk, client):
        await wait_for(lambda: _exists(raw, key))  # the worker's reply, with its TTL
        assert 0 < await raw.pttl(key) <= 1500
        await wait_for(lambda: _gone(raw, key))  # nobody refreshes it: it disappears


async def test_a_live_client_keeps_refreshing_its_reply_stream(
    client: Client, raw: aioredis.Redis, prefix: str
) -> None:
    risk = risk_engine()
    echo = risk.tasks["echo"]
    client.bind(risk)
    key = f"{prefix}:reply:{client.client_id}"
    async with running_worker(risk, client):
        assert await echo.request(1, timeout=10) == 1  # the reply created the stream
    await wait_for(lambda: _length(raw, key, 0))  # read and deleted; the stream stays
    await raw.pexpire(key, 20_000)  # as if its last refresh were 40 s old
    client.replies._last_touch = 0.0  # the refresh is due (it runs every third of the TTL)
    await wait_for(lambda: _pttl_above(raw, key, 30_000))  # raised again by the live client
    assert await raw.pttl(key) <= REPLY_TTL_MS


async def test_a_duplicate_reply_resolves_the_request_once(
    client: Client, raw: aioredis.Redis, prefix: str
) -> None:
    risk = risk_engine()
    echo = risk.tasks["echo"]
    client.bind(risk)
    request = asyncio.create_task(echo.request(7, timeout=30))
    await wait_for(lambda: _queued(raw, prefix))
    [(_, fields)] = await raw.xrange(f"{prefix}:{{risk}}:q:normal")
    [reply] = await outcomes.outcome_actions("risk", decode(fields), outcomes.success(7), None)
    assert isinstance(reply, Reply)
    key = f"{prefix}:reply:{client.client_id}"
    for _ in range(2):  # the same reply twice, as from a redelivered request answered twice
        await raw.xadd(key, {"envelope": reply.payload})
    assert await request == 7
    await wait_for(lambda: client.replies.late == 1)  # the copy was dropped, counted
    await wait_for(lambda: _length(raw, key, 0))  # and deleted from the stream


async def _queued(raw: aioredis.Redis, prefix: str) -> bool:
    return int(await raw.xlen(f"{prefix}:{{risk}}:q:normal")) == 1


async def _exists(raw: aioredis.Redis, key: str) -> bool:
    return bool(await raw.exists(key))


async def _gone(raw: aioredis.Redis, key: str) -> bool:
    return not await raw.exists(key)


async def _length(raw: aioredis.Redis, key: str, n: int) -> bool:
    return bool(await raw.exists(key)) and int(await raw.xlen(key)) == n


async def _pttl_above(raw: aioredis.Redis, key: str, ms: int) -> bool:
    return int(await raw.pttl(key)) > ms


async def test_stored_result_is_read_through_the_handle(client: Client) -> None:
    risk = risk_engine()
    validate = risk.tasks["validate"]
    client.bind(risk)
    handle = await validate.send_with(result_ttl=60)(Trade(symbol="A", qty=2, price=3))
    failing = await validate.send_with(result_ttl=60)(Trade(symbol="A", qty=-2, price=3))
    assert isinstance(handle, str)  # the handle is the message id
    async with running_worker(risk, client):
        assert await handle.result(timeout=10) == Verdict(ok=True, notional=6.0)
        with pytest.raises(TaskFailed, match="negative notional"):
            await failing.result(timeout=10)
    unsent = await validate.send(Trade(symbol="A", qty=1, price=1))  # no result_ttl
    with pytest.raises(RequestTimeout):
        await unsent.result(timeout=0.2)


async def test_a_task_declared_with_result_ttl_stores_every_outcome(
    client: Client, raw: aioredis.Redis, prefix: str
) -> None:
    kept = Engine("kept")

    @kept.task(result_ttl=30)
    def double(n: int) -> int:
        return 2 * n

    client.bind(kept)
    handle = await double.send(4)  # no per-send option: the task's result_ttl applies
    shorter = await double.send_with(result_ttl=5)(5)  # a send may still choose its own
    async with running_worker(kept, client):
        assert await handle.result(timeout=10) == 8
        assert await shorter.result(timeout=10) == 10
    assert 5_000 < await raw.pttl(f"{prefix}:{{kept}}:result:{handle}") <= 30_000
    assert 0 < await raw.pttl(f"{prefix}:{{kept}}:result:{shorter}") <= 5_000


async def test_callback_topic_delivers_the_result_to_another_engine(client: Client) -> None:
    risk = risk_engine()
    validate = risk.tasks["validate"]
    analytics = Engine("analytics")
    got: list[dict[str, object]] = []

    @analytics.on("risk.var.*")
    async def on_result(payload: dict[str, object], topic: str) -> None:
        got.append({**payload, "topic": topic})

    client.bind(risk)
    async with running_worker(analytics, client), running_worker(risk, client):
        await validate.send_with(callback_topic="risk.var.results")(
            Trade(symbol="Z", qty=1, price=5)
        )
        await validate.send_with(callback_topic="risk.var.results")(
            Trade(symbol="Z", qty=-1, price=5)
        )
        await wait_for(lambda: len(got) == 2)
    ok = next(g for g in got if g["ok"])
    failed = next(g for g in got if not g["ok"])
    assert ok["result"] == {"ok": True, "notional": 5.0}
    assert ok["task"] == "risk.validate" and ok["topic"] == "risk.var.results"
    assert failed["error_type"] == "ValueError"
