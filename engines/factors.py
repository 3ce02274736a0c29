"""The factors engine: a rolling moving average and z-score of each symbol's prices.

Trades arrive as ``update_factors`` tasks and feed :data:`book`; quotes arrive as events
on ``market.quote.*`` and feed :data:`quote_book` with their mids, in parallel with risk
and analytics, which receive their own copies.

State: the books, one fixed-size window of recent prices per symbol each, in this worker's
memory. With several factor workers each would see part of the flow; a production engine
would partition symbols across workers or keep the windows in a shared store.

Run it with ``nautilus-tasks worker engines.factors:factors``.
"""

from __future__ import annotations

import math
from collections import deque

from nautilus_tasks import Engine, Priority

from .models import QUOTES, FactorSnapshot, Quote, Trade

DEFAULT_WINDOW = 50
FLAT = 1e-12
"""A spread below this share of the mean is rounding noise: the window is flat."""

factors = Engine("factors")


class RollingWindow:
    """The last ``size`` values, with their mean and population standard deviation.

    Windows are small (tens of prices), so the statistics are computed from the values
    in two passes with ``math.fsum`` rather than from drifting running sums.
    """

    def __init__(self, size: int = DEFAULT_WINDOW) -> None:
        if size < 2:
            raise ValueError(f"a window needs at least 2 values, not {size}")
        self.size = size
        self.values: deque[float] = deque(maxlen=size)

    def __len__(self) -> int:
        return len(self.values)

    def push(self, value: float) -> None:
        """Add ``value``, dropping the oldest one when the window is full."""
        self.values.append(value)

    @property
    def mean(self) -> float:
        """The mean of the window (0 when empty)."""
        return math.fsum(self.values) / len(self.values) if self.values else 0.0

    @property
    def stdev(self) -> float:
        """The population standard deviation of the window (0 with fewer than 2 values)."""
        n = len(self.values)
        if n < 2:
            return 0.0
        mean = self.mean
        return math.sqrt(math.fsum((v - mean) ** 2 for v in self.values) / n)

    def zscore(self, value: float) -> float:
        """How many standard deviations ``value`` is from the mean (0 when the window is flat)."""
        stdev, mean = self.stdev, self.mean
        if stdev <= FLAT * max(abs(mean), 1.0):  # a flat window: no spread to measure against
            return 0.0
        return (value - mean) / stdev


class FactorBook:
    """A rolling window per symbol."""

    def __init__(self, window: int = DEFAULT_WINDOW) -> None:
        self.window = window
        self.windows: dict[str, RollingWindow] = {}

    def update(self, symbol: str, price: float) -> FactorSnapshot:
        """Add a price of ``symbol``; its statistics include that price."""
        window = self.windows.get(symbol)
        if window is None:
            window = self.windows[symbol] = RollingWindow(self.window)
        window.push(price)
        return FactorSnapshot(
            symbol=symbol,
            price=price,
            mean=window.mean,
            stdev=window.stdev,
            zscore=window.zscore(price),
            samples=len(window),
        )


book = FactorBook()
"""This worker's windows of trade prices (see the module docstring)."""
quote_book = FactorBook()
"""This worker's windows of quote mids."""


@factors.task(priority=Priority.NORMAL, timeout=5.0)
async def update_factors(trade: Trade) -> FactorSnapshot:
    """Add the trade's price to its symbol's window; return the new moving average and z."""
    return book.update(trade.symbol, trade.price)


@factors.on(QUOTES, timeout=5.0)
async def quote_factors(quote: Quote) -> FactorSnapshot:
    """Add the quote's mid to its symbol's window of mids; return the new statistics."""
    return quote_book.update(quote.symbol, quote.mid)
