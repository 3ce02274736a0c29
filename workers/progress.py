"""What the demo reads back from the bus: per-engine counts, latency and emptiness.

The counts and latency histograms are those each worker writes every second to its
engine's stats hash (``P:{E}:stats``); emptiness comes from the tier streams themselves,
so the time an engine finished is seen without waiting for the next stats write.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import orjson
from rich.table import Table

from nautilus_tasks.broker.base import Broker, EngineInfo
from nautilus_tasks.metrics import Histogram

ENGINES = ("marketdata", "risk", "factors", "analytics", "alerts")
"""The demo's engines, each after the one it receives from: see :func:`poll_engines`."""
UPSTREAM = {
    "risk": "marketdata",
    "factors": "marketdata",
    "analytics": "marketdata",
    "alerts": "risk",
}
"""Where each engine's messages come from (market data's come from the demo)."""


class DemoError(Exception):
    """The demo cannot go on (workers died, or never came up)."""


@dataclass(frozen=True, slots=True)
class Progress:
    """One engine as last seen."""

    engine: str
    succeeded: int
    dead: int
    empty: bool
    latency: Histogram
    drained_at: float | None
    """Monotonic time at which its streams were first seen empty with nothing more to come."""


@dataclass(frozen=True, slots=True)
class Report:
    """The outcome of the stream of trades and quotes."""

    trades: int
    quotes: int
    started: float
    finished: float
    progress: dict[str, Progress]
    expected: dict[str, int]
    """Messages (tasks and events) each engine must have processed."""
    problem: str | None

    def sent(self, engine: str) -> int:
        """Messages sent to ``engine``: the tasks and the events of its subscriptions."""
        return self.expected[engine]

    @property
    def ok(self) -> bool:
        """Every engine processed every message sent to it, and nothing went wrong."""
        return self.problem is None and all(
            p.succeeded == self.sent(p.engine) for p in self.progress.values()
        )

    def summary(self) -> str:
        """One plain line, easy to grep: ``OK: 500 trades and 250 quotes sent; processed
        marketdata=750 ...``."""
        counts = " ".join(f"{e}={p.succeeded}" for e, p in self.progress.items())
        verdict = "OK" if self.ok else "MISMATCH"
        sent = f"{self.trades} trades and {self.quotes} quotes sent"
        return f"{verdict}: {sent}; processed {counts}"


async def inspect(broker: Broker, engine: str, attempts: int = 5) -> EngineInfo:
    """``broker.inspect(engine)``, tried again on ValueError.

    Inspect reads a tier's pending count, then the oldest pending entry; when the last
    pending entry is acked in between, it fails parsing an empty XPENDING summary. That
    race is transient, so another look settles it.
    """
    for attempt in range(1, attempts + 1):
        try:
            return await broker.inspect(engine)
        except ValueError:
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")


def _totals(info: EngineInfo) -> tuple[int, Histogram]:
    """Succeeded count and merged latency over every consumer of the engine."""
    succeeded = 0
    parts = []
    for raw in info.stats.values():
        data = orjson.loads(raw)
        succeeded += int(data.get("counts", {}).get("succeeded", 0))
        parts.append(Histogram.from_json(data.get("latency", {})))
    return succeeded, Histogram.merged(parts)


def _is_empty(info: EngineInfo) -> bool:
    return info.delayed == 0 and all(t.length == 0 and t.pending == 0 for t in info.tiers)


async def succeeded(broker: Broker, engine: str) -> int:
    """The engine's processed count, summed over its consumers' last stats writes."""
    return _totals(await inspect(broker, engine))[0]


async def poll_engines(broker: Broker, drained: dict[str, float]) -> dict[str, Progress]:
    """Look at every engine once; record in ``drained`` when each one finished.

    Entries are deleted when acked, so empty streams mean all work is done, provided no
    more can come: an engine acks a message only after the tasks and events its handler
    sent are stored, so once the (earlier polled) streams of an engine's upstream are
    empty for good, an empty engine is finished. Call this only after everything was sent.
    """
    progress: dict[str, Progress] = {}
    for engine in ENGINES:
        info = await inspect(broker, engine)
        succeeded, latency = _totals(info)
        empty = _is_empty(info)
        upstream = UPSTREAM.get(engine)
        upstream_done = upstream is None or upstream in drained
        if empty and upstream_done and engine not in drained:
            drained[engine] = time.monotonic()
        progress[engine] = Progress(
            engine, succeeded, info.dead, empty, latency, drained.get(engine)
        )
    return progress


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def render(report: Report) -> Table:
    """The per-engine table: counts, throughput and end-to-end latency.

    Throughput is processed messages over the time from the first send until the engine's
    streams were seen empty for good (the total: until the last engine's were).
    """
    ends = [p.drained_at for p in report.progress.values()]
    last = report.finished if None in ends else max(e for e in ends if e is not None)
    elapsed = max(last - report.started, 1e-9)
    table = Table(
        title=f"nautilus-tasks demo: {report.trades:,} trades, {report.quotes:,} quotes",
        caption="sent: tasks + events; latency: enqueue to handler end, queueing included",
    )
    for column in ("engine", "sent", "processed", "dead", "msg/s", "p50 ms", "p99 ms", "ok"):
        table.add_column(column, justify="left" if column == "engine" else "right")
    for engine, p in report.progress.items():
        done = p.drained_at if p.drained_at is not None else report.finished
        rate = p.succeeded / max(done - report.started, 1e-9)
        good = p.succeeded == report.sent(engine)
        table.add_row(
            *(engine, str(report.sent(engine)), str(p.succeeded), str(p.dead)),
            *(f"{rate:,.0f}", _ms(p.latency.quantile(0.5)), _ms(p.latency.quantile(0.99))),
            "yes" if good else "NO",
            end_section=engine == ENGINES[-1],
        )
    sent = sum(report.sent(e) for e in report.progress)
    processed = sum(p.succeeded for p in report.progress.values())
    dead = sum(p.dead for p in report.progress.values())
    table.add_row(
        *("total", str(sent), str(processed), str(dead), f"{processed / elapsed:,.0f}", "", ""),
        "yes" if report.ok else "NO",
        style="bold",
    )
    return table
