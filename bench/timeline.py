"""A worker's reads and acks on a timeline, while it drains a body-(b) backlog in-process.

Shows how the worker's fetch and ack round trips alternate with its running of handlers::

    export BENCH_URL=redis://127.0.0.1:6411 BENCH_BODY=b     # a server that holds nothing else
    .venv/bin/python -m bench.peers.apps.producer nt_bench enqueue --n 100000 --cap 60 --chunk 1000
    .venv/bin/python -m bench.timeline 100000 [PREFETCH]

It prints the mean size and duration of the reads and ack calls, and 20 consecutive calls
from the middle of the run, in ms from the first of them, with the local queue's length and
the entries the worker held when each started.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis

from nautilus_tasks.config import BusConfig, WorkerConfig
from nautilus_tasks.worker import runner

Record = tuple[str, float, float, int, int, int]


def _watch(worker: runner.Worker, log: list[Record]) -> None:
    broker: Any = worker.broker
    for name in ("read", "read_below_critical", "ack", "ack_and_read"):
        call: Callable[..., Awaitable[Any]] = getattr(broker, name)

        async def timed(*args: Any, _call: Any = call, _name: str = name) -> Any:
            began, queued, held = time.perf_counter(), len(worker.queue), worker.fetcher.held
            got = await _call(*args)
            if _name == "ack":
                size = sum(len(ids) for ids in args[2].values())
            elif _name == "ack_and_read":  # acked + read
                size = sum(len(ids) for ids in args[2].values()) + len(got[2] or [])
            else:
                size = len(got) if isinstance(got, list) else 0
            log.append((_name, began, time.perf_counter(), size, queued, held))
            return got

        setattr(broker, name, timed)


async def _drain(n: int, prefetch: int | None, log: list[Record]) -> None:
    from bench.peers.apps import nt_bench

    url = os.environ["BENCH_URL"]
    workers: list[runner.Worker] = []
    made = runner.workers_for

    def watched(*args: Any, **kwargs: Any) -> list[runner.Worker]:
        out = made(*args, **kwargs)
        for worker in out:
            _watch(worker, log)
        workers.extend(out)
        return out

    runner.workers_for = watched  # type: ignore[assignment]
    config = WorkerConfig(concurrency=100, prefetch=prefetch)
    serving = asyncio.create_task(runner.serve(nt_bench.engine, BusConfig.from_url(url), config))
    counter = aioredis.Redis.from_url(url)
    try:
        # the handlers' counter is flushed to Redis by a thread: poll it, as bench/peers does
        while int(await counter.get("bench:done") or 0) < n:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    finally:
        for worker in workers:
            worker.stop()
        await asyncio.wait_for(serving, 30)
        await counter.aclose()


def main(n: int, prefetch: int | None) -> None:
    log: list[Record] = []
    asyncio.run(_drain(n, prefetch, log))
    for kind in ("read", "ack", "ack_and_read"):
        rows = [r for r in log if r[0] == kind or (kind == "read" and r[0].startswith("read"))]
        if rows:
            size = statistics.mean(r[3] for r in rows)
            took = statistics.mean((r[2] - r[1]) * 1e3 for r in rows)
            print(f"{kind}s: {len(rows)}, mean {size:.1f} entries, mean {took:.2f} ms")
    middle = log[len(log) // 2 : len(log) // 2 + 20]
    start = middle[0][1] if middle else 0.0
    for name, began, ended, size, queued, held in middle:
        print(
            f"{name:20s} {1e3 * (began - start):8.2f} {1e3 * (ended - start):8.2f}"
            f"  n={size} queued={queued} held={held}"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else None)
