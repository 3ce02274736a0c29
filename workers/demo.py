"""End-to-end demo: the Procfile's engine workers process N trades and quotes on a real server.

    python -m workers.demo [--trades 10000] [--quotes N] [--var-requests 300] [--redis URL]

Without ``--redis`` (or ``NT_REDIS_URL``) it starts, or reuses, the per-user embedded
Valkey, so it runs from a clean clone with no Redis installed. Each run uses a fresh key
prefix, so the counts it checks are exactly its own, and deletes its keys at the end.

Steps: start the workers with honcho; register the taps that count published events
(:mod:`workers.flows`); wait for each engine's consumer and event subscriptions; send the
trades and quotes to ``marketdata`` in pipelined batches. Market data fans each trade out to
risk, factors and analytics as tasks, and publishes each quote on ``market.quote.<SYMBOL>``,
to which those three subscribe; risk publishes a critical ``risk.breach.detected`` when a
trade breaches a position limit, to which alerts subscribes. Wait until every engine has
processed every task and event meant for it and its streams are empty; then request the VaR
of a portfolio from risk, one request at a time, and ask alerts what it recorded. Print two
tables (per engine; per event flow and the VaR round trips), stop the workers and wait until
every process honcho started has exited. Exit status 0 when every count adds up exactly (see
:class:`workers.progress.Report` and :class:`workers.flows.FlowReport`) and every worker
stopped by itself (none had to be killed), else 1.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from engines.alerts import alerts
from engines.risk import risk
from nautilus_tasks import BusConfig, Client
from nautilus_tasks.embedded import ensure_daemon, stop_daemon
from nautilus_tasks.errors import NautilusTasksError

from .feed import Market, make_market, send_market
from .flows import (
    FlowReport,
    alerts_summary,
    describe_var,
    events_received,
    expected_counts,
    missing_subscriptions,
    published,
    register_taps,
    render_flows,
    request_var,
)
from .procs import check_alive, delete_keys, log_tail, running_workers
from .progress import (
    ENGINES,
    DemoError,
    Progress,
    Report,
    inspect,
    poll_engines,
    render,
    succeeded,
)

log = logging.getLogger("workers.demo")

POLL = 0.2
"""Seconds between two looks at the engines' streams and counters."""
QUIET = 3.0
"""Seconds without progress after which missing messages are taken as lost (see _settled)."""
COUNTERS_WAIT = 10.0
"""Seconds to wait for the risk counters to show the VaR requests (written once a second)."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m workers.demo", description=__doc__)
    parser.add_argument("--trades", type=int, default=10_000, help="trades to send (10000)")
    parser.add_argument(
        "--quotes", type=int, default=None, help="quotes to send (half the trades, at least 100)"
    )
    parser.add_argument(
        "--var-requests", type=int, default=300, help="VaR requests after the stream (300)"
    )
    parser.add_argument("--request-timeout", type=float, default=5.0, help="per request (s)")
    parser.add_argument(
        "--redis",
        default=os.environ.get("NT_REDIS_URL") or None,
        help="server URL [env NT_REDIS_URL]; default: the embedded Valkey",
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="processing deadline (s)")
    parser.add_argument("--start-timeout", type=float, default=60.0, help="worker start (s)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the random trades")
    args = parser.parse_args(argv)
    if args.trades < 1:
        parser.error("--trades must be at least 1")
    if args.quotes is None:
        args.quotes = max(100, args.trades // 2)
    if args.quotes < 0 or args.var_requests < 0:
        parser.error("--quotes and --var-requests must be at least 0")
    return args


def resolve_server(explicit: str | None) -> tuple[str, bool]:
    """The server URL, and whether this run started the embedded daemon."""
    if explicit:
        log.info("using the server at %s", explicit)
        return explicit, False
    url, started = ensure_daemon()
    log.info("using the embedded Valkey at %s (%s)", url, "started" if started else "reused")
    return url, started


async def wait_for_consumers(client: Client, proc: subprocess.Popen[bytes], within: float) -> None:
    """Until every engine has a consumer on each of its tier streams and its event
    subscriptions are registered, for ``within`` seconds. A worker registers after it
    joins its groups: an event published in between would not reach it."""
    deadline = time.monotonic() + within
    while True:
        missing = []
        for engine in ENGINES:
            info = await inspect(client.broker, engine)
            if not all(tier.consumers > 0 for tier in info.tiers):
                missing.append(engine)
        missing += await missing_subscriptions(client.broker)
        if not missing:
            log.info("every engine has a consumer and its subscriptions: %s", ", ".join(ENGINES))
            return
        check_alive(proc)
        if time.monotonic() > deadline:
            raise DemoError(f"not ready within {within:.0f}s: {', '.join(missing)}")
        await asyncio.sleep(POLL)


def _settled(progress: dict[str, Progress]) -> bool:
    """Nothing more can happen: the streams are empty, or messages were dead-lettered (a
    failed task is not retried, so the counts can no longer add up)."""
    values = progress.values()
    return all(p.empty for p in values) or any(p.dead for p in values)


@dataclass(frozen=True, slots=True)
class Seen:
    """One look at the bus: the engines, the events published, what each engine must do."""

    progress: dict[str, Progress]
    events: dict[str, int]
    expected: dict[str, int]

    @property
    def done(self) -> bool:
        return all(p.succeeded == self.expected[e] and p.empty for e, p in self.progress.items())


async def look(client: Client, market: Market, drained: dict[str, float]) -> Seen:
    """Poll the engines, then count the events published so far."""
    progress = await poll_engines(client.broker, drained)
    events = await published(client.broker)
    return Seen(progress, events, expected_counts(len(market.trades), len(market.quotes), events))


async def wait_until_done(
    client: Client, proc: subprocess.Popen[bytes], market: Market, within: float
) -> tuple[Seen, str | None]:
    """Poll until every engine processed what it was sent and its streams are empty.

    Returns the last look and None, or a reason: ``within`` seconds passed, the workers
    died, or the engines went quiet with messages missing (dead-lettered, say).
    """
    deadline = time.monotonic() + within
    drained: dict[str, float] = {}
    last: tuple[tuple[int, int], ...] = ()
    changed = time.monotonic()
    while True:
        seen = await look(client, market, drained)
        if seen.done:
            return seen, None
        now = time.monotonic()
        state = tuple((p.succeeded, p.dead) for p in seen.progress.values())
        if state != last:
            last, changed = state, now
        elif now - changed > QUIET and _settled(seen.progress):
            return seen, f"no progress for {QUIET:.0f}s with messages missing or dead-lettered"
        if proc.poll() is not None:
            return seen, f"the workers exited early (honcho exit code {proc.returncode})"
        if now > deadline:
            return seen, f"not every engine processed what it was sent within {within:.0f}s"
        await asyncio.sleep(POLL)


async def wait_for_count(client: Client, engine: str, target: int, within: float) -> int:
    """The engine's processed count once it reaches ``target``, or after ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        count = await succeeded(client.broker, engine)
        if count >= target or time.monotonic() > deadline:
            return count
        await asyncio.sleep(POLL)


