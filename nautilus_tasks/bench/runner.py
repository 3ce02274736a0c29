"""Run the selected scenarios against a bus (an embedded Valkey unless given a URL)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import shutil
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress

from ..buffer import BufferConfig
from ..client import Client
from ..config import BusConfig
from ..embedded import EmbeddedServer
from ..errors import NautilusTasksError
from . import app, scenarios
from .audit import audit_meta, audit_schema
from .measure import Bench, Options
from .soak import soak

SCENARIOS = ("enqueue", "throughput", "latency", "rpc", "critical", "fanout", "soak")
DEFAULT = SCENARIOS[:-1]
"""Everything but the soak, which takes minutes."""


class _Step:
    def __init__(self, owner: _Progress, task: TaskID, total: int) -> None:
        self._owner, self._progress, self._task, self._total = owner, owner.rich, task, total

    def update(self, done: int) -> None:
        if self._owner.interrupted:  # a cancel can be swallowed in redis-py: stop here too
            raise NautilusTasksError("interrupted")
        self._progress.update(self._task, completed=min(done, self._total))

    def finish(self) -> None:
        self._progress.update(self._task, completed=self._total)


class _Progress:
    """Scenario steps as rich progress bars (on stderr)."""

    def __init__(self, progress: RichProgress) -> None:
        self.rich = progress
        self.interrupted = False

    def step(self, label: str, total: int) -> _Step:
        return _Step(self, self.rich.add_task(label, total=total), total)

    def interrupt(self, task: asyncio.Task[Any]) -> None:
        """Ctrl-C: cancel the run, and fail its next progress update (cleanup runs)."""
        self.interrupted = True
        task.cancel()


@contextlib.contextmanager
def _bus(url: str | None) -> Iterator[tuple[str, int | None]]:
    """The bus URL, and the pid of the private embedded server of this run, if any."""
    if url:
        yield url, None
        return
    directory = Path(tempfile.mkdtemp(prefix="nautilus-bench-"))
    server = EmbeddedServer(directory, appendonly=False)
    try:
        yield server.start(), server.pid
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.asynccontextmanager
async def _clients(url: str, prefix: str) -> AsyncIterator[tuple[Client, Client]]:
    bus = BusConfig.from_url(url, prefix=prefix)
    async with await Client.connect(bus, source="bench") as client:
        unbuffered = await Client.connect(
            bus, source="bench", buffering=BufferConfig(enabled=False)
        )
        try:
            client.bind(app.bench, app.sink, app.fan_a, app.fan_b, app.fan_c)
            yield client, unbuffered
        finally:
            await unbuffered.close()
            with contextlib.suppress(Exception):  # best effort: the prefix is ours alone
                await client.broker.delete_prefix()


def _meta(
    url: str, embedded: bool, prefix: str, server: str, options: Options, started: str
) -> dict[str, Any]:
    return {
        "nautilus_tasks": metadata.version("nautilus-tasks"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "server": server,
        "url": url if not embedded else "embedded",
        "prefix": prefix,
        "started_at": started,
        "options": {
            "n": options.n,
            "latency_n": options.latency_n,
            "rate": options.rate,
            "rpc_n": options.rpc_n,
            "backlog": options.backlog,
            "fanout_n": options.fanout_n,
            "soak_n": options.soak_n,
            "processes": options.processes,
            "concurrency": options.concurrency,
            "env": sorted(options.env),
            "worker_args": list(options.worker_args),
            "loop": options.loop,
        },
    }


def _plan(bench: Bench, selected: Sequence[str]) -> list[tuple[str, Callable[[], Awaitable[Any]]]]:
    plan: list[tuple[str, Callable[[], Awaitable[Any]]]] = []
    if "enqueue" in selected:
        plan.append(("enqueue", lambda: scenarios.enqueue(bench)))
    if "throughput" in selected:
        plan.append(("throughput_1", lambda: scenarios.throughput(bench, 1)))
        if bench.options.processes > 1:
            p = bench.options.processes
            plan.append((f"throughput_{p}", lambda: scenarios.throughput(bench, p)))
    for name, fn in (
        ("latency", scenarios.latency),
        ("rpc", scenarios.rpc),
        ("critical", scenarios.critical),
        ("fanout", scenarios.fanout),
        ("soak", soak),
    ):
        if name in selected:
            plan.append((name, lambda fn=fn: fn(bench)))  # type: ignore[misc]
    return plan


async def run_bench(
    url: str | None, selected: Sequence[str], options: Options, console: Console
) -> dict[str, Any]:
    """Run ``selected`` scenarios; the results and the facts of the run, as JSON data."""
    prefix = f"ntbench{os.urandom(4).hex()}"
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    log_dir = Path(tempfile.mkdtemp(prefix="nautilus-bench-logs-"))
    schema = audit_schema(options.env)  # an invalid audit setting fails before any run
    with _bus(url) as (bus_url, server_pid):
        async with _clients(bus_url, prefix) as (client, unbuffered):
            server = await client.broker.server_version()
            columns = (
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(),
            )  # fmt: skip
            with RichProgress(*columns, console=console, transient=False) as progress:
                steps = _Progress(progress)
                bench = Bench(
                    client, unbuffered, bus_url, prefix, options, steps, log_dir, server_pid
                )
                main = asyncio.current_task()
                if main is not None:
                    loop = asyncio.get_running_loop()
                    loop.add_signal_handler(signal.SIGINT, steps.interrupt, main)
                results = {name: await body() for name, body in _plan(bench, selected)}
            audit = await audit_meta(client, schema)  # before the prefix (and stats) go
    shutil.rmtree(log_dir, ignore_errors=True)
    meta = _meta(bus_url, server_pid is not None, prefix, server, options, started)
    return {"meta": {**meta, "audit": audit}, "results": results}
