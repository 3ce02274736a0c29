"""End-to-end demo: the Procfile's four engine workers process N trades on a real server.

    python -m workers.demo [--trades 10000] [--redis URL]

Without ``--redis`` (or ``NT_REDIS_URL``) it starts, or reuses, the per-user embedded
Valkey, so it runs from a clean clone with no Redis installed. Each run uses a fresh key
prefix, so the counts it checks are exactly its own, and deletes its keys at the end.

Steps: start the workers with honcho, wait for each engine's consumer, send the trades to
``marketdata.ingest_trade`` in pipelined batches, wait until every engine has processed
every trade and its streams are empty, print a table, stop the workers. Exit status 0 when
every engine processed exactly as many trades as were sent, else 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import redis.asyncio as aioredis
from rich.console import Console

from engines.marketdata import ingest_trade
from engines.models import Trade
from nautilus_tasks import BusConfig, Client
from nautilus_tasks.embedded import ensure_daemon, stop_daemon
from nautilus_tasks.errors import NautilusTasksError
from nautilus_tasks.message import now_ms

from .progress import ENGINES, DemoError, Progress, Report, inspect, poll_engines, render

log = logging.getLogger("workers.demo")

ROOT = Path(__file__).resolve().parent.parent
PROCFILE = ROOT / "Procfile"
BATCH = 500
POLL = 0.2
"""Seconds between two looks at the engines' streams and counters."""
QUIET = 3.0
"""Seconds without progress after which missing trades are taken as lost (see _settled)."""
STOP_TIMEOUT = 30.0
SYMBOLS = {"AAPL": 190.0, "MSFT": 410.0, "NVDA": 120.0, "AMZN": 180.0, "TSLA": 240.0}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m workers.demo", description=__doc__)
    parser.add_argument("--trades", type=int, default=10_000, help="trades to send (10000)")
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
    return args


def resolve_server(explicit: str | None) -> tuple[str, bool]:
    """The server URL, and whether this run started the embedded daemon."""
    if explicit:
        log.info("using the server at %s", explicit)
        return explicit, False
    url, started = ensure_daemon()
    log.info("using the embedded Valkey at %s (%s)", url, "started" if started else "reused")
    return url, started


def make_trades(count: int, rng: random.Random) -> list[Trade]:
    """Random-walk prices over a few symbols; some symbols arrive untidy, to be normalised."""
    prices = dict(SYMBOLS)
    names = list(prices)
    start = now_ms()
    trades = []
    for i in range(count):
        symbol = rng.choice(names)
        prices[symbol] *= 1 + rng.gauss(0, 0.001)
        raw_symbol = f" {symbol.lower()} " if rng.random() < 0.1 else symbol
        trades.append(
            Trade(
                id=f"T{i:08d}",
                symbol=raw_symbol,
                side=rng.choice(("buy", "sell")),
                qty=float(rng.randint(1, 500)),
                price=round(prices[symbol], 4),
                ts=start + i,
            )
        )
    return trades


