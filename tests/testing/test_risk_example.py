"""The example of docs/testing.md: the risk and alerts engines of engines/, tested with the
plugin's fixtures. Keep the two in step."""

import pytest

import engines.alerts as alerts_module
import engines.risk as risk_module
from engines.alerts import AlertFeed, alerts, summary
from engines.models import Portfolio, Quote, Trade
from engines.risk import BreachMonitor, PositionBook, calculate_var, check_position, risk
from engines.var import PriceHistory
from nautilus_tasks.testing import SyncTestBus, TestBus

pytestmark = pytest.mark.nt_engines(risk, alerts)  # the engines the nt_* fixtures connect


@pytest.fixture(autouse=True)
def fresh_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """The example engines keep their state in module globals: one fresh set per test."""
    monkeypatch.setattr(risk_module, "book", PositionBook(default_limit=100))
    monkeypatch.setattr(risk_module, "monitor", BreachMonitor())
    monkeypatch.setattr(risk_module, "history", PriceHistory())
    monkeypatch.setattr(alerts_module, "feed", AlertFeed())


def buy(trade_id: str, qty: float) -> Trade:
    return Trade(id=trade_id, symbol="AAPL", side="buy", qty=qty, price=190.0, ts=0)


async def test_a_breach_reaches_the_alerts(nt_bus: TestBus) -> None:
    await check_position.send(buy("t1", 80))
    await check_position.send(buy("t2", 50))  # 130 would pass the limit of 100
    await nt_bus.drain()  # runs both trades, the breach event, and the alert handler

    first, second = nt_bus.results(check_position)
    assert first.accepted and not second.accepted
    [breach] = nt_bus.published("risk.breach.*")
    assert breach.payload["trade_id"] == "t2" and breach.engines == {"alerts"}
    report = await summary.request(timeout=5)  # served by the bus while the test awaits
    assert report.by_symbol == {"AAPL": 1}


@pytest.mark.nt_backends("memory", "server")
async def test_var_from_the_quotes_seen(nt_any_bus: TestBus) -> None:
    """The same test on the in-memory bus and on a real server (two runs)."""
    for i, mid in enumerate([100.0, 101.0, 99.0, 102.0, 98.0, 100.0]):
        quote = Quote(symbol="AAPL", bid=mid - 0.01, ask=mid + 0.01, ts=i)
        await risk.publish("market.quote.AAPL", quote)
    await nt_any_bus.drain()
    result = await calculate_var.request(Portfolio(positions={"AAPL": 10}), timeout=5)
    assert result.observations == 5 and result.var > 0


def test_an_invalid_trade_is_dead_lettered(nt_sync_bus: SyncTestBus) -> None:
    """A plain def test: the sync face of the in-memory bus."""
    nt_sync_bus.send(check_position, {"id": "t3", "symbol": "AAPL", "side": "hold"})
    nt_sync_bus.drain()
    [letter] = nt_sync_bus.dead_letters(risk)
    assert letter.reason == "invalid" and "side" in letter.error
