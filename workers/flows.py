"""The demo's event and request flows: what was published, who received it, VaR round trips.

Counting what was published. Before any event, the demo registers one *tap* per topic
family: a subscription of an engine that has no worker (``tap-quotes`` to
``market.quote.*``, ``tap-breaches`` to ``risk.breach.#``). Every publish to a matching
topic then also lands in the tap's inbox, where nobody consumes it, so the tap's stream
length is exactly how many events of the family were published, whoever published them.

Counting what was received. An engine's ``succeeded`` counter covers its tasks and its
events alike; the demo knows the tasks it caused (:func:`task_counts`), so an engine's
events are its ``succeeded`` minus those. Each engine subscribes to one family at most,
so that is also what it received of that family.

The VaR flow: ``await calculate_var.request(portfolio, timeout=...)`` from the demo, one
request at a time, each round trip timed here with ``time.perf_counter``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import cast

from rich.table import Table

from engines.alerts import summary
from engines.models import BREACHES, QUOTES, AlertSummary, Portfolio, VaRMethod, VaRResult
from engines.risk import calculate_var
from nautilus_tasks import Client
from nautilus_tasks.broker.base import Broker
from nautilus_tasks.errors import NautilusTasksError

from .progress import ENGINES, Progress


@dataclass(frozen=True, slots=True)
class Family:
    """A family of topics: its pattern, its tap, the engines expected to subscribe."""

    pattern: str
    tap: str
    subscribers: tuple[str, ...]


FAMILIES = (
    Family(QUOTES, "tap-quotes", ("factors", "risk", "analytics")),
    Family(BREACHES, "tap-breaches", ("alerts",)),
)
FAN_OUT = ("risk", "factors", "analytics")
"""The engines market data sends one task per trade."""
PORTFOLIO = {"AAPL": 1_500.0, "MSFT": -600.0, "NVDA": 4_000.0, "AMZN": 1_200.0, "TSLA": 2_000.0}
"""The positions whose VaR the demo requests (units; negative: short)."""
METHODS: tuple[VaRMethod, ...] = ("historical", "parametric")

_subscribers = [e for f in FAMILIES for e in f.subscribers]
assert len(_subscribers) == len(set(_subscribers)), "an engine in two families: see above"


async def register_taps(broker: Broker) -> None:
    """Subscribe each family's tap (see the module docstring); call before any publish."""
    for family in FAMILIES:
        await broker.register_subscriptions(family.tap, [family.pattern])


async def published(broker: Broker) -> dict[str, int]:
    """Events published so far per family pattern: the length of its tap's inbox."""
    counts = {}
    for family in FAMILIES:
        info = await broker.inspect(family.tap)
        counts[family.pattern] = sum(tier.length for tier in info.tiers)
    return counts


async def missing_subscriptions(broker: Broker) -> list[str]:
    """``engine pattern`` of each expected subscription not in the registry yet."""
    _, subs = await broker.subscriptions()
    return [
        f"{engine} {family.pattern}"
        for family in FAMILIES
        for engine in family.subscribers
        if engine not in subs.get(family.pattern, ())
    ]


def task_counts(trades: int, quotes: int) -> dict[str, int]:
    """The tasks the demo causes per engine: it sends market data every trade and quote,
    and market data sends each engine of :data:`FAN_OUT` one task per trade."""
    counts = dict.fromkeys(ENGINES, 0)
    counts["marketdata"] = trades + quotes
    for engine in FAN_OUT:
        counts[engine] += trades
    return counts


def expected_counts(trades: int, quotes: int, events: Mapping[str, int]) -> dict[str, int]:
    """What each engine must process: its tasks, plus every event of its family."""
    expected = task_counts(trades, quotes)
    for family in FAMILIES:
        for engine in family.subscribers:
            expected[engine] += events[family.pattern]
    return expected


def events_received(progress: Mapping[str, Progress], trades: int, quotes: int) -> dict[str, int]:
    """Events each engine processed: its ``succeeded`` minus the tasks it was sent."""
    tasks = task_counts(trades, quotes)
    return {engine: p.succeeded - tasks[engine] for engine, p in progress.items()}


def quantile(samples: list[float], q: float) -> float | None:
    """The nearest-rank quantile ``q`` of ``samples`` (None when empty)."""
    if not samples:
        return None
    ordered = sorted(samples)
    return ordered[max(1, math.ceil(q * len(ordered) - 1e-9)) - 1]


@dataclass(slots=True)
class VaRRun:
    """The outcome of the VaR requests."""

    requests: int
    seconds: list[float] = field(default_factory=list)
    """Round trip of each answered request."""
    failures: list[str] = field(default_factory=list)
    results: dict[str, VaRResult] = field(default_factory=dict)
    """The first result of each method."""
    inconsistent: int = 0
    """Results unlike the first of their method: the risk state no longer changes."""
    processed: int | None = None
    """Requests the risk engine's counters show it processed."""

    @property
    def ok(self) -> bool:
        return (
            not self.failures
            and not self.inconsistent
            and len(self.seconds) == self.requests == self.processed
            and all(r.var > 0 for r in self.results.values())
        )

    def ms(self, q: float) -> float | None:
        value = quantile(self.seconds, q)
        return None if value is None else value * 1000


