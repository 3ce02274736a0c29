"""The example engines' VaR: returns, scenarios, historical and parametric VaR, and the
risk engine's answers to VaR requests (split from test_engines.py)."""


from __future__ import annotations

import math
import random
import statistics
from statistics import NormalDist
from typing import Any

import pytest
from pydantic import ValidationError

import engines.risk as risk_module
from engines.models import (
    Portfolio,
    Quote,
)
from engines.risk import PositionBook, calculate_var, on_quote
from engines.var import (
    PriceHistory,
    aligned,
    covariance,
    historical_var,
    parametric_var,
    scenario_pnls,
    simple_returns,
    value_at_risk,
)

# --- VaR ---


def test_simple_returns_and_price_history() -> None:
    assert simple_returns([100.0, 110.0, 99.0]) == pytest.approx([0.1, -0.1])
    assert simple_returns([5.0]) == []
    history = PriceHistory(size=3)
    for price in (100.0, 110.0, 99.0, 108.9):
        history.observe("AAPL", price)
    assert history.mark("AAPL") == 108.9
    assert history.returns("AAPL") == pytest.approx([-0.1, 0.1])  # 100 fell out
    assert history.returns("MSFT") == []
    with pytest.raises(KeyError):
        history.mark("MSFT")
    with pytest.raises(ValueError):
        history.observe("AAPL", 0.0)


def test_aligned_takes_the_latest_returns_of_the_shortest_series() -> None:
    got = aligned({"A": [1.0, 2.0, 3.0, 4.0], "B": [7.0, 8.0, 9.0]}, window=10)
    assert got == {"A": [2.0, 3.0, 4.0], "B": [7.0, 8.0, 9.0]}
    assert aligned({"A": [1.0, 2.0, 3.0, 4.0]}, window=2) == {"A": [3.0, 4.0]}
    with pytest.raises(ValueError, match="not enough history"):
        aligned({"A": [1.0, 2.0], "B": [1.0]}, window=10)
    with pytest.raises(ValueError):
        aligned({}, window=10)


def test_scenario_pnls_are_exposure_weighted_returns() -> None:
    pnls = scenario_pnls({"A": 1000.0, "B": -500.0}, {"A": [0.01, -0.02], "B": [0.02, -0.04]})
    assert pnls == pytest.approx([0.0, 0.0])  # the short of B hedges A exactly
    assert scenario_pnls({"A": 200.0}, {"A": [0.05, -0.1]}) == pytest.approx([10.0, -20.0])


def test_historical_var_is_the_empirical_quantile_of_losses() -> None:
    pnls = [float(p) for p in range(-50, 50)]  # losses -49..50
    var, shortfall = historical_var(pnls, 0.95)  # 0.95 * 100 is 95.00000000000001: rank 95
    assert var == 45.0
    assert shortfall == pytest.approx(statistics.fmean([45, 46, 47, 48, 49, 50]))
    assert historical_var(pnls, 0.99) == (49.0, 49.5)
    assert historical_var([3.0, 1.0], 0.9) == (-1.0, -1.0)  # no loss: a negative VaR
    for bad in (0.0, 1.0):
        with pytest.raises(ValueError):
            historical_var(pnls, bad)
    with pytest.raises(ValueError):
        historical_var([], 0.99)


def test_covariance_matches_statistics() -> None:
    a, b = [0.01, -0.02, 0.03, 0.0], [0.02, -0.01, 0.01, 0.005]
    cov = covariance({"A": a, "B": b})
    assert cov["A", "B"] == cov["B", "A"] == pytest.approx(statistics.covariance(a, b))
    assert cov["A", "A"] == pytest.approx(statistics.variance(a))
    with pytest.raises(ValueError):
        covariance({"A": [0.1]})


def test_parametric_var_of_one_asset_and_of_a_book() -> None:
    returns = [0.01, -0.02, 0.015, -0.005, 0.0, 0.02, -0.01]
    mu, sigma = statistics.fmean(returns), statistics.stdev(returns)
    z = NormalDist().inv_cdf(0.99)
    var, shortfall = parametric_var({"A": 1000.0}, {"A": returns}, 0.99)
    assert var == pytest.approx(1000 * (z * sigma - mu))
    assert shortfall == pytest.approx(1000 * (sigma * NormalDist().pdf(z) / 0.01 - mu))
    assert shortfall > var
    # a book: v'Sv is the variance of the scenario P&Ls
    book = {"A": [0.01, -0.02, 0.03, 0.0], "B": [0.02, -0.01, 0.01, 0.005]}
    exposures = {"A": 2000.0, "B": -700.0}
    pnls = scenario_pnls(exposures, book)
    var, _ = parametric_var(exposures, book, 0.95)
    expected = NormalDist(statistics.fmean(pnls), statistics.stdev(pnls)).inv_cdf(0.05)
    assert var == pytest.approx(-expected)


def test_historical_and_parametric_agree_on_normal_returns() -> None:
    rng = random.Random(7)
    book = {"A": [rng.gauss(0, 0.01) for _ in range(20_000)]}
    book["B"] = [0.5 * a + rng.gauss(0, 0.01) for a in book["A"]]  # correlated
    exposures = {"A": 1e6, "B": 5e5}
    historical, _ = historical_var(scenario_pnls(exposures, book), 0.99)
    parametric, _ = parametric_var(exposures, book, 0.99)
    assert historical == pytest.approx(parametric, rel=0.05)
    sigma = math.sqrt((1e6 + 0.5 * 5e5) ** 2 + (5e5) ** 2) * 0.01  # the true deviation
    assert parametric == pytest.approx(NormalDist().inv_cdf(0.99) * sigma, rel=0.05)


def test_value_at_risk_of_a_portfolio_from_the_price_history() -> None:
    history = PriceHistory()
    rng = random.Random(3)
    price = 100.0
    for _ in range(300):
        price *= 1 + rng.gauss(0, 0.01)
        history.observe("A", price)
        history.observe("B", price / 2)  # moves exactly with A
    long_a = Portfolio(positions={"A": 100.0}, window=250)
    result = value_at_risk(long_a, history)
    assert result.method == "historical" and result.observations == 250
    assert result.value == pytest.approx(100 * price)
    assert 0 < result.var <= result.expected_shortfall
    hedged = Portfolio(positions={"A": 100.0, "B": -200.0}, method="parametric")
    assert value_at_risk(hedged, history).var == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="no prices"):
        value_at_risk(Portfolio(positions={"C": 1.0}), history)
    bads: list[dict[str, Any]] = [
        {"confidence": 1.0}, {"confidence": 0.5}, {"positions": {}}, {"window": 1},
    ]  # fmt: skip
    for bad in bads:
        with pytest.raises(ValidationError):
            Portfolio.model_validate({"positions": {"A": 1.0}, **bad})


async def test_risk_answers_var_requests_from_the_quotes_it_saw(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(risk_module, "history", PriceHistory())
    monkeypatch.setattr(risk_module, "book", PositionBook())
    for i in range(10):
        exposure = await on_quote(Quote(symbol="AAPL", bid=100 + i, ask=101 + i, ts=i))
        assert exposure == 0.0
    result = await calculate_var(Portfolio(positions={"AAPL": 10.0}, confidence=0.9))
    assert result.observations == 9 and result.value == pytest.approx(10 * 109.5)
    assert result.var < 0  # the price only rose: no loss in any scenario
