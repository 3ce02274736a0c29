"""What the scenarios share: the run's context, worker pools, pacing and percentiles."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import NautilusTasksError
from . import app
from .procs import WorkerProcess, cpu_seconds, total_cpu

if TYPE_CHECKING:
    from ..broker.redis import RedisBroker
    from ..client import Client
    from ..engine import Engine

POLL = 0.005
"""Seconds between two looks at a backlog while waiting for it to drain."""


class Step(Protocol):
    """One line of the progress display."""

    def update(self, done: int) -> None: ...

    def finish(self) -> None: ...


class Progress(Protocol):
    interrupted: bool
    """Set on Ctrl-C: loops stop at their next look."""

    def step(self, label: str, total: int) -> Step: ...


@dataclass
class Options:
    """What the command line asked for."""

    n: int = 20_000
    latency_n: int = 1_000
    rate: float = 200.0
    rpc_n: int = 1_000
    backlog: int = 100_000
    fanout_n: int = 5_000
    soak_n: int = 1_000_000
    processes: int = 2
    concurrency: int = 100
    env: Mapping[str, str] = field(default_factory=dict)
    worker_args: tuple[str, ...] = ()
    loop: str = "asyncio"
    drain_timeout: float = 600.0


@dataclass
class Bench:
    """One bench run: its bus, its client (buffered) and where worker logs go."""

    client: Client
    unbuffered: Client
    url: str
    prefix: str
    options: Options
    progress: Progress
    log_dir: Path
    server_pid: int | None = None
    """The embedded server's pid (its CPU time is reported), None with ``--url``."""

    def server_cpu(self) -> float | None:
        return None if self.server_pid is None else cpu_seconds(self.server_pid)

    @property
    def broker(self) -> RedisBroker:
        return self.client.broker

    def worker(self, engine_attr: str) -> WorkerProcess:
        return WorkerProcess(
            engine_attr, self.url, self.prefix, concurrency=self.options.concurrency,
            env=self.options.env, log_path=self.log_dir / f"worker-{engine_attr}.log",
            extra_args=self.options.worker_args,
        )  # fmt: skip


def engine_of(attr: str) -> Engine:
    engine: Engine = getattr(app, attr)
    return engine


@contextlib.asynccontextmanager
async def workers(bench: Bench, attrs: Sequence[str]) -> AsyncIterator[list[WorkerProcess]]:
    """Start one worker process per entry of ``attrs`` (an engine of ``app``), wait
    until each engine has its consumers and answers a request, stop them after."""
    procs = [bench.worker(a) for a in attrs]
    try:
        for proc in procs:
            proc.start()
        for attr in dict.fromkeys(attrs):
            await _ready(bench, engine_of(attr), attrs.count(attr), procs)
        yield procs
    finally:
        for proc in procs:
            await asyncio.to_thread(proc.stop)


async def _ready(bench: Bench, engine: Engine, count: int, procs: list[WorkerProcess]) -> None:
    deadline = time.monotonic() + 60
    while True:
        dead = [p for p in procs if not p.alive()]
        if dead:
            raise NautilusTasksError(
                f"bench worker exited at start; its log:\n{dead[0].log_tail()}"
            )
        info = await bench.broker.inspect(engine.name)
        if info.tiers and info.tiers[0].consumers >= count:
            break
        if time.monotonic() > deadline:
            raise NautilusTasksError(f"{count} workers of {engine.name} did not start within 60s")
        await asyncio.sleep(0.05)
    await collect(bench, engine)  # answers only once its fetch loop runs


async def collect(bench: Bench, engine: Engine) -> dict[str, Any]:
    """Ask a worker of ``engine`` for its samples (and forget them there)."""
    task = engine.tasks["collect"]
    result: dict[str, Any] = await task.request_with(timeout=60, client=bench.client)()
    return result


async def drained(
    bench: Bench, engine: str, total: int | None = None, step: Step | None = None
) -> float:
    """Wait until the engine's streams are empty (all handled, acked and deleted);
    returns ``time.perf_counter()`` at that moment."""
    deadline = time.monotonic() + bench.options.drain_timeout
    while True:
        left = await bench.broker.backlog(engine)
        now = time.perf_counter()
        if step is not None and total is not None:
            step.update(max(0, total - left))
        if left == 0:
            return now
        if time.monotonic() > deadline or bench.progress.interrupted:
            raise NautilusTasksError(f"{left} messages of {engine} still queued (timeout/Ctrl-C)")
        await asyncio.sleep(POLL)


async def paced(
    n: int,
    rate: float,
    send: Callable[[int], None],
    step: Step,
    until: Callable[[], Awaitable[bool]] | None = None,
) -> int:
    """Call ``send(i)`` ``n`` times at ``rate`` per second (a fixed schedule: a late
    send does not push back the next ones), or until ``until()`` says stop (asked every
    20 sends). Returns how many were sent."""
    start = time.perf_counter()
    for i in range(n):
        if until is not None and i % 20 == 0 and not await until():
            return i
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        send(i)
        if i % 50 == 0:
            step.update(i)
    step.update(n)
    return n


def percentiles(values_ms: Sequence[float]) -> dict[str, Any]:
    """n, p50, p90, p99, max and mean of latencies in milliseconds (nearest rank)."""
    ordered = sorted(values_ms)
    if not ordered:
        return {"n": 0}

    def rank(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))], 3)

    return {
        "n": len(ordered),
        "p50_ms": rank(0.5),
        "p90_ms": rank(0.9),
        "p99_ms": rank(0.99),
        "max_ms": round(ordered[-1], 3),
        "mean_ms": round(sum(ordered) / len(ordered), 3),
    }


def latencies_ms(parts: Sequence[dict[str, Any]]) -> list[float]:
    return [ns / 1e6 for part in parts for ns in part["latencies_ns"]]


class CpuMeter:
    """CPU time of the worker processes (and of the embedded server) over a scenario."""

    def __init__(self, bench: Bench, procs: list[WorkerProcess]) -> None:
        self.bench, self.procs = bench, procs
        self.workers, self.server = total_cpu(procs), bench.server_cpu()

    def figures(self, n: int) -> dict[str, Any]:
        """Worker (and server) CPU microseconds per task since the start, worker RSS."""
        out: dict[str, Any] = {"worker_rss_mb": [_round(p.rss_mb()) for p in self.procs]}
        workers, server = total_cpu(self.procs), self.bench.server_cpu()
        if self.workers is not None and workers is not None and n:
            out["worker_cpu_s"] = round(workers - self.workers, 3)
            out["worker_cpu_us_per_task"] = round((workers - self.workers) / n * 1e6, 1)
        if self.server is not None and server is not None and n:
            out["server_cpu_us_per_task"] = round((server - self.server) / n * 1e6, 1)
        return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
