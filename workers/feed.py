"""The demo's synthetic market: random-walk trades and quotes, and sending them.

Prices follow a random walk per symbol. Trades buy or sell at the walk's price; TSLA is
bought more often than sold (:data:`BUY_BIAS`), so its position runs into the risk
engine's tight TSLA limit and breach alerts are raised in every run. Quotes straddle the
walk's price with a spread of a few basis points. Some symbols arrive untidy (lower case,
padded), for market data to normalise.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engines.marketdata import ingest_quote, ingest_trade
from engines.models import Quote, Trade
from nautilus_tasks import Client
from nautilus_tasks.message import now_ms

log = logging.getLogger("workers.demo")

SYMBOLS = {"AAPL": 190.0, "MSFT": 410.0, "NVDA": 120.0, "AMZN": 180.0, "TSLA": 240.0}
BUY_BIAS = {"TSLA": 0.75}
"""Probability that a trade of the symbol is a buy (0.5 when not listed)."""
VOLATILITY = 0.001
"""Standard deviation of the walk's relative step, per trade or quote of the symbol."""
UNTIDY = 0.1
"""Share of trades and quotes whose symbol arrives in lower case with spaces around."""
BATCH = 500
"""Trades per pipelined send; the quotes falling in the same stretch go with them."""


@dataclass(frozen=True, slots=True)
class Market:
    """What the demo sends: the trades, and each quote with the trade index it follows."""

    trades: list[Trade]
    quotes: list[tuple[int, Quote]]


class Walk:
    """The random walk of every symbol's price."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.prices = dict(SYMBOLS)
        self.names = list(SYMBOLS)

    def step(self) -> tuple[str, float]:
        """Move a random symbol's price one step; returns the symbol and its new price."""
        symbol = self.rng.choice(self.names)
        self.prices[symbol] *= 1 + self.rng.gauss(0, VOLATILITY)
        return symbol, self.prices[symbol]

    def raw(self, symbol: str) -> str:
        """``symbol`` as an upstream feed might send it: sometimes untidy."""
        return f" {symbol.lower()} " if self.rng.random() < UNTIDY else symbol


def make_trade(walk: Walk, index: int, ts: int) -> Trade:
    symbol, price = walk.step()
    buy = walk.rng.random() < BUY_BIAS.get(symbol, 0.5)
    return Trade(
        id=f"T{index:08d}",
        symbol=walk.raw(symbol),
        side="buy" if buy else "sell",
        qty=float(walk.rng.randint(1, 500)),
        price=round(price, 4),
        ts=ts,
    )


def make_quote(walk: Walk, ts: int) -> Quote:
    symbol, price = walk.step()
    half_spread = price * walk.rng.uniform(0.5, 3.0) / 10_000  # 1 to 6 basis points wide
    return Quote(
        symbol=walk.raw(symbol),
        bid=round(price - half_spread, 4),
        ask=round(price + half_spread, 4),
        ts=ts,
    )


def make_market(trades: int, quotes: int, rng: random.Random) -> Market:
    """``trades`` trades with ``quotes`` quotes spread evenly among them, on one walk."""
    walk = Walk(rng)
    start = now_ms()
    made_trades: list[Trade] = []
    made_quotes: list[tuple[int, Quote]] = []
    for i in range(trades):
        made_trades.append(make_trade(walk, i, start + i))
        while len(made_quotes) < quotes and len(made_quotes) * trades < (i + 1) * quotes:
            made_quotes.append((i, make_quote(walk, start + i)))
    return Market(made_trades, made_quotes)


async def send_market(client: Client, market: Market) -> float:
    """Send the trades and quotes in pipelined batches, in market order; returns the
    monotonic time of the first send."""
    started = time.monotonic()
    quotes: Sequence[tuple[int, Quote]] = market.quotes
    cursor = 0
    for offset in range(0, len(market.trades), BATCH):
        batch = market.trades[offset : offset + BATCH]
        await client.send_many(ingest_trade, [((trade,), {}) for trade in batch])
        first = cursor
        while cursor < len(quotes) and quotes[cursor][0] < offset + len(batch):
            cursor += 1
        if cursor > first:
            stretch: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
                ((quote,), {}) for _, quote in quotes[first:cursor]
            ]
            await client.send_many(ingest_quote, stretch)
    log.info(
        "sent %d trades and %d quotes in %.2fs",
        len(market.trades), len(market.quotes), time.monotonic() - started,
    )  # fmt: skip
    return started
