"""The example engines' computations, without any server: limits, breaches, z-scores, P&L,
fan-out and publishing (VaR: test_var.py; alerts and the demo's parts:
test_alerts_and_demo.py)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterator, Sequence
from typing import Any, cast

import pytest
from pydantic import ValidationError

import engines.risk as risk_module
from engines.alerts import alerts
from engines.analytics import PnLBook, Position, analytics
from engines.factors import FactorBook, RollingWindow, factors
from engines.marketdata import (
    ingest_quote,
    ingest_trade,
    marketdata,
    normalise_quote,
    normalise_symbol,
    normalise_trade,
    round_to,
)
from engines.models import (
    BREACH_TOPIC,
    BREACHES,
    QUOTES,
    Breach,
    Quote,
    Side,
    Trade,
    quote_topic,
)
from engines.risk import BreachMonitor, PositionBook, check_position, risk
from nautilus_tasks import Client, Priority, SendOptions, Task
from nautilus_tasks.topics import matches


def trade(side: Side = "buy", qty: float = 10, price: float = 100.0, symbol: str = "AAPL") -> Trade:
    return Trade(id="t1", symbol=symbol, side=side, qty=qty, price=price, ts=1_700_000_000_000)


# --- models ---


def test_trade_validates_side_qty_and_price() -> None:
    assert trade("sell", 3).signed_qty == -3
    assert trade("buy", 3, 2.5).notional == 7.5
    for bad in ({"side": "hold"}, {"qty": 0}, {"price": -1}, {"symbol": ""}):
        with pytest.raises(ValidationError):
            Trade.model_validate({**trade().model_dump(), **bad})


def test_quote_mid_spread_and_crossed() -> None:
    quote = Quote(symbol="AAPL", bid=99.5, ask=100.5, ts=0)
    assert (quote.mid, quote.spread) == (100.0, 1.0)
    with pytest.raises(ValidationError, match="crossed"):
        Quote(symbol="AAPL", bid=101, ask=100, ts=0)


# --- risk ---


def test_risk_accepts_up_to_the_limit_and_books_the_position() -> None:
    book = PositionBook(default_limit=100)
    assert book.check(trade("buy", 60)).accepted
    verdict = book.check(trade("buy", 40))
    assert verdict.accepted and verdict.position == 100 and verdict.limit == 100
    assert book.position("AAPL") == 100


def test_risk_rejects_over_the_limit_and_leaves_the_position() -> None:
    book = PositionBook(default_limit=100)
    book.check(trade("buy", 90))
    verdict = book.check(trade("buy", 11))
    assert not verdict.accepted
    assert verdict.position == 90 and book.position("AAPL") == 90
    assert verdict.reason is not None and "101" in verdict.reason


def test_risk_limits_shorts_and_per_symbol() -> None:
    book = PositionBook(default_limit=100, limits={"TSLA": 10})
    assert not book.check(trade("sell", 101)).accepted
    assert book.check(trade("sell", 100)).position == -100
    assert not book.check(trade("buy", 11, symbol="TSLA")).accepted
    assert book.check(trade("buy", 10, symbol="TSLA")).accepted
    assert book.position("MSFT") == 0


def test_risk_accepts_trades_that_reduce_an_over_limit_position() -> None:
    book = PositionBook(default_limit=1000)
    book.check(trade("buy", 500))
    book.limits["AAPL"] = 100  # the limit is cut below the position
    assert book.check(trade("sell", 200)).accepted  # 300: still over, but lower
    assert not book.check(trade("buy", 1)).accepted
    assert not book.check(trade("sell", 700)).accepted  # -400: over, and further from 0
    assert book.check(trade("sell", 350)).position == -50
    with pytest.raises(ValueError):
        PositionBook(default_limit=0)


# --- factors ---


def test_rolling_mean_and_stdev_match_statistics() -> None:
    window = RollingWindow(4)
    values = [10.0, 12.0, 11.0, 15.0, 9.0, 13.0]
    for value in values:
        window.push(value)
    kept = values[-4:]
    assert len(window) == 4
    assert window.mean == pytest.approx(statistics.fmean(kept))
    assert window.stdev == pytest.approx(statistics.pstdev(kept))


def test_zscore_of_a_known_window() -> None:
    window = RollingWindow(5)
    for value in (2.0, 4.0, 4.0, 4.0, 6.0):  # mean 4, population stdev sqrt(8/5)
        window.push(value)
    assert window.zscore(6.0) == pytest.approx(2 / math.sqrt(8 / 5))
    assert window.zscore(4.0) == 0.0


def test_zscore_is_zero_for_flat_or_short_windows() -> None:
    window = RollingWindow(3)
    window.push(0.1)
    assert window.stdev == 0.0 and window.zscore(0.1) == 0.0
    for _ in range(3):
        window.push(0.1)  # rounding makes the spread ~1e-17, not 0: still flat
    assert window.zscore(0.1) == 0.0
    with pytest.raises(ValueError):
        RollingWindow(1)


def test_factor_book_keeps_one_window_per_symbol() -> None:
    book = FactorBook(window=3)
    for price in (100.0, 101.0, 102.0, 110.0):
        snap = book.update("AAPL", price)
    assert snap.samples == 3
    assert snap.mean == pytest.approx(313 / 3)  # 100 fell out of the window
    assert snap.zscore == pytest.approx((110 - 313 / 3) / statistics.pstdev([101, 102, 110]))
    other = book.update("MSFT", 400.0)
    assert (other.samples, other.mean, other.zscore) == (1, 400.0, 0.0)


# --- analytics ---


def test_average_cost_and_realised_pnl_of_a_long() -> None:
    position = Position()
    position.apply("buy", 10, 100.0)
    position.apply("buy", 10, 110.0)
    assert (position.qty, position.avg_cost) == (20, 105.0)
    assert position.apply("sell", 5, 120.0) == pytest.approx(75.0)  # 5 * (120 - 105)
    assert (position.qty, position.avg_cost) == (15, 105.0)
    assert position.unrealised(100.0) == pytest.approx(-75.0)
    position.apply("sell", 15, 105.0)
    assert (position.qty, position.avg_cost) == (0, 0.0)
    assert position.realised == pytest.approx(75.0)


def test_short_pnl_and_flipping_sides() -> None:
    position = Position()
    position.apply("sell", 10, 50.0)
    assert position.unrealised(45.0) == pytest.approx(50.0)  # short gains when price falls
    assert position.apply("buy", 15, 40.0) == pytest.approx(100.0)  # closes 10 at +10 each
    assert (position.qty, position.avg_cost) == (5, 40.0)  # the remaining 5 opened at 40
    assert position.unrealised(42.0) == pytest.approx(10.0)
    with pytest.raises(ValueError):
        position.apply("buy", 0, 1.0)


def test_pnl_book_marks_at_trades_and_quotes() -> None:
    book = PnLBook()
    book.record(trade("buy", 10, 100.0))
    pnl = book.record(trade("sell", 4, 103.0))
    assert (pnl.position, pnl.realised, pnl.unrealised, pnl.mark) == (6, 12.0, 18.0, 103.0)
    pnl = book.mark("AAPL", 99.0)
    assert pnl.unrealised == pytest.approx(-6.0) and pnl.total == pytest.approx(6.0)
    book.record(trade("sell", 1, 20.0, symbol="MSFT"))
    assert book.totals() == pytest.approx((12.0, -6.0))  # MSFT is short 1 at its mark: 0
    assert book.snapshot("NVDA").position == 0


# --- marketdata ---


def test_rounding_and_normalisation() -> None:
    assert round_to(190.1249, 0.01) == 190.12
    assert round_to(190.1251, 0.01) == 190.13
    assert round_to(-2.5, 1.0) == -3.0  # half away from zero
    assert round_to(0.3, 0.1) == 0.3  # no float noise such as 0.30000000000000004
    with pytest.raises(ValueError):
        round_to(1.0, 0)
    assert normalise_symbol("  aapl ") == "AAPL"
    with pytest.raises(ValueError):
        normalise_symbol("BRK B")
    clean = normalise_trade(trade(qty=1.23456789, price=190.1234, symbol=" msft"))
    assert (clean.symbol, clean.price, clean.qty) == ("MSFT", 190.12, 1.234568)
    with pytest.raises(ValueError, match="rounds to 0"):
        normalise_trade(trade(price=0.004))
    quote = normalise_quote(Quote(symbol="spy ", bid=99.994, ask=100.006, ts=0))
    assert (quote.symbol, quote.bid, quote.ask) == ("SPY", 99.99, 100.01)


def test_quote_topics_match_the_subscriptions() -> None:
    assert quote_topic("AAPL") == "market.quote.AAPL"
    assert quote_topic("BRK.B") == "market.quote.BRK-B"  # a dot would add a segment
    assert matches(QUOTES, quote_topic("BRK.B")) and not matches(QUOTES, "market.quote.A.B")
    with pytest.raises(ValueError):
        quote_topic("A/B")
    assert matches(BREACHES, BREACH_TOPIC) and matches("#.detected", BREACH_TOPIC)
    for engine in (factors, risk, analytics):
        assert engine.patterns == [QUOTES]
    assert alerts.patterns == [BREACHES] and marketdata.patterns == []


# --- breaches ---


def verdict_of(book: PositionBook, monitor: BreachMonitor, t: Trade) -> Breach | None:
    return monitor.observe(t, book.check(t))


def test_a_rejection_raises_one_breach_per_episode() -> None:
    book, monitor = PositionBook(default_limit=100), BreachMonitor(rearm=0.9)
    assert verdict_of(book, monitor, trade("buy", 95)) is None
    breach = verdict_of(book, monitor, trade("buy", 10))
    assert breach is not None and breach.severity == "critical"
    assert (breach.symbol, breach.position, breach.attempted, breach.limit) == (
        "AAPL", 95, 105, 100
    )  # fmt: skip
    assert breach.excess == 5 and breach.trade_id == "t1"
    assert verdict_of(book, monitor, trade("buy", 50)) is None  # same episode
    assert verdict_of(book, monitor, trade("sell", 4)) is None  # 91: not back under 90
    assert verdict_of(book, monitor, trade("buy", 20)) is None
    assert verdict_of(book, monitor, trade("sell", 2)) is None  # 89: re-armed
    assert verdict_of(book, monitor, trade("buy", 20)) is not None  # a new episode
    assert verdict_of(book, monitor, trade("buy", 20, symbol="MSFT")) is None
    assert monitor.raised == 2


def test_breach_episodes_are_per_symbol_and_shorts_count() -> None:
    book, monitor = PositionBook(default_limit=10), BreachMonitor()
    assert verdict_of(book, monitor, trade("sell", 11)) is not None
    assert verdict_of(book, monitor, trade("buy", 11, symbol="TSLA")) is not None
    assert verdict_of(book, monitor, trade("sell", 11)) is None
    assert monitor.disarmed == {"AAPL", "TSLA"}
    with pytest.raises(ValueError):
        BreachMonitor(rearm=0)


def test_tsla_has_the_tight_limit() -> None:
    assert risk_module.book.limit_of("TSLA") < risk_module.book.limit_of("AAPL")


# --- handlers that send and publish, through a recording client ---


class RecordingClient:
    """Stands in for a Client: records what would have been sent and published."""

    def __init__(self, fail_publish: bool = False) -> None:
        self.sent: list[tuple[str, Priority, Sequence[Any]]] = []
        self.published: list[tuple[str, Any, Priority]] = []
        self.fail_publish = fail_publish

    async def send_task(
        self, task: Task[Any, Any], args: Sequence[Any], kwargs: dict[str, Any], opts: SendOptions
    ) -> str:
        priority = opts.priority if opts.priority is not None else task.options.priority
        self.sent.append((task.qualified_name, priority, args))
        return f"id-{len(self.sent)}"

    async def publish(self, topic: str, payload: Any, priority: Priority | str) -> str:
        if self.fail_publish:
            raise ConnectionError("bus down")
        self.published.append((topic, payload, Priority.parse(priority)))
        return f"event-{len(self.published)}"


@pytest.fixture
def recorder() -> Iterator[RecordingClient]:
    fake = RecordingClient()
    marketdata.bind(cast(Client, fake))
    risk.bind(cast(Client, fake))
    try:
        yield fake
    finally:
        marketdata.bind(None)
        risk.bind(None)


async def test_ingest_trade_fans_out_at_each_priority(recorder: RecordingClient) -> None:
    result = await ingest_trade(trade(price=100.004, symbol="aapl"))
    assert result.symbol == "AAPL" and result.price == 100.0
    assert [(name, prio) for name, prio, _ in recorder.sent] == [
        ("risk.check_position", Priority.CRITICAL),
        ("factors.update_factors", Priority.NORMAL),
        ("analytics.record_trade", Priority.LOW),
    ]
    assert all(args == (result,) for _, _, args in recorder.sent)
    assert recorder.published == []


async def test_ingest_quote_publishes_a_quote_event(recorder: RecordingClient) -> None:
    result = await ingest_quote(Quote(symbol=" aapl", bid=1.004, ask=1.2, ts=0))
    assert (result.symbol, result.bid) == ("AAPL", 1.0)
    assert recorder.published == [("market.quote.AAPL", result, Priority.NORMAL)]
    assert recorder.sent == []  # nobody is called directly: subscribers get the event


@pytest.fixture
def fresh_risk(monkeypatch: pytest.MonkeyPatch) -> BreachMonitor:
    monkeypatch.setattr(risk_module, "book", PositionBook(default_limit=100))
    monitor = BreachMonitor()
    monkeypatch.setattr(risk_module, "monitor", monitor)
    return monitor


async def test_check_position_publishes_a_critical_breach_alert(
    recorder: RecordingClient, fresh_risk: BreachMonitor
) -> None:
    assert (await check_position(trade("buy", 100))).accepted
    assert recorder.published == []
    verdict = await check_position(trade("buy", 1))
    assert not verdict.accepted
    [(topic, breach, priority)] = recorder.published
    assert (topic, priority) == (BREACH_TOPIC, Priority.CRITICAL)
    assert isinstance(breach, Breach) and (breach.attempted, breach.limit) == (101, 100)
    await check_position(trade("buy", 5))  # same episode: no second alert
    assert len(recorder.published) == 1 and fresh_risk.raised == 1


async def test_a_failed_breach_publish_rearms_for_the_retry(
    recorder: RecordingClient, fresh_risk: BreachMonitor
) -> None:
    await check_position(trade("buy", 100))
    recorder.fail_publish = True
    with pytest.raises(ConnectionError):
        await check_position(trade("buy", 1))  # the worker retries this task
    assert fresh_risk.raised == 0 and not fresh_risk.disarmed
    recorder.fail_publish = False
    assert not (await check_position(trade("buy", 1))).accepted  # the retry
    assert [topic for topic, _, _ in recorder.published] == [BREACH_TOPIC]
