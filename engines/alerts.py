"""The alerts engine: a stand-in for the websocket fan-out that pushes alerts to clients.

It subscribes to ``risk.breach.#``: every breach the risk engine publishes, on any topic
under ``risk.breach``, reaches it as its own durable copy. :data:`feed` records each one
(counted per symbol and per topic, kept in a short history) and puts it in the buffer of
every connected client; a slow client loses its oldest alerts rather than holding up the
others. The ``summary`` task reports what was recorded.

State: :data:`feed`, in this worker's memory; with several alerts workers each would hold
the share of the alerts it handled (and its own clients).

Run it with ``nautilus-tasks worker engines.alerts:alerts``.
"""

from __future__ import annotations

import logging
from collections import Counter, deque

from nautilus_tasks import Engine, Priority

from .models import BREACHES, AlertSummary, Breach

log = logging.getLogger("engines.alerts")

HISTORY = 100
"""Recent alerts kept for a client that connects late."""
CLIENT_BUFFER = 1000
"""Undelivered alerts kept per client; beyond that its oldest are dropped."""

alerts = Engine("alerts")


class AlertFeed:
    """Recorded alerts and the clients they are pushed to."""

    def __init__(self, history: int = HISTORY, client_buffer: int = CLIENT_BUFFER) -> None:
        if history < 1 or client_buffer < 1:
            raise ValueError("history and client_buffer must be at least 1")
        self.recent: deque[Breach] = deque(maxlen=history)
        self.by_symbol: Counter[str] = Counter()
        self.by_topic: Counter[str] = Counter()
        self.client_buffer = client_buffer
        self.clients: dict[str, deque[Breach]] = {}
        self.dropped = 0
        """Alerts a full client buffer pushed out before the client read them."""

    @property
    def total(self) -> int:
        """Every alert recorded."""
        return sum(self.by_topic.values())

    def connect(self, client: str) -> deque[Breach]:
        """A new client's buffer, holding the recent alerts to start with."""
        buffer: deque[Breach] = deque(self.recent, maxlen=self.client_buffer)
        self.clients[client] = buffer
        return buffer

    def disconnect(self, client: str) -> None:
        self.clients.pop(client, None)

    def record(self, topic: str, breach: Breach) -> int:
        """Count and keep ``breach`` and push it to every client; returns the clients reached."""
        self.recent.append(breach)
        self.by_symbol[breach.symbol] += 1
        self.by_topic[topic] += 1
        for buffer in self.clients.values():
            if len(buffer) == buffer.maxlen:
                self.dropped += 1
            buffer.append(breach)
        return len(self.clients)

    def summary(self) -> AlertSummary:
        return AlertSummary(
            total=self.total,
            by_symbol=dict(self.by_symbol),
            by_topic=dict(self.by_topic),
            clients=len(self.clients),
            last=self.recent[-1] if self.recent else None,
        )


feed = AlertFeed()
"""This worker's alerts and clients (see the module docstring)."""


@alerts.on(BREACHES, timeout=5.0)
async def on_breach(breach: Breach, topic: str) -> int:
    """Record a breach alert and push it to the connected clients."""
    reached = feed.record(topic, breach)
    log.info("%s on %s: %s at %g (limit %g)", breach.severity.upper(), topic, breach.symbol,
             breach.attempted, breach.limit)  # fmt: skip
    return reached


@alerts.task(priority=Priority.HIGH, timeout=5.0)
async def summary() -> AlertSummary:
    """What this worker has recorded."""
    return feed.summary()
