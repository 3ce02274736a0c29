"""The messages the example engines exchange, as pydantic models.

Workers validate every task argument against these models, so a malformed trade is
dead-lettered as ``invalid`` before any handler sees it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Side = Literal["buy", "sell"]


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
