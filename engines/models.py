"""The messages the example engines exchange, as pydantic models, and their event topics.

Workers validate every task argument and event payload against these models, so a
malformed trade is dead-lettered as ``invalid`` before any handler sees it.

Events: market data publishes each quote on ``market.quote.<SYMBOL>`` (:func:`quote_topic`),
which factors, risk and analytics subscribe to with :data:`QUOTES`; risk publishes a
:class:`Breach` on :data:`BREACH_TOPIC`, which alerts subscribes to with :data:`BREACHES`.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Side = Literal["buy", "sell"]

QUOTES = "market.quote.*"
"""The pattern of every quote topic: ``*`` is the one segment holding the symbol."""
BREACH_TOPIC = "risk.breach.detected"
BREACHES = "risk.breach.#"
"""Every breach topic, however many segments follow ``risk.breach``."""
_TOPIC_SEGMENT = re.compile(r"^[A-Za-z0-9_\-]+$")


def quote_topic(symbol: str) -> str:
    """The topic of a quote of ``symbol``: ``market.quote.AAPL``.

    A symbol with a dot (``BRK.B``) would add a segment and escape :data:`QUOTES`; its dots
    become dashes (``market.quote.BRK-B``). Other characters are refused.
    """
    segment = symbol.replace(".", "-")
    if not _TOPIC_SEGMENT.match(segment):
        raise ValueError(f"symbol {symbol!r} cannot be a topic segment")
    return f"market.quote.{segment}"


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Trade(_Message):
    """One execution: ``qty`` units of ``symbol`` at ``price``; ``ts`` in epoch milliseconds."""

    id: str = Field(min_length=1, max_length=64)
    symbol: str = Field(min_length=1, max_length=16)
    side: Side
    qty: float = Field(gt=0)
    price: float = Field(gt=0)
    ts: int = Field(ge=0)

    @property
    def signed_qty(self) -> float:
        """``qty`` for a buy, ``-qty`` for a sell: the change in position."""
        return self.qty if self.side == "buy" else -self.qty

    @property
    def notional(self) -> float:
        """``qty * price``."""
        return self.qty * self.price


class Quote(_Message):
    """The best bid and ask of ``symbol`` at ``ts`` (epoch milliseconds)."""

    symbol: str = Field(min_length=1, max_length=16)
    bid: float = Field(gt=0)
    ask: float = Field(gt=0)
    ts: int = Field(ge=0)

    @model_validator(mode="after")
    def _not_crossed(self) -> Quote:
        if self.bid > self.ask:
            raise ValueError(f"crossed quote: bid {self.bid} > ask {self.ask}")
        return self

    @property
    def mid(self) -> float:
        """The mid price, ``(bid + ask) / 2``."""
        return (self.bid + self.ask) / 2

    @property
    def spread(self) -> float:
        """``ask - bid``."""
        return self.ask - self.bid


class Verdict(_Message):
    """The risk engine's answer to one trade."""

    trade_id: str
    symbol: str
    accepted: bool
    position: float
    """The position after the trade if accepted, else the unchanged position."""
    limit: float
    reason: str | None = None


class FactorSnapshot(_Message):
    """Rolling statistics of one symbol's trade prices after a new price."""

    symbol: str
    price: float
    mean: float
    stdev: float
    zscore: float
    samples: int


class PnL(_Message):
    """Profit and loss of one symbol, from the average cost of the open position."""

    symbol: str
    position: float
    avg_cost: float
    realised: float
    unrealised: float
    mark: float

    @property
    def total(self) -> float:
        """``realised + unrealised``."""
        return self.realised + self.unrealised


Severity = Literal["high", "critical"]
VaRMethod = Literal["historical", "parametric"]


class Breach(_Message):
    """A position limit breach the risk engine detected, as published on ``risk.breach.*``.

    ``attempted`` is the position the offending trade would have led to; ``position`` the
    position the book kept (the trade was rejected). ``detected_at`` is epoch milliseconds.
    """

    symbol: str
    trade_id: str
    position: float
    attempted: float
    limit: float
    severity: Severity = "critical"
    detected_at: int = Field(ge=0)

    @property
    def excess(self) -> float:
        """How far past the limit the trade would have taken the position, in units."""
        return abs(self.attempted) - self.limit


class Portfolio(_Message):
    """Positions to measure the risk of: units per symbol (negative: short)."""

    positions: dict[str, float] = Field(min_length=1, max_length=64)
    confidence: float = Field(default=0.99, gt=0.5, lt=1.0)
    method: VaRMethod = "historical"
    window: int = Field(default=250, ge=2, le=10_000)
    """How many of the most recent returns of each symbol to use."""


class VaRResult(_Message):
    """The value at risk of a portfolio: the loss not exceeded with ``confidence``.

    ``var`` and ``expected_shortfall`` are positive amounts of money lost over one step of
    the return series (one quote to the next); ``value`` is the portfolio's marked value.
    """

    method: VaRMethod
    confidence: float
    var: float
    expected_shortfall: float
    value: float
    observations: int
    """Return scenarios used (historical), or the sample size of the moments (parametric)."""


class AlertSummary(_Message):
    """What the alerts engine has recorded: counts per symbol and per topic, the last alert."""

    total: int
    by_symbol: dict[str, int]
    by_topic: dict[str, int]
    clients: int
    last: Breach | None = None
