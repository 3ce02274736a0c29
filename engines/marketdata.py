"""The market data engine: normalises incoming trades and quotes and passes them on.

Each trade goes to three engines at three priorities: ``risk.check_position`` (critical),
``factors.update_factors`` (normal) and ``analytics.record_trade`` (low). Each quote is
published as an event on ``market.quote.<SYMBOL>``: market data does not know who listens;
every engine subscribed to a matching pattern (factors, risk and analytics, with
``market.quote.*``) gets its own durable copy and reacts in parallel. A worker binds its
client to its own engine only, so the sends and the publishes go through
``marketdata.client``. The engine keeps no state.

Run it with ``nautilus-tasks worker engines.marketdata:marketdata``.
"""

from __future__ import annotations

from nautilus_tasks import Client, Engine, Priority

from .analytics import record_trade
from .factors import update_factors
from .models import Quote, Trade, quote_topic
from .risk import check_position

PRICE_TICK = 0.01
"""Prices are rounded to this tick."""
QTY_LOT = 1e-6
"""Quantities are rounded to this lot (fractional shares down to a millionth)."""

QUOTE_PRIORITY = Priority.NORMAL
"""Quotes are published at this priority; each subscriber's copy waits in that tier."""

marketdata = Engine("marketdata")


def round_to(value: float, step: float) -> float:
    """``value`` rounded to the nearest multiple of ``step`` (half away from zero)."""
    if step <= 0:
        raise ValueError(f"step must be positive, not {step}")
    units = abs(value) / step + 0.5
    return round(int(units) * step * (1 if value >= 0 else -1), 10)


def normalise_symbol(symbol: str) -> str:
    """Upper case, surrounding whitespace removed: ``" aapl "`` -> ``"AAPL"``."""
    cleaned = symbol.strip().upper()
    if not cleaned or any(c.isspace() for c in cleaned):
        raise ValueError(f"invalid symbol {symbol!r}")
    return cleaned


def normalise_trade(trade: Trade) -> Trade:
    """The trade with its symbol cleaned, its price on the tick and its quantity on the lot."""
    price = round_to(trade.price, PRICE_TICK)
    qty = round_to(trade.qty, QTY_LOT)
    if price <= 0 or qty <= 0:
        raise ValueError(f"trade {trade.id}: price {trade.price} or qty {trade.qty} rounds to 0")
    symbol = normalise_symbol(trade.symbol)
    return trade.model_copy(update={"symbol": symbol, "price": price, "qty": qty})


def normalise_quote(quote: Quote) -> Quote:
    """The quote with its symbol cleaned and its prices on the tick."""
    bid, ask = round_to(quote.bid, PRICE_TICK), round_to(quote.ask, PRICE_TICK)
    if bid <= 0:
        raise ValueError(f"quote of {quote.symbol}: bid {quote.bid} rounds to 0")
    return quote.model_copy(
        update={"symbol": normalise_symbol(quote.symbol), "bid": bid, "ask": ask}
    )


async def fan_out(trade: Trade, client: Client) -> None:
    """Send ``trade`` to risk, factors and analytics, each at its own priority, risk first.

    The sends go one after the other on purpose: a running handler then holds at most one
    of the client's pooled connections, so a worker never needs more connections than its
    concurrency (the pool has ``BusConfig.max_connections``, 64 by default, and refuses more).
    """
    await check_position.send_with(client=client)(trade)
    await update_factors.send_with(client=client)(trade)
    await record_trade.send_with(client=client)(trade)


@marketdata.task(priority=Priority.HIGH, timeout=10.0)
async def ingest_trade(trade: Trade) -> Trade:
    """Normalise ``trade`` and fan it out to the engines that consume trades."""
    normalised = normalise_trade(trade)
    await fan_out(normalised, marketdata.client)
    return normalised


@marketdata.task(priority=Priority.HIGH, timeout=10.0)
async def ingest_quote(quote: Quote) -> Quote:
    """Normalise ``quote`` and publish it on ``market.quote.<SYMBOL>``."""
    normalised = normalise_quote(quote)
    topic = quote_topic(normalised.symbol)
    await marketdata.client.publish(topic, normalised, priority=QUOTE_PRIORITY)
    return normalised