async def request_var(client: Client, requests: int, timeout: float) -> VaRRun:
    """Request the VaR of :data:`PORTFOLIO` ``requests`` times, one at a time, alternating
    the methods; each round trip is timed in this process."""
    run = VaRRun(requests)
    portfolios = {m: Portfolio(positions=PORTFOLIO, method=m) for m in METHODS}
    for n in range(requests):
        method = METHODS[n % len(METHODS)]
        begun = time.perf_counter()
        try:
            # cast: Task.request is typed with the handler's return, here a coroutine's
            reply = await calculate_var.request(portfolios[method], timeout=timeout)
            result = cast(VaRResult, reply)
        except NautilusTasksError as exc:
            run.failures.append(f"{type(exc).__name__}: {exc}")
            continue
        run.seconds.append(time.perf_counter() - begun)
        first = run.results.setdefault(method, result)
        run.inconsistent += result != first
    return run


async def alerts_summary(timeout: float) -> AlertSummary | str:
    """What the alerts engine recorded, by request; or why it could not say."""
    try:
        return cast(AlertSummary, await summary.request(timeout=timeout))
    except NautilusTasksError as exc:
        return f"{type(exc).__name__}: {exc}"


@dataclass(frozen=True, slots=True)
class FlowReport:
    """The events and requests of one run."""

    quotes: int
    """Quotes sent to market data: each must be published once."""
    published: dict[str, int]
    received: dict[str, int]
    alerts: AlertSummary | str
    var: VaRRun

    def family_ok(self, family: Family) -> bool:
        count = self.published[family.pattern]
        return all(self.received.get(e) == count for e in family.subscribers)

    @property
    def alerts_ok(self) -> bool:
        recorded = self.alerts.total if isinstance(self.alerts, AlertSummary) else None
        return recorded == self.published[BREACHES]

    @property
    def ok(self) -> bool:
        return (
            self.published[QUOTES] == self.quotes
            and all(self.family_ok(f) for f in FAMILIES)
            and self.alerts_ok
            and self.var.ok
        )

    def summary(self) -> str:
        """Plain lines, easy to grep: one per family, one for the alerts, one for VaR."""
        lines = []
        for family in FAMILIES:
            got = " ".join(f"{e}={self.received.get(e)}" for e in family.subscribers)
            verdict = "OK" if self.family_ok(family) else "MISMATCH"
            count = self.published[family.pattern]
            lines.append(f"EVENTS {verdict}: {family.pattern} published {count}; received {got}")
        recorded = self.alerts.total if isinstance(self.alerts, AlertSummary) else self.alerts
        lines.append(
            f"ALERTS {'OK' if self.alerts_ok else 'MISMATCH'}: breach alerts raised"
            f" {self.published[BREACHES]}, recorded by alerts {recorded}"
        )
        var = self.var
        lines.append(
            f"VAR {'OK' if var.ok else 'MISMATCH'}: {var.requests} requests,"
            f" {len(var.seconds)} replies, risk processed {var.processed};"
            f" round trip p50 {_ms(var.ms(0.5))} ms p99 {_ms(var.ms(0.99))} ms"
        )
        return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def _yes(good: bool) -> str:
    return "yes" if good else "NO"


def render_flows(report: FlowReport) -> Table:
    """The second table: events per family and engine, breach alerts, VaR round trips."""
    table = Table(
        title="events and requests",
        caption=(
            "risk.breach.#: the critical breach alerts risk raised; received: processed"
            " minus tasks; VaR: requests, replies, round trip timed in the demo"
        ),
    )
    for column in ("flow", "published", "engine", "received", "p50 ms", "p99 ms", "ok"):
        table.add_column(column, justify="left" if column in ("flow", "engine") else "right")
    for family in FAMILIES:
        count = report.published[family.pattern]
        for engine in family.subscribers:
            got = report.received.get(engine)
            table.add_row(
                *(family.pattern, str(count), engine, str(got), "", "", _yes(got == count)),
                end_section=engine == family.subscribers[-1],
            )
    var = report.var
    table.add_row(
        *("VaR request", str(var.requests), "risk", str(len(var.seconds))),
        *(_ms(var.ms(0.5)), _ms(var.ms(0.99)), _yes(var.ok)),
    )
    return table


def describe_var(run: VaRRun) -> list[str]:
    """One line per method: the VaR figures the requests returned."""
    return [
        f"{r.confidence:.0%} {method} VaR of the demo portfolio (value {r.value:,.0f}):"
        f" {r.var:,.2f}, expected shortfall {r.expected_shortfall:,.2f},"
        f" over {r.observations} quote-to-quote returns"
        for method, r in run.results.items()
    ]