async def request_flows(
    client: Client, market: Market, report: Report, seen: Seen, args: argparse.Namespace
) -> FlowReport:
    """The VaR requests and the alerts summary, after the stream; then the flows' counts."""
    before = report.progress["risk"].succeeded
    log.info("requesting the VaR %d times", args.var_requests)
    var = await request_var(client, args.var_requests, args.request_timeout)
    alerted = await alerts_summary(args.request_timeout)
    after = await wait_for_count(client, "risk", before + args.var_requests, COUNTERS_WAIT)
    var.processed = after - before
    received = events_received(report.progress, report.trades, report.quotes)
    return FlowReport(len(market.quotes), seen.events, received, alerted, var)


async def drive(
    url: str, prefix: str, args: argparse.Namespace, proc: subprocess.Popen[bytes]
) -> tuple[Report, FlowReport | None]:
    """Connect, wait for the workers, send the market, wait for it to be processed, then
    run the requests. The flows are None when the stream already failed."""
    market = make_market(args.trades, args.quotes, random.Random(args.seed))
    async with await Client.connect(BusConfig.from_url(url, prefix=prefix), source="demo") as c:
        c.bind(risk, alerts)
        await register_taps(c.broker)
        await wait_for_consumers(c, proc, args.start_timeout)
        started = await send_market(c, market)
        seen, problem = await wait_until_done(c, proc, market, args.timeout)
        report = Report(
            *(len(market.trades), len(market.quotes), started, time.monotonic()),
            *(seen.progress, seen.expected, problem),
        )
        if problem is not None:
            return report, None
        return report, await request_flows(c, market, report, seen, args)


async def server_version(url: str) -> str:
    """Connect once, before any worker starts: an unreachable server fails fast here."""
    async with await Client.connect(BusConfig.from_url(url), source="demo") as client:
        return await client.broker.server_version()


def print_reports(report: Report | None, flows: FlowReport | None) -> None:
    """Both tables and their grep-friendly lines, as far as the run got."""
    if report is None:
        return
    console = Console()
    console.print(render(report))
    print(report.summary())
    if flows is None:
        return
    console.print(render_flows(flows))
    print(flows.summary())
    for line in describe_var(flows.var):
        print(line)
    if flows.var.failures:
        print(f"{len(flows.var.failures)} VaR requests failed, the first: {flows.var.failures[0]}")


def run(url: str, args: argparse.Namespace) -> int:
    """One demo run on the server at ``url``; the exit status."""
    prefix = f"demo-{secrets.token_hex(4)}"
    log_path = Path(tempfile.gettempdir()) / f"nautilus-tasks-{prefix}.log"
    report: Report | None = None
    flows: FlowReport | None = None
    try:
        log.info("server: %s", asyncio.run(server_version(url)))
    except NautilusTasksError as exc:
        log.error("demo failed: %s", exc)
        return 1
    stopped_cleanly = False
    try:
        with running_workers(url, prefix, log_path) as workers:
            report, flows = asyncio.run(drive(url, prefix, args, workers.proc))
        stopped_cleanly = bool(workers.clean)
    except (DemoError, NautilusTasksError) as exc:
        log.error("demo failed: %s", exc)
    finally:
        try:
            log.info("deleted %d keys of prefix %s", asyncio.run(delete_keys(url, prefix)), prefix)
        except Exception as exc:  # the server may be the very thing that failed
            log.warning("could not delete the keys of prefix %s: %s", prefix, exc)
    print_reports(report, flows)
    ok = report is not None and report.ok and flows is not None and flows.ok and stopped_cleanly
    if ok:
        log_path.unlink(missing_ok=True)
        return 0
    if report is not None and report.problem:
        log.error("%s", report.problem)
    log.error("worker output kept in %s; its end:\n%s", log_path, log_tail(log_path))
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        url, started = resolve_server(args.redis)
    except NautilusTasksError as exc:
        log.error("no server: %s", exc)
        return 1
    try:
        return run(url, args)
    finally:
        if started:
            stop_daemon()
            log.info("stopped the embedded Valkey this run started")


if __name__ == "__main__":
    sys.exit(main())
