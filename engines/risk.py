"""The risk engine: pre-trade position limits, breach alerts, and value at risk.

* ``check_position`` (task, critical): accept and book a trade, or reject it when it would
  take its symbol's position past the limit. A rejection is a breach: the first of an
  episode publishes a :class:`~engines.models.Breach` on ``risk.breach.detected`` at
  critical priority (see :class:`BreachMonitor`), for whoever subscribes (alerts does).
* ``on_quote`` (event handler of ``market.quote.*``): keeps each symbol's quote mids, the
  marks and return history the VaR uses.
* ``calculate_var`` (task, high): the VaR of a portfolio (:mod:`engines.var`), made for
  ``await calculate_var.request(portfolio, timeout=...)``.

State: :data:`book`, :data:`monitor` and :data:`history`, in this worker's memory. That is
fine for an example with one risk worker; a production risk engine would keep positions in
a shared store so that several workers (and restarts) see the same book.

Run it with ``nautilus-tasks worker engines.risk:risk``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from nautilus_tasks import Engine, Priority
from nautilus_tasks.message import now_ms

from .models import BREACH_TOPIC, QUOTES, Breach, Portfolio, Quote, Trade, VaRResult, Verdict
from .var import PriceHistory, value_at_risk

log = logging.getLogger("engines.risk")

DEFAULT_LIMIT = 20_000.0
"""Largest absolute position, in units, allowed in any symbol without its own limit."""
LIMITS = {"TSLA": 5_000.0}
"""Symbols with a tighter limit than the default: the most volatile name."""
REARM = 0.9
"""A symbol's breach alerts re-arm once its position is back under this share of its limit."""

risk = Engine("risk")


class PositionBook:
    """Signed positions per symbol, checked against an absolute limit before they change.

    A trade is accepted when the position it leads to stays within ``-limit..+limit``; a
    trade that reduces an over-limit position is accepted too, since it lowers the risk.
    Rejected trades leave the position unchanged.
    """

    def __init__(
        self, default_limit: float = DEFAULT_LIMIT, limits: Mapping[str, float] | None = None
    ) -> None:
        if default_limit <= 0:
            raise ValueError(f"default_limit must be positive, not {default_limit}")
        self.default_limit = default_limit
        self.limits: dict[str, float] = dict(limits or {})
        self.positions: dict[str, float] = {}

    def limit_of(self, symbol: str) -> float:
        """The absolute position limit of ``symbol``."""
        return self.limits.get(symbol, self.default_limit)

    def position(self, symbol: str) -> float:
        """The current signed position of ``symbol`` (0 when never traded)."""
        return self.positions.get(symbol, 0.0)

    def check(self, trade: Trade) -> Verdict:
        """Accept (and book) or reject ``trade``."""
        limit = self.limit_of(trade.symbol)
        current = self.position(trade.symbol)
        after = current + trade.signed_qty
        if abs(after) > limit and abs(after) >= abs(current):
            reason = f"position {after:g} would exceed the limit of {limit:g}"
            return Verdict(
                trade_id=trade.id,
                symbol=trade.symbol,
                accepted=False,
                position=current,
                limit=limit,
                reason=reason,
            )
        self.positions[trade.symbol] = after
        return Verdict(
            trade_id=trade.id, symbol=trade.symbol, accepted=True, position=after, limit=limit
        )


class BreachMonitor:
    """Turns rejected trades into breach alerts, one per episode.

    Every trade the limit rejects is a breach, but at the limit a flow of orders is rejected
    one after another: the first rejection of a symbol raises an alert and disarms the
    symbol, and an accepted trade that brings its position back under ``rearm`` times the
    limit re-arms it. So a burst of rejected orders raises one alert, not hundreds.
    """

    def __init__(self, rearm: float = REARM) -> None:
        if not 0 < rearm <= 1:
            raise ValueError(f"rearm must be in (0, 1], not {rearm}")
        self.rearm = rearm
        self.disarmed: set[str] = set()
        self.raised = 0

    def observe(self, trade: Trade, verdict: Verdict) -> Breach | None:
        """The alert to raise for ``trade`` given its verdict, or None."""
        symbol = verdict.symbol
        if verdict.accepted:
            if abs(verdict.position) < self.rearm * verdict.limit:
                self.disarmed.discard(symbol)
            return None
        if symbol in self.disarmed:
            return None
        self.disarmed.add(symbol)  # before any await: concurrent rejections raise once
        self.raised += 1
        return Breach(
            symbol=symbol,
            trade_id=trade.id,
            position=verdict.position,
            attempted=verdict.position + trade.signed_qty,
            limit=verdict.limit,
            detected_at=now_ms(),
        )

    def undo(self, breach: Breach) -> None:
        """The alert could not be published: re-arm, so the retried trade raises it again."""
        self.disarmed.discard(breach.symbol)
        self.raised -= 1


book = PositionBook(limits=LIMITS)
"""This worker's positions (see the module docstring)."""
monitor = BreachMonitor()
"""This worker's breach episodes."""
history = PriceHistory()
"""This worker's quote mids per symbol: the marks and return series of the VaR."""


@risk.task(priority=Priority.CRITICAL, timeout=5.0)
async def check_position(trade: Trade) -> Verdict:
    """Check ``trade`` against its symbol's position limit; book it if accepted, and raise a
    breach alert when a rejection starts a breach episode."""
    verdict = book.check(trade)
    if not verdict.accepted:
        log.debug("rejected trade %s: %s", trade.id, verdict.reason)
    breach = monitor.observe(trade, verdict)
    if breach is not None:
        await raise_alert(breach)
    return verdict


async def raise_alert(breach: Breach) -> None:
    """Publish ``breach`` at critical priority through this engine's client.

    A rejection leaves the book unchanged, so when the publish fails the handler fails and
    its retry rejects the same trade again and, re-armed, publishes the alert then.
    """
    try:
        await risk.client.publish(BREACH_TOPIC, breach, priority=Priority.CRITICAL)
    except BaseException:
        monitor.undo(breach)
        raise
    log.info(
        "breach of %s: trade %s would take the position to %g, over the limit of %g",
        breach.symbol, breach.trade_id, breach.attempted, breach.limit,
    )  # fmt: skip


@risk.on(QUOTES, timeout=5.0)
async def on_quote(quote: Quote) -> float:
    """Record the quote's mid; returns the symbol's exposure at that mark."""
    history.observe(quote.symbol, quote.mid)
    return book.position(quote.symbol) * quote.mid


@risk.task(priority=Priority.HIGH, timeout=5.0, retries=0)
async def calculate_var(portfolio: Portfolio) -> VaRResult:
    """The value at risk of ``portfolio`` over the quote mids this worker has seen.

    Not retried: the math is deterministic, and the requester is waiting for the answer.
    """
    return value_at_risk(portfolio, history)
