"""The example engines' computations, without any server: limits, z-scores, P&L, fan-out."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterator, Sequence
from typing import Any, cast

import pytest
from pydantic import ValidationError

from engines.analytics import PnLBook, Position
from engines.factors import FactorBook, RollingWindow
from engines.marketdata import (
    ingest_quote,
    ingest_trade,
    marketdata,
    normalise_quote,
    normalise_symbol,
    normalise_trade,
    round_to,
)
from engines.models import Quote, Side, Trade
from engines.risk import PositionBook
from nautilus_tasks import Client, Priority, SendOptions, Task


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


class RecordingClient:
    """Stands in for a Client: records what would have been sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Priority, Sequence[Any]]] = []

    async def send_task(
        self, task: Task[Any, Any], args: Sequence[Any], kwargs: dict[str, Any], opts: SendOptions
    ) -> str:
        priority = opts.priority if opts.priority is not None else task.options.priority
        self.sent.append((task.qualified_name, priority, args))
        return f"id-{len(self.sent)}"


@pytest.fixture
def recorder() -> Iterator[RecordingClient]:
    fake = RecordingClient()
    marketdata.bind(cast(Client, fake))
    try:
        yield fake
    finally:
        marketdata.bind(None)


async def test_ingest_trade_fans_out_at_each_priority(recorder: RecordingClient) -> None:
    result = await ingest_trade(trade(price=100.004, symbol="aapl"))
    assert result.symbol == "AAPL" and result.price == 100.0
    assert [(name, prio) for name, prio, _ in recorder.sent] == [
        ("risk.check_position", Priority.CRITICAL),
        ("factors.update_factors", Priority.NORMAL),
        ("analytics.record_trade", Priority.LOW),
    ]
    assert all(args == (result,) for _, _, args in recorder.sent)


async def test_ingest_quote_forwards_to_analytics(recorder: RecordingClient) -> None:
    await ingest_quote(Quote(symbol="aapl", bid=1.0, ask=1.2, ts=0))
    assert [(name, prio) for name, prio, _ in recorder.sent] == [
        ("analytics.mark_to_market", Priority.LOW)
    ]
