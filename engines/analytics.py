"""The analytics engine: realised and unrealised P&L per symbol, by average cost.

Trades arrive as ``record_trade`` tasks; quotes arrive as events on ``market.quote.*``
(``mark_to_market``), each marking its symbol at the quote's mid.

State: :data:`book`, the positions and P&L this worker has recorded, in memory. A
production engine would persist them; for the example one analytics worker holds them.

Run it with ``nautilus-tasks worker engines.analytics:analytics``.
"""

from __future__ import annotations

from nautilus_tasks import Engine, Priority

from .models import QUOTES, PnL, Quote, Side, Trade

EPSILON = 1e-9
"""Positions smaller than this (in units) are flat: float noise after closing a position."""

analytics = Engine("analytics")


class Position:
    """One symbol's open position, its average cost and its realised P&L.

    Buying into a long (or selling into a short) moves the average cost; trading against
    the position realises ``closed * (price - avg_cost)`` per long unit (the reverse for a
    short) and keeps the average cost; a trade that flips the side opens the remainder at
    the trade price.
    """

    __slots__ = ("avg_cost", "qty", "realised")

    def __init__(self) -> None:
        self.qty = 0.0
        self.avg_cost = 0.0
        self.realised = 0.0

    def apply(self, side: Side, qty: float, price: float) -> float:
        """Book a fill; returns the P&L it realised."""
        if qty <= 0 or price <= 0:
            raise ValueError(f"qty and price must be positive, not {qty} and {price}")
        signed = qty if side == "buy" else -qty
        if self.qty == 0 or (self.qty > 0) == (signed > 0):
            total = abs(self.qty) + qty
            self.avg_cost = (abs(self.qty) * self.avg_cost + qty * price) / total
            self.qty += signed
            return 0.0
        closed = min(qty, abs(self.qty))
        direction = 1.0 if self.qty > 0 else -1.0
        realised = closed * (price - self.avg_cost) * direction
        self.realised += realised
        self.qty += signed
        if abs(self.qty) < EPSILON:
            self.qty, self.avg_cost = 0.0, 0.0
        elif (self.qty > 0) != (direction > 0):  # flipped: the rest opened at this price
            self.avg_cost = price
        return realised

    def unrealised(self, mark: float) -> float:
        """The P&L of the open position if it were closed at ``mark``."""
        return self.qty * (mark - self.avg_cost)


class PnLBook:
    """A position per symbol, marked at the last trade or quote mid of that symbol."""

    def __init__(self) -> None:
        self.positions: dict[str, Position] = {}
        self.marks: dict[str, float] = {}

    def record(self, trade: Trade) -> PnL:
        """Book ``trade`` and mark its symbol at the trade price."""
        position = self.positions.get(trade.symbol)
        if position is None:
            position = self.positions[trade.symbol] = Position()
        position.apply(trade.side, trade.qty, trade.price)
        self.marks[trade.symbol] = trade.price
        return self.snapshot(trade.symbol)

    def mark(self, symbol: str, price: float) -> PnL:
        """Mark ``symbol`` at ``price`` (a quote mid, say) without trading."""
        if price <= 0:
            raise ValueError(f"a mark must be positive, not {price}")
        self.marks[symbol] = price
        return self.snapshot(symbol)

    def snapshot(self, symbol: str) -> PnL:
        """The P&L of ``symbol`` at its current mark."""
        position = self.positions.get(symbol) or Position()
        mark = self.marks.get(symbol, position.avg_cost)
        return PnL(
            symbol=symbol,
            position=position.qty,
            avg_cost=position.avg_cost,
            realised=position.realised,
            unrealised=position.unrealised(mark),
            mark=mark,
        )

    def totals(self) -> tuple[float, float]:
        """Realised and unrealised P&L summed over every symbol."""
        snapshots = [self.snapshot(symbol) for symbol in self.positions]
        return sum(s.realised for s in snapshots), sum(s.unrealised for s in snapshots)


book = PnLBook()
"""This worker's positions and marks (see the module docstring)."""


@analytics.task(priority=Priority.LOW, timeout=5.0)
async def record_trade(trade: Trade) -> PnL:
    """Book ``trade`` into its symbol's P&L."""
    return book.record(trade)


@analytics.on(QUOTES, timeout=5.0)
async def mark_to_market(quote: Quote) -> PnL:
    """Mark the quote's symbol at its mid price."""
    return book.mark(quote.symbol, quote.mid)
