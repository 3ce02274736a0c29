"""The scenarios. Each returns a JSON-able dict; CPU figures come from the kernel's
accounting (worker processes) and ``time.thread_time`` (this producer's event loop
thread), which a shared machine disturbs far less than wall-clock rates."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..errors import NautilusTasksError
from ..priority import Priority
from . import app
from .measure import (
    Bench,
    CpuMeter,
    collect,
    drained,
    latencies_ms,
    paced,
    percentiles,
    workers,
)

CHUNK = 1000
"""Messages per ``send_many`` call in the bulk sends."""
SENDERS = 100
"""Concurrent coroutines awaiting ``send()`` in the buffered-await enqueue."""


def _rate(n: int, seconds: float) -> float:
    return round(n / seconds, 1) if seconds > 0 else 0.0


def _figures(n: int, seconds: float, cpu: float) -> dict[str, Any]:
    return {
        "n": n,
        "seconds": round(seconds, 3),
        "per_second": _rate(n, seconds),
        "producer_cpu_us_per_op": round(cpu / n * 1e6, 1) if n else None,
    }


async def _timed(n: int, body: Callable[[], Awaitable[None]]) -> dict[str, Any]:
    cpu, start = time.thread_time(), time.perf_counter()
    await body()
    return _figures(n, time.perf_counter() - start, time.thread_time() - cpu)


async def enqueue(bench: Bench) -> dict[str, Any]:
    """Enqueue rate into an inbox no worker reads: buffered (send_nowait and flush;
    and 100 coroutines awaiting send), unbuffered (one round trip each), bulk."""
    n = bench.options.n
    put = app.put

    async def nowait() -> None:
        step = bench.progress.step("enqueue buffered (send_nowait)", n)
        for i in range(n):
            put.send_nowait(i)
            if i % 500 == 499:  # let the flushes run, as a streaming producer does
                step.update(i)
                await asyncio.sleep(0)
        await bench.client.flush()
        step.finish()

    async def awaited() -> None:
        step = bench.progress.step("enqueue buffered (100 x await send)", n)
        counter = iter(range(n))

        async def sender() -> None:
            for i in counter:
                await put.send(i)
                if i % 500 == 0:
                    step.update(i)

        await asyncio.gather(*(sender() for _ in range(SENDERS)))
        step.finish()

    async def unbuffered() -> None:
        step = bench.progress.step("enqueue unbuffered", n)
        send = put.send_with(client=bench.unbuffered)
        for i in range(n):
            await send(i)
            if i % 500 == 0:
                step.update(i)
        step.finish()

    async def bulk() -> None:
        step = bench.progress.step("enqueue bulk (send_many)", n)
        for start in range(0, n, CHUNK):
            calls: list[tuple[tuple[int], dict[str, Any]]] = [
                ((i,), {}) for i in range(start, min(n, start + CHUNK))
            ]
            await bench.client.send_many(put, calls)
            step.update(start + len(calls))
        step.finish()

    return {
        "buffered": await _timed(n, nowait),
        "buffered_await": await _timed(n, awaited),
        "unbuffered": await _timed(n, unbuffered),
        "bulk": await _timed(n, bulk),
    }


async def throughput(bench: Bench, processes: int) -> dict[str, Any]:
    """End-to-end no-op tasks: bulk-sent by this process, handled by ``processes``
    worker processes; timed from the first send until every entry is acked."""
    n = bench.options.n
    async with workers(bench, ["bench"] * processes) as procs:
        step = bench.progress.step(f"throughput, {processes} worker process(es)", n)
        meter = CpuMeter(bench, procs)
        start, produce = time.perf_counter(), time.thread_time()
        for first in range(0, n, CHUNK):
            await bench.client.send_many(app.noop, [((), {})] * min(CHUNK, n - first))
        produce = time.thread_time() - produce
        end = await drained(bench, app.bench.name, n, step)
        step.finish()
        seconds = end - start
        return {
            "processes": processes,
            "n": n,
            "seconds": round(seconds, 3),
            "per_second": _rate(n, seconds),
            "producer_cpu_us_per_task": round(produce / n * 1e6, 1),
            **meter.figures(n),
        }


async def _one_way(
    bench: Bench,
    send: Callable[[int], None],
    n: int,
    label: str,
    until: Callable[[], Awaitable[bool]] | None = None,
) -> list[float]:
    """Send ``n`` stamped tasks at the offered rate (fewer if ``until()`` says stop);
    their one-way latencies (ms)."""
    engine = app.bench
    await collect(bench, engine)  # forget earlier samples
    step = bench.progress.step(label, n)
    n = await paced(n, bench.options.rate, send, step, until)
    await bench.client.flush()
    parts = [await collect(bench, engine)]
    deadline = time.monotonic() + bench.options.drain_timeout
    while sum(len(p["latencies_ns"]) for p in parts) < n:  # the stamps may still be queued
        if time.monotonic() > deadline:
            raise NautilusTasksError(f"{label}: not every stamped task ran in time")
        await asyncio.sleep(0.05)
        parts.append(await collect(bench, engine))
    step.finish()
    return latencies_ms(parts)


def _stamp(tier: Priority) -> Callable[[int], None]:
    task = app.stamp_critical if tier is Priority.CRITICAL else app.stamp

    def send(_: int) -> None:
        task.send_nowait(time.time_ns())

    return send


async def latency(bench: Bench) -> dict[str, Any]:
    """One-way latency (handler start minus send time) at a fixed offered rate."""
    rate, n = bench.options.rate, bench.options.latency_n
    async with workers(bench, ["bench"]):
        values = await _one_way(bench, _stamp(Priority.NORMAL), n, f"latency at {rate:g}/s")
    return {"rate": rate, **percentiles(values)}


async def rpc(bench: Bench) -> dict[str, Any]:
    """Request/response round trips, one at a time."""
    n = bench.options.rpc_n
    values = []
    async with workers(bench, ["bench"]):
        step = bench.progress.step("request/response", n)
        for i in range(n):
            start = time.perf_counter_ns()
            answer: Any = await app.echo.request(i, timeout=30)
            if answer != i:
                raise NautilusTasksError(f"echo answered {answer!r} to {i}")
            values.append((time.perf_counter_ns() - start) / 1e6)
            if i % 50 == 0:
                step.update(i)
        step.finish()
    return percentiles(values)


async def critical(bench: Bench) -> dict[str, Any]:
    """Critical-tier one-way latency idle, then while a LOW backlog waits (sent before
    the worker starts, so the whole backlog is queued when the measurement begins)."""
    n, backlog, rate = bench.options.latency_n, bench.options.backlog, bench.options.rate
    send = _stamp(Priority.CRITICAL)
    async with workers(bench, ["bench"]):
        idle = percentiles(await _one_way(bench, send, n, f"critical idle at {rate:g}/s"))
    step = bench.progress.step(f"queue {backlog} low tasks", backlog)
    for first in range(0, backlog, CHUNK):
        await bench.client.send_many(app.low, [((), {})] * min(CHUNK, backlog - first))
        step.update(first)
    step.finish()
    # read before the worker starts: a small backlog may be gone by the time it is up
    queued = await bench.broker.backlog(app.bench.name)
    async with workers(bench, ["bench"]):

        async def backlogged() -> bool:  # measure only while a tenth of it still waits
            return await bench.broker.backlog(app.bench.name) > queued // 10

        label = f"critical with backlog at {rate:g}/s"
        values = await _one_way(bench, send, n, label, backlogged)
        left = await bench.broker.backlog(app.bench.name)
        await drained(bench, app.bench.name)
    busy = percentiles(values)
    ratio = None
    if idle.get("p99_ms") and busy.get("p99_ms"):
        ratio = round(busy["p99_ms"] / idle["p99_ms"], 2)
    return {
        "rate": rate,
        "backlog": backlog,
        "queued_at_start": queued,
        "queued_at_end": left,
        "idle": idle,
        "with_backlog": busy,
        "p99_ratio": ratio,
    }


async def fanout(bench: Bench) -> dict[str, Any]:
    """Events published to a topic that three engines subscribe to (one worker process
    each): every engine gets its copy. Publishes from 32 coroutines."""
    n = bench.options.fanout_n
    engines = [app.fan_a, app.fan_b, app.fan_c]
    async with workers(bench, list(app.FAN_ENGINES)) as procs:
        for engine in engines:
            await collect(bench, engine)
        step = bench.progress.step("event fan-out to 3 engines", n)
        meter = CpuMeter(bench, procs)
        counter = iter(range(n))
        start = time.perf_counter()

        async def publisher() -> None:
            for i in counter:
                await bench.client.publish(app.FAN_TOPIC, time.time_ns())
                if i % 100 == 0:
                    step.update(i)

        await asyncio.gather(*(publisher() for _ in range(32)))
        published = time.perf_counter()
        end = max([await drained(bench, e.name) for e in engines])
        step.finish()
        parts = [await collect(bench, e) for e in engines]
        figures = meter.figures(3 * n)
    return {
        "events": n,
        "engines": len(engines),
        "deliveries": sum(len(p["latencies_ns"]) for p in parts),
        "publish_per_second": _rate(n, published - start),
        "deliveries_per_second": _rate(3 * n, end - start),
        "latency": percentiles(latencies_ms(parts)),
        **figures,
    }
