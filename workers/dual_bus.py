"""The dual-bus layout of seed 004, on two embedded Valkey servers.

Engine logic (trades, risk checks, breach alerts) runs on the ``default`` bus; market data
events (``market.#``, the quotes) run on a separate ``marketdata`` bus, so a flood of quotes
never competes with engine logic for one server. Risk, factors and analytics subscribe to
``market.quote.*``, so each has an inbox on both buses and one worker per bus.

    python -m workers.dual_bus [--trades 2000]

It starts both servers, runs every engine's workers in this process, sends the trades and
quotes, waits until every message is processed, prints where each engine's work happened,
checks it on each server directly, and stops everything. Exit status 0 when it all adds up.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sys
import tempfile
from pathlib import Path

import orjson
from rich.console import Console
from rich.table import Table

from engines.alerts import alerts
from engines.analytics import analytics
from engines.factors import factors
from engines.marketdata import marketdata
from engines.risk import risk
from nautilus_tasks import BusConfig, Buses, Client, WorkerConfig
from nautilus_tasks.embedded import EmbeddedServer
from nautilus_tasks.worker import Worker
from nautilus_tasks.worker.runner import workers_for
from workers.feed import make_market, send_market

log = logging.getLogger("workers.dual_bus")
ENGINES = [marketdata, risk, factors, analytics, alerts]


def processed(workers: list[Worker]) -> dict[tuple[str, str], int]:
    """Succeeded messages per (engine, bus url), from the workers' own counters."""
    out: dict[tuple[str, str], int] = {}
    for worker in workers:
        key = (worker.engine.name, worker.broker.url)
        out[key] = out.get(key, 0) + worker.stats.counts["succeeded"]
    return out


async def server_counts(client: Client) -> dict[tuple[str, str], int]:
    """The same, read from each server's stats hash (what the workers reported there)."""
    out: dict[tuple[str, str], int] = {}
    for link in client.links.values():
        for engine in ENGINES:
            info = await link.broker.inspect(engine.name)
            total = sum(
                orjson.loads(raw)["counts"].get("succeeded", 0) for raw in info.stats.values()
            )
            out[(engine.name, link.broker.url)] = total
    return out


async def wait_done(workers: list[Worker], expected: dict[str, int], deadline: float) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while True:
        done: dict[str, int] = {}
        for (engine, _), n in processed(workers).items():
            done[engine] = done.get(engine, 0) + n
        if all(done.get(e, 0) >= n for e, n in expected.items()):
            return
        if loop.time() > end:
            raise SystemExit(f"not done within {deadline}s: {done} of {expected}")
        await asyncio.sleep(0.1)  # progress polling of the demo, not a test


async def run(trades: int, logic_url: str, market_url: str) -> int:
    buses = Buses(
        {"default": BusConfig.from_url(logic_url), "marketdata": BusConfig.from_url(market_url)},
        routes={"market.#": "marketdata"},
    )
    config = WorkerConfig(concurrency=50, grace=5, stats_interval=0.2)
    async with await Client.connect(buses, source="dual-bus") as client:
        client.bind(*ENGINES)
        workers = [w for e in ENGINES for w in workers_for(e, client, buses, config)]
        runs = [asyncio.create_task(w.run()) for w in workers]
        await asyncio.gather(*(w.started.wait() for w in workers))
        market = make_market(trades, trades // 2, random.Random(4))
        await send_market(client, market)
        quotes = len(market.quotes)
        expected = {"marketdata": trades + quotes}
        expected |= {e.name: trades + quotes for e in (risk, factors, analytics)}
        await wait_done(workers, expected, 120)
        counts = processed(workers)
        for worker in workers:
            worker.stop()
        await asyncio.gather(*runs)
        reported = await server_counts(client)
    return report(counts, reported, trades, quotes, logic_url, market_url)


def report(
    counts: dict[tuple[str, str], int],
    reported: dict[tuple[str, str], int],
    trades: int,
    quotes: int,
    logic_url: str,
    market_url: str,
) -> int:
    table = Table(
        title=f"dual bus: {trades} trades on engine logic, {quotes} quotes on market data"
    )
    for col in ("engine", "bus", "processed", "on the server"):
        table.add_column(col, justify="left" if col in ("engine", "bus") else "right")
    ok = True
    for (engine, url), n in sorted(counts.items()):
        bus = "default" if url == logic_url else "marketdata"
        table.add_row(engine, bus, str(n), str(reported.get((engine, url), 0)))
        ok &= reported.get((engine, url), 0) == n
    Console().print(table)
    for engine in ("risk", "factors", "analytics"):
        ok &= counts.get((engine, market_url), 0) == quotes  # the quote events, on market data
        ok &= counts.get((engine, logic_url), 0) == trades  # the trade tasks, on engine logic
    print(
        "OK: quotes went over the marketdata bus, tasks over the default bus" if ok else "MISMATCH"
    )
    return 0 if ok else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trades", type=int, default=2000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    with tempfile.TemporaryDirectory() as tmp:
        logic, market = EmbeddedServer(Path(tmp, "logic")), EmbeddedServer(Path(tmp, "market"))
        with logic, market:
            code = asyncio.run(run(args.trades, logic.url, market.url))
    sys.exit(code)


if __name__ == "__main__":
    main()
