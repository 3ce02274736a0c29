"""The table printed at the end of a bench run."""

from __future__ import annotations

from typing import Any

from rich.table import Table


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, list):
        return ", ".join(_fmt(v) for v in value)
    return str(value)


def _latency(p: dict[str, Any]) -> str:
    if not p.get("n"):
        return "no samples"
    return f"p50 {p['p50_ms']:.2f} / p90 {p['p90_ms']:.2f} / p99 {p['p99_ms']:.2f} ms (n={p['n']})"


def rows(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(scenario, what, figure) lines for the results of a run."""
    out: list[tuple[str, str, str]] = []
    for mode, r in results.get("enqueue", {}).items():
        out.append(("enqueue", mode, f"{_fmt(r['per_second'])}/s"))
        out.append(
            ("enqueue", f"{mode}: producer CPU/op", f"{_fmt(r['producer_cpu_us_per_op'])} µs")
        )
    for name, r in results.items():
        if name.startswith("throughput_"):
            label = f"throughput {r['processes']} worker{'s' if r['processes'] > 1 else ''}"
            out.append((label, "processed", f"{_fmt(r['per_second'])}/s (n={_fmt(r['n'])})"))
            out.append((label, "worker CPU/task", f"{_fmt(r.get('worker_cpu_us_per_task'))} µs"))
            out.append((label, "producer CPU/task", f"{_fmt(r['producer_cpu_us_per_task'])} µs"))
            out.append((label, "server CPU/task", f"{_fmt(r.get('server_cpu_us_per_task'))} µs"))
            out.append((label, "worker RSS", f"{_fmt(r['worker_rss_mb'])} MiB"))
    if "latency" in results:
        r = results["latency"]
        out.append(("latency (one-way)", f"at {_fmt(r['rate'])}/s", _latency(r)))
    if "rpc" in results:
        out.append(("request/response", "round trip", _latency(results["rpc"])))
    if "critical" in results:
        r = results["critical"]
        out.append(("critical tier", "idle", _latency(r["idle"])))
        queued = f"with {_fmt(r['queued_at_start'])} low queued"
        out.append(("critical tier", queued, _latency(r["with_backlog"])))
        out.append(("critical tier", "p99 ratio backlog/idle", _fmt(r["p99_ratio"])))
    if "fanout" in results:
        r = results["fanout"]
        out.append(("fan-out x3", "publish", f"{_fmt(r['publish_per_second'])}/s"))
        out.append(("fan-out x3", "deliveries", f"{_fmt(r['deliveries_per_second'])}/s"))
        out.append(("fan-out x3", "latency", _latency(r["latency"])))
        out.append(("fan-out x3", "worker CPU/delivery",
                    f"{_fmt(r.get('worker_cpu_us_per_task'))} µs"))  # fmt: skip
    if "soak" in results:
        for key, value in results["soak"].items():
            out.append(("soak", key, _fmt(value)))
    return out


def table(data: dict[str, Any]) -> Table:
    meta = data["meta"]
    title = (
        f"nautilus-tasks {meta['nautilus_tasks']} bench: {meta['server']},"
        f" Python {meta['python']}, {meta['cpus']} CPUs"
    )
    out = Table(title=title)
    out.add_column("scenario")
    out.add_column("what")
    out.add_column("figure", justify="right")
    for row in rows(data["results"]):
        out.add_row(*row)
    audit = meta.get("audit")
    if audit is not None:
        out.add_row(*audit_row(audit))
    return out


def audit_row(audit: dict[str, Any]) -> tuple[str, str, str]:
    """The line that says whether the workers audited to PostgreSQL, and how much."""
    if not audit["on"]:
        return ("PostgreSQL audit", "off", "-")
    figure = (
        f"{_fmt(audit['audit_written'])} rows written, {_fmt(audit['audit_dropped'])} dropped,"
        f" {_fmt(audit['audit_write_errors'])} write errors"
    )
    return ("PostgreSQL audit", f"on, schema {audit['schema']}", figure)
