"""The risk engine: pre-trade position limits per symbol.

State: :data:`book`, the positions this worker process has accepted, in memory. That is
fine for an example with one risk worker; a production risk engine would keep positions in
a shared store so that several workers (and restarts) see the same book.

Run it with ``nautilus-tasks worker engines.risk:risk``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from nautilus_tasks import Engine, Priority

from .models import Trade, Verdict

log = logging.getLogger("engines.risk")

DEFAULT_LIMIT = 20_000.0
"""Largest absolute position, in units, allowed in any symbol without its own limit."""

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


book = PositionBook()
"""This worker's positions (see the module docstring)."""


@risk.task(priority=Priority.CRITICAL, timeout=5.0)
async def check_position(trade: Trade) -> Verdict:
    """Check ``trade`` against its symbol's position limit; book it if accepted."""
    verdict = book.check(trade)
    if not verdict.accepted:
        log.debug("rejected trade %s: %s", trade.id, verdict.reason)
    return verdict
