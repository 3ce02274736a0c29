"""``nautilus-tasks inspect``: streams, pending work and consumers, per engine and tier."""

from __future__ import annotations

from typing import Any

import click
import orjson
from rich.console import Console
from rich.table import Table

from ..broker.base import EngineInfo
from ..client import Client
from ..config import BusConfig
from .common import bus_config, bus_options, run


def _processed(info: EngineInfo) -> dict[str, int]:
    totals: dict[str, int] = {}
    for raw in info.stats.values():
        for key, value in orjson.loads(raw).get("counts", {}).items():
            totals[key] = totals.get(key, 0) + int(value)
    return totals


def as_dict(info: EngineInfo) -> dict[str, Any]:
    """A JSON-ready view of one engine."""
    return {
        "engine": info.engine,
        "tiers": [
            {
                "tier": t.tier.label,
                "length": t.length,
                "pending": t.pending,
                "consumers": t.consumers,
                "lag": t.lag,
                "oldest_pending_age_ms": t.oldest_pending_age_ms,
            }
            for t in info.tiers
        ],
        "delayed": info.delayed,
        "dead": info.dead,
        "counts": _processed(info),
    }


async def collect(config: BusConfig, engine: str | None) -> list[dict[str, Any]]:
    """Inspect one engine, or every engine found on the bus."""
    async with await Client.connect(config) as client:
        names = [engine] if engine else await client.broker.engines()
        return [as_dict(await client.broker.inspect(name)) for name in names]


def _table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="nautilus-tasks inspect")
    for col in ("engine", "tier", "length", "pending", "consumers", "oldest pending", "lag"):
        table.add_column(col, justify="left" if col in ("engine", "tier") else "right")
    for row in rows:
        for tier in row["tiers"]:
            age = tier["oldest_pending_age_ms"]
            table.add_row(
                row["engine"],
                tier["tier"],
                str(tier["length"]),
                str(tier["pending"]),
                str(tier["consumers"]),
                "-" if age is None else f"{age / 1000:.1f}s",
                "-" if tier["lag"] is None else str(tier["lag"]),
            )
        counts = ", ".join(f"{k} {v}" for k, v in sorted(row["counts"].items())) or "none"
        table.add_row(
            row["engine"], "delayed/dead", str(row["delayed"]), str(row["dead"]), "", "", ""
        )
        table.add_row(row["engine"], "counts", counts, "", "", "", "", end_section=True)
    return table


@click.command("inspect")
@click.argument("engine", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@bus_options
def inspect_command(engine: str | None, as_json: bool, redis_url: str | None, prefix: str) -> None:
    """Show stream length, pending, consumers, oldest pending age and lag per tier."""
    rows = run(collect(bus_config(redis_url, prefix), engine))
    if as_json:
        click.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return
    Console().print(_table(rows))
