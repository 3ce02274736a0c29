"""The pure pieces of the peers benchmark: percentiles, medians of runs, ratios and tables.

No I/O here, so that tests can check them without a server or any peer installed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

OURS = "nautilus-tasks"
OURS_AUTOPIPE = "nautilus-tasks-autopipe"  # body (a) through engine.redis
OUR_ROWS = (OURS, OURS_AUTOPIPE)
RAW = "raw"
METRICS = ("enqueue", "process_a", "process_b", "lat_p50", "lat_p99")


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) by linear interpolation between closest ranks."""
    if not values:
        return None
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, not {q}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Iterable[float | None]) -> float | None:
    """The median of the values that are not None (None if there are none)."""
    present = [v for v in values if v is not None]
    return percentile(present, 50.0)


def rate(count: float, seconds: float) -> float | None:
    """Tasks per second, or None for an empty or instantaneous measurement."""
    return count / seconds if count > 0 and seconds > 0 else None


def summarize(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Median of each metric over the runs of one system; flags and counts are kept as lists."""
    out: dict[str, Any] = {metric: median(run.get(metric) for run in runs) for metric in METRICS}
    for key in ("enqueue_n", "process_a_n", "process_b_n", "lat_n"):
        out[key] = [run.get(key) for run in runs]
    out["notes"] = sorted({note for run in runs for note in run.get("notes", ())})
    out["errors"] = [err for run in runs for err in run.get("errors", ())]
    return out


@dataclass(frozen=True)
class Ratio:
    """One of issue 5's targets: the measured value against its threshold."""

    label: str
    value: float | None
    target: str
    met: bool | None

    def render(self) -> str:
        shown = "n/a" if self.value is None else f"{self.value:.2f}"
        verdict = {True: "met", False: "NOT met", None: "unknown"}[self.met]
        return f"{self.label}: {shown} (target {self.target}; {verdict})"


def _div(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _best(
    summary: Mapping[str, Mapping[str, Any]], metric: str, among: Iterable[str] | None = None
) -> tuple[str | None, float | None]:
    """The fastest row on a higher-is-better metric: among the given names, or among the
    peers (neither ours nor raw) by default."""
    names = set(among) if among is not None else set(summary) - {*OUR_ROWS, RAW}
    rows = [(name, s[metric]) for name, s in summary.items() if name in names]
    present = [(name, value) for name, value in rows if value is not None]
    return max(present, key=lambda p: p[1]) if present else (None, None)


def _ratio(label: str, value: float | None, op: str, threshold: float) -> Ratio:
    met = None if value is None else (value >= threshold if op == ">=" else value <= threshold)
    return Ratio(label, value, f"{op} {threshold:g}", met)


def ratios(summary: Mapping[str, Mapping[str, Any]]) -> list[Ratio]:
    """Issue 5's targets 1-4, from the medians of one run of the benchmark.

    Target 1 takes the faster of our two rows (the plain body (a), or the one through
    ``engine.redis``); the others take the plain row (the engine.redis one if it is alone).
    """
    ours = summary.get(OURS) or summary.get(OURS_AUTOPIPE) or {}
    raw = summary.get(RAW, {})
    peer_a, best_a = _best(summary, "process_a")
    row_a, ours_a = _best(summary, "process_a", among=OUR_ROWS)
    peer_e, best_e = _best(summary, "enqueue")
    plain, piped = summary.get(OURS, {}), summary.get(OURS_AUTOPIPE, {})
    return [
        _ratio(
            f"1. processed (a), best of ours / fastest peer ({row_a} / {peer_a})",
            _div(ours_a, best_a),
            ">=",
            4,
        ),
        Ratio(
            "   processed (a), engine.redis row / plain row (for information)",
            _div(piped.get("process_a"), plain.get("process_a")),
            "none",
            None,
        ),
        _ratio(
            "2. processed (b), ours / raw loop",
            _div(ours.get("process_b"), raw.get("process_b")),
            ">=",
            0.6,
        ),
        _ratio(
            "3. enqueue, ours / raw pipelined XADD",
            _div(ours.get("enqueue"), raw.get("enqueue")),
            ">=",
            0.75,
        ),
        _ratio(
            f"3. enqueue, ours / fastest peer ({peer_e})",
            _div(ours.get("enqueue"), best_e),
            ">=",
            5,
        ),
        _ratio("4. latency p50, ours (ms)", ours.get("lat_p50"), "<=", 1.0),
        _ratio(
            "4. latency p99, ours / raw loop",
            _div(ours.get("lat_p99"), raw.get("lat_p99")),
            "<=",
            1.5,
        ),
        Ratio(
            "   latency p50, ours / raw loop (for information)",
            _div(ours.get("lat_p50"), raw.get("lat_p50")),
            "none",
            None,
        ),
    ]


def _num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _latency(summary: Mapping[str, Any]) -> str:
    p50, p99 = summary.get("lat_p50"), summary.get("lat_p99")
    if p50 is None:
        return "-"
    return f"{_num(p50, 1)} / {_num(p99, 1)} ms"


def table(summary: Mapping[str, Mapping[str, Any]], labels: Mapping[str, str]) -> str:
    """A Markdown table of the medians, one row per system, in the given order."""
    lines = [
        "| system | enqueue tasks/s | processed tasks/s (a) | processed tasks/s (b) "
        "| latency p50 / p99 at the offered rate | notes |",
        "|---|---:|---:|---:|---|---|",
    ]
    for name, s in summary.items():
        notes = list(s.get("notes", ()))
        if s.get("errors"):
            notes.append(f"{len(s['errors'])} error(s)")
        cells = [
            labels.get(name, name),
            _num(s.get("enqueue")),
            _num(s.get("process_a")),
            _num(s.get("process_b")),
            _latency(s),
            "; ".join(notes),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def settings_table(rows: Sequence[Mapping[str, str]]) -> str:
    """A Markdown table of each system's versions, concurrency setting and enqueue API."""
    lines = [
        "| system | versions | concurrency (1 worker process) | enqueue API |",
        "|---|---|---|---|",
    ]
    for row in rows:
        cells = [row["label"], row["versions"], row["concurrency"], row["enqueue_api"]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def counts_table(summary: Mapping[str, Mapping[str, Any]], labels: Mapping[str, str]) -> str:
    """The task counts of each run (the N actually used, since phases are time-capped)."""
    lines = ["| system | enqueued | processed (a) | processed (b) | latency samples |"]
    lines.append("|---|---|---|---|---|")
    for name, s in summary.items():
        cells = [labels.get(name, name)]
        for key in ("enqueue_n", "process_a_n", "process_b_n", "lat_n"):
            cells.append(", ".join("-" if v is None else str(v) for v in s.get(key, [])))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
