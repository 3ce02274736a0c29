"""Send tasks, run them on a real worker, and see the streams empty afterwards."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from pydantic import BaseModel

from nautilus_tasks import Client, Engine, Priority
from tests.helpers import running_worker, wait_for

pytestmark = pytest.mark.integration


class Trade(BaseModel):
    symbol: str
    qty: float
    price: float


async def test_send_runs_async_and_sync_handlers(client: Client, raw: aioredis.Redis) -> None:
    engine = Engine("risk")
    seen: list[tuple[str, float]] = []

    @engine.task(priority=Priority.CRITICAL)
    async def check(trade: Trade, limit: float = 1e6) -> bool:
        assert isinstance(trade, Trade)
        seen.append((trade.symbol, limit))
        return trade.qty * trade.price <= limit

    @engine.task
    def total(a: int, b: int) -> int:
        seen.append(("total", float(a + b)))
        return a + b

    client.bind(engine)
    await check.send(Trade(symbol="AAPL", qty=10, price=100.0))
    await check.send_with(priority="high")(Trade(symbol="MSFT", qty=1, price=1), limit=5.0)
    await total.send(2, b=3)
    assert await check(Trade(symbol="X", qty=1, price=1), 2.0) is True  # a plain local call
    assert total(1, 2) == 3
    seen.clear()
    async with running_worker(engine, client):
        await wait_for(lambda: len(seen) == 3)
    assert sorted(seen) == [("AAPL", 1e6), ("MSFT", 5.0), ("total", 5.0)]
    keys = client.broker.keys("risk")
    for stream in keys.streams:
        assert await raw.xlen(stream) == 0