@contextlib.contextmanager
def running_workers(url: str, prefix: str, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The Procfile's workers under honcho, their output in ``log_path``; stopped on exit."""
    venv_bin = str(Path(sys.executable).parent)  # not resolved: a venv's python is a symlink
    env = {
        **os.environ,
        "NT_REDIS_URL": url,
        "NT_PREFIX": prefix,
        "PYTHONUNBUFFERED": "1",
        "PATH": os.pathsep.join([venv_bin, os.environ.get("PATH", "")]),
    }
    argv = [sys.executable, "-m", "honcho", "start", "-f", str(PROCFILE)]
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    log.info(
        "started the workers with honcho (pid %d), prefix %s, output in %s",
        *(proc.pid, prefix, log_path),
    )
    try:
        yield proc
    finally:
        stop_workers(proc)


def stop_workers(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM honcho's process group: honcho forwards one SIGTERM to each worker, which
    drains and exits. Each worker runs in its own session, so it is signalled only once."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            log.warning("honcho did not stop within %.0fs; killing it", STOP_TIMEOUT)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    log.info("workers stopped (honcho exit code %s)", proc.returncode)


def _check_alive(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        raise DemoError(f"the workers exited early (honcho exit code {proc.returncode})")


async def wait_for_consumers(client: Client, proc: subprocess.Popen[bytes], within: float) -> None:
    """Until every engine has a consumer on each of its tier streams, for ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        missing = []
        for engine in ENGINES:
            info = await inspect(client.broker, engine)
            if not all(tier.consumers > 0 for tier in info.tiers):
                missing.append(engine)
        if not missing:
            log.info("every engine has a consumer: %s", ", ".join(ENGINES))
            return
        _check_alive(proc)
        if time.monotonic() > deadline:
            raise DemoError(f"no consumer for {', '.join(missing)} within {within:.0f}s")
        await asyncio.sleep(POLL)


async def send_trades(client: Client, trades: Sequence[Trade]) -> float:
    """Send every trade in pipelined batches; returns the monotonic time of the first send."""
    started = time.monotonic()
    for offset in range(0, len(trades), BATCH):
        batch = trades[offset : offset + BATCH]
        await client.send_many(ingest_trade, [((trade,), {}) for trade in batch])
    log.info("sent %d trades in %.2fs", len(trades), time.monotonic() - started)
    return started


def _settled(progress: dict[str, Progress]) -> bool:
    """Nothing more can happen: the streams are empty, or trades were dead-lettered (a failed
    task is not retried, so the counts can no longer add up)."""
    values = progress.values()
    return all(p.empty for p in values) or any(p.dead for p in values)


async def wait_until_done(
    client: Client, proc: subprocess.Popen[bytes], expected: int, within: float
) -> tuple[dict[str, Progress], str | None]:
    """Poll until every engine processed ``expected`` trades and its streams are empty.

    Returns the last progress and None, or a reason: ``within`` seconds passed, the workers
    died, or the engines went quiet with trades missing (dead-lettered, say).
    """
    deadline = time.monotonic() + within
    drained: dict[str, float] = {}
    last: tuple[tuple[int, int], ...] = ()
    changed = time.monotonic()
    while True:
        progress = await poll_engines(client.broker, drained)
        if all(p.succeeded == expected and p.empty for p in progress.values()):
            return progress, None
        now = time.monotonic()
        state = tuple((p.succeeded, p.dead) for p in progress.values())
        if state != last:
            last, changed = state, now
        elif now - changed > QUIET and _settled(progress):
            return progress, f"no progress for {QUIET:.0f}s with trades missing or dead-lettered"
        if proc.poll() is not None:
            return progress, f"the workers exited early (honcho exit code {proc.returncode})"
        if now > deadline:
            return progress, f"not every engine processed {expected} trades within {within:.0f}s"
        await asyncio.sleep(POLL)


async def drive(
    url: str, prefix: str, args: argparse.Namespace, proc: subprocess.Popen[bytes]
) -> Report:
    """Connect, wait for the workers, send the trades and wait for them to be processed."""
    trades = make_trades(args.trades, random.Random(args.seed))
    async with await Client.connect(BusConfig.from_url(url, prefix=prefix), source="demo") as c:
        await wait_for_consumers(c, proc, args.start_timeout)
        started = await send_trades(c, trades)
        progress, problem = await wait_until_done(c, proc, len(trades), args.timeout)
    return Report(len(trades), started, time.monotonic(), progress, problem)


async def server_version(url: str) -> str:
    """Connect once, before any worker starts: an unreachable server fails fast here."""
    async with await Client.connect(BusConfig.from_url(url), source="demo") as client:
        return await client.broker.server_version()


async def delete_keys(url: str, prefix: str) -> int:
    """Delete every key of this run (``prefix:*``); returns how many."""
    conn = aioredis.Redis.from_url(url)
    deleted = 0
    try:
        batch: list[bytes] = []
        async for key in conn.scan_iter(match=f"{prefix}:*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                deleted += await conn.delete(*batch)
                batch.clear()
        if batch:
            deleted += await conn.delete(*batch)
    finally:
        await conn.aclose()
    return deleted


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text("utf-8", "replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(cannot read {path}: {exc})"


def run(url: str, args: argparse.Namespace) -> int:
    """One demo run on the server at ``url``; the exit status."""
    prefix = f"demo-{secrets.token_hex(4)}"
    log_path = Path(tempfile.gettempdir()) / f"nautilus-tasks-{prefix}.log"
    report: Report | None = None
    try:
        log.info("server: %s", asyncio.run(server_version(url)))
    except NautilusTasksError as exc:
        log.error("demo failed: %s", exc)
        return 1
    try:
        with running_workers(url, prefix, log_path) as proc:
            report = asyncio.run(drive(url, prefix, args, proc))
    except (DemoError, NautilusTasksError) as exc:
        log.error("demo failed: %s", exc)
    finally:
        try:
            log.info("deleted %d keys of prefix %s", asyncio.run(delete_keys(url, prefix)), prefix)
        except Exception as exc:  # the server may be the very thing that failed
            log.warning("could not delete the keys of prefix %s: %s", prefix, exc)
    if report is not None:
        Console().print(render(report))
        print(report.summary())
    ok = report is not None and report.ok
    if ok:
        log_path.unlink(missing_ok=True)
        return 0
    if report is not None and report.problem:
        log.error("%s", report.problem)
    log.error("worker output kept in %s; its end:\n%s", log_path, _log_tail(log_path))
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
