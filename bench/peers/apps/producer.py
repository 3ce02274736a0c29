"""The producer side of every app: ``python -m bench.peers.apps.producer APP MODE ...``.

The app module (``bench.peers.apps.APP``, imported under its own name so that task names and
function paths are the ones the worker sees) has a ``Producer`` class. A sync one has
``__enter__``/``__exit__``, ``enqueue(count)`` (``count`` no-op tasks with the system's fastest
documented API), ``send(ts)`` (one task, as an application sends one) and ``finish()`` (make
sure everything is stored); an async one has the same as coroutines (``__aenter__``...).
Modes, each printing one JSON line on stdout:

- ``enqueue --n N --cap S --chunk C``: enqueue up to N tasks, C per call, stopping after S
  seconds; ``{"count": ..., "seconds": ...}`` (the time includes ``finish()``);
- ``latency --rate R --seconds S``: send R tasks/s for S seconds, each with its send timestamp,
  paced on a fixed schedule; ``{"count": ..., "seconds": ..., "max_lag_ms": ...}``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import json
import sys
import time
from collections.abc import Sequence
from typing import Any


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="produce")
    sub = parser.add_subparsers(dest="mode", required=True)
    enq = sub.add_parser("enqueue")
    enq.add_argument("--n", type=int, required=True)
    enq.add_argument("--cap", type=float, default=10.0)
    enq.add_argument("--chunk", type=int, default=500)
    lat = sub.add_parser("latency")
    lat.add_argument("--rate", type=float, default=200.0)
    lat.add_argument("--seconds", type=float, default=5.0)
    return parser.parse_args(list(argv))


def _schedule(rate: float, seconds: float) -> int:
    return max(1, int(rate * seconds))


def _run_sync(producer: Any, args: argparse.Namespace) -> dict[str, float]:
    with producer:
        if args.mode == "enqueue":
            start, done = time.perf_counter(), 0
            while done < args.n and time.perf_counter() - start < args.cap:
                count = min(args.chunk, args.n - done)
                producer.enqueue(count)
                done += count
            producer.finish()
            return {"count": done, "seconds": time.perf_counter() - start}
        total, lag = _schedule(args.rate, args.seconds), 0.0
        start = time.perf_counter() + 0.01
        for i in range(total):
            due = start + i / args.rate
            if (wait := due - time.perf_counter()) > 0:
                time.sleep(wait)
            lag = max(lag, time.perf_counter() - due)
            producer.send(time.time())
        producer.finish()
        return {"count": total, "seconds": time.perf_counter() - start, "max_lag_ms": lag * 1e3}


async def _run_async(producer: Any, args: argparse.Namespace) -> dict[str, float]:
    async with producer:
        if args.mode == "enqueue":
            start, done = time.perf_counter(), 0
            while done < args.n and time.perf_counter() - start < args.cap:
                count = min(args.chunk, args.n - done)
                await producer.enqueue(count)
                done += count
            await producer.finish()
            return {"count": done, "seconds": time.perf_counter() - start}
        total, lag = _schedule(args.rate, args.seconds), 0.0
        start = time.perf_counter() + 0.01
        for i in range(total):
            due = start + i / args.rate
            if (wait := due - time.perf_counter()) > 0:
                await asyncio.sleep(wait)
            lag = max(lag, time.perf_counter() - due)
            await producer.send(time.time())
        await producer.finish()
        return {"count": total, "seconds": time.perf_counter() - start, "max_lag_ms": lag * 1e3}


def main(factory: Any, argv: Sequence[str]) -> None:
    """Run the producer mode in ``argv`` with a new ``factory()`` and print the JSON result."""
    args = parse(argv)
    producer = factory()
    if inspect.iscoroutinefunction(getattr(producer, "send", None)):
        result = asyncio.run(_run_async(producer, args))
    else:
        result = _run_sync(producer, args)
    print(json.dumps(result), flush=True)


async def gather_chunks(make: Any, count: int, width: int = 100) -> None:
    """Await ``make()`` ``count`` times, ``width`` at a time (for APIs without a bulk call)."""
    while count > 0:
        step = min(width, count)
        await asyncio.gather(*(make() for _ in range(step)))
        count -= step


if __name__ == "__main__":
    module = importlib.import_module(f"bench.peers.apps.{sys.argv[1]}")
    main(module.Producer, sys.argv[2:])
