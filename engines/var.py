"""Value at risk of a small portfolio, by historical simulation or variance-covariance.

Conventions. A portfolio holds ``q_i`` units of symbol ``i``, marked at its last price
``p_i``: its exposure to ``i`` is ``v_i = q_i * p_i``. A scenario is one vector of simple
returns ``r`` (``p_t / p_{t-1} - 1``) and its P&L is ``sum_i v_i * r_i``, the linear (delta)
approximation. A loss is a negative P&L, and the VaR at confidence ``c`` is a loss: the
amount the portfolio does not lose more than, over one step of the return series, with
probability ``c``. It is positive when the portfolio can lose money.

* Historical: the scenarios are the ``n`` most recent returns of every symbol, aligned by
  recency (the k-th latest return of each symbol form scenario k). The VaR is the loss of
  rank ``ceil(c * n)`` among the ascending losses (the empirical ``c``-quantile, without
  interpolation); the expected shortfall is the mean of the losses from that rank up.
* Parametric (delta-normal): returns are jointly normal with the sample means ``mu`` and the
  sample covariance ``S`` (``n - 1`` denominator) of the same scenarios. The P&L is then
  normal with mean ``m = v . mu`` and deviation ``s = sqrt(v' S v)``: the VaR is
  ``z * s - m`` with ``z = Phi^-1(c)``, and the expected shortfall ``s * phi(z) / (1 - c) - m``.

Pure functions and one small class; no I/O. The risk engine feeds :class:`PriceHistory`
from quote events and answers ``risk.calculate_var`` with :func:`value_at_risk`.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from statistics import NormalDist

from .models import Portfolio, VaRResult

MAX_HISTORY = 1000
"""Prices kept per symbol: enough for a window of 999 returns."""
_RANK_SLACK = 1e-9
"""``c * n`` is rounded down by this before ``ceil``: 0.95 * 100 is 95.00000000000001."""


class PriceHistory:
    """The last prices of each symbol (quote mids, say), oldest first."""

    def __init__(self, size: int = MAX_HISTORY) -> None:
        if size < 2:
            raise ValueError(f"a history needs at least 2 prices, not {size}")
        self.size = size
        self.prices: dict[str, deque[float]] = {}

    def observe(self, symbol: str, price: float) -> None:
        """Record the latest price of ``symbol``."""
        if not price > 0:
            raise ValueError(f"a price must be positive, not {price}")
        prices = self.prices.get(symbol)
        if prices is None:
            prices = self.prices[symbol] = deque(maxlen=self.size)
        prices.append(price)

    def mark(self, symbol: str) -> float:
        """The latest price of ``symbol``, or KeyError when none was observed."""
        prices = self.prices.get(symbol)
        if not prices:
            raise KeyError(f"no price of {symbol!r} observed yet")
        return prices[-1]

    def returns(self, symbol: str) -> list[float]:
        """The simple returns of ``symbol``, oldest first (one fewer than its prices)."""
        return simple_returns(self.prices.get(symbol, ()))


def simple_returns(prices: Iterable[float]) -> list[float]:
    """``p[t] / p[t-1] - 1`` for each consecutive pair of ``prices``."""
    return [after / before - 1.0 for before, after in itertools.pairwise(prices)]


def aligned(returns: Mapping[str, Sequence[float]], window: int) -> dict[str, list[float]]:
    """The ``n`` most recent returns of every symbol, ``n`` = the shortest series or ``window``."""
    if not returns:
        raise ValueError("no symbols")
    n = min(window, *(len(series) for series in returns.values()))
    if n < 2:
        short = sorted(s for s, series in returns.items() if len(series) < 2)
        raise ValueError(f"not enough history for a VaR: fewer than 2 returns of {short}")
    return {symbol: list(series[len(series) - n :]) for symbol, series in returns.items()}


def scenario_pnls(
    exposures: Mapping[str, float], returns: Mapping[str, Sequence[float]]
) -> list[float]:
    """The P&L of each scenario: ``sum_i v_i * r_i[k]`` over aligned return series."""
    n = len(next(iter(returns.values())))
    return [math.fsum(v * returns[s][k] for s, v in exposures.items()) for k in range(n)]


def historical_var(pnls: Sequence[float], confidence: float) -> tuple[float, float]:
    """The VaR and expected shortfall of the empirical P&L distribution ``pnls``."""
    _check_confidence(confidence)
    if not pnls:
        raise ValueError("no scenarios")
    losses = sorted(-p for p in pnls)
    rank = max(1, math.ceil(confidence * len(losses) - _RANK_SLACK))
    tail = losses[rank - 1 :]
    return losses[rank - 1], math.fsum(tail) / len(tail)


def covariance(returns: Mapping[str, Sequence[float]]) -> dict[tuple[str, str], float]:
    """The sample covariance (``n - 1`` denominator) of each pair of aligned return series."""
    n = len(next(iter(returns.values())))
    if n < 2:
        raise ValueError("a covariance needs at least 2 observations")
    means = {s: math.fsum(series) / n for s, series in returns.items()}
    out: dict[tuple[str, str], float] = {}
    for a, ra in returns.items():
        for b, rb in returns.items():
            if (b, a) in out:
                out[a, b] = out[b, a]
                continue
            products = ((x - means[a]) * (y - means[b]) for x, y in zip(ra, rb, strict=True))
            out[a, b] = math.fsum(products) / (n - 1)
    return out


def parametric_var(
    exposures: Mapping[str, float], returns: Mapping[str, Sequence[float]], confidence: float
) -> tuple[float, float]:
    """The delta-normal VaR and expected shortfall of ``exposures`` over aligned returns."""
    _check_confidence(confidence)
    n = len(next(iter(returns.values())))
    cov = covariance(returns)
    mean = math.fsum(v * math.fsum(returns[s]) / n for s, v in exposures.items())
    variance = math.fsum(
        va * vb * cov[a, b] for a, va in exposures.items() for b, vb in exposures.items()
    )
    sigma = math.sqrt(max(variance, 0.0))  # rounding can leave -1e-20 for a riskless book
    normal = NormalDist()
    z = normal.inv_cdf(confidence)
    return z * sigma - mean, sigma * normal.pdf(z) / (1 - confidence) - mean


def value_at_risk(portfolio: Portfolio, history: PriceHistory) -> VaRResult:
    """The VaR of ``portfolio`` marked at, and over the returns of, ``history``."""
    symbols = sorted(portfolio.positions)
    missing = [s for s in symbols if not history.prices.get(s)]
    if missing:
        raise ValueError(f"no prices of {missing} observed yet")
    exposures = {s: portfolio.positions[s] * history.mark(s) for s in symbols}
    returns = aligned({s: history.returns(s) for s in symbols}, portfolio.window)
    if portfolio.method == "historical":
        var, shortfall = historical_var(scenario_pnls(exposures, returns), portfolio.confidence)
    else:
        var, shortfall = parametric_var(exposures, returns, portfolio.confidence)
    return VaRResult(
        method=portfolio.method,
        confidence=portfolio.confidence,
        var=var,
        expected_shortfall=shortfall,
        value=math.fsum(exposures.values()),
        observations=len(next(iter(returns.values()))),
    )


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), not {confidence}")
