"""The two task bodies every app runs, and the keys the runner watches.

Body ``a`` INCRs :data:`COUNTER` once per task (a redis-py client in the worker: the sync one for
thread-based frameworks, ``redis.asyncio`` for asyncio ones). Body ``b`` bumps an in-process
counter that a background thread INCRBYs every 10 ms, so only the framework's own overhead is
measured. A task given a send timestamp ``ts`` (> 0, ``time.time()`` taken by the producer just
before its enqueue call) also records its one-way latency in ms into the list :data:`LATENCIES`.

The apps read their settings from the environment the runner sets: ``BENCH_URL`` and
``BENCH_BODY`` (``a`` or ``b``). Clients are made on first use, in the process that runs tasks.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

COUNTER = "bench:done"
LATENCIES = "bench:lat"
FLUSH_EVERY = 0.010


def url() -> str:
    return os.environ.get("BENCH_URL", "redis://127.0.0.1:6399")


def body() -> str:
    value = os.environ.get("BENCH_BODY", "a")
    if value not in ("a", "b"):
        raise ValueError(f"BENCH_BODY must be a or b, not {value!r}")
    return value


class _Flusher:
    """Body b: an in-process counter, INCRBY'd (and latencies RPUSHed) every 10 ms."""

    def __init__(self) -> None:
        import redis

        self._redis = redis.Redis.from_url(url())
        self._lock = threading.Lock()
        self._count = 0
        self._latencies: list[float] = []
        threading.Thread(target=self._run, name="bench-flusher", daemon=True).start()

    def bump(self, latency: float | None) -> None:
        with self._lock:
            self._count += 1
            if latency is not None:
                self._latencies.append(latency)

    def _run(self) -> None:
        while True:
            time.sleep(FLUSH_EVERY)
            with self._lock:
                count, self._count = self._count, 0
                latencies, self._latencies = self._latencies, []
            if count:
                pipe = self._redis.pipeline(transaction=False)
                if latencies:
                    pipe.rpush(LATENCIES, *latencies)
                pipe.incrby(COUNTER, count)
                pipe.execute()


def _latency(ts: float, started: float) -> float | None:
    return (started - ts) * 1000.0 if ts > 0 else None


class SyncBody:
    """The task body for thread-based frameworks (thread-safe; one shared client pool)."""

    def __init__(self) -> None:
        self._body = body()
        self._lock = threading.Lock()
        self._client: Any = None
        self._flusher: _Flusher | None = None

    def _setup(self) -> None:
        with self._lock:
            if self._client is not None or self._flusher is not None:
                return
            if self._body == "b":
                self._flusher = _Flusher()
            else:
                import redis

                self._client = redis.Redis.from_url(url())

    def __call__(self, ts: float = 0.0) -> None:
        latency = _latency(ts, time.time())
        if self._client is None and self._flusher is None:
            self._setup()
        if self._flusher is not None:
            self._flusher.bump(latency)
        elif latency is None:
            self._client.incr(COUNTER)
        else:
            pipe = self._client.pipeline(transaction=False)
            pipe.rpush(LATENCIES, latency)
            pipe.incr(COUNTER)
            pipe.execute()


class AsyncBody:
    """The task body for asyncio frameworks (one event loop per worker process)."""

    def __init__(self) -> None:
        self._body = body()
        self._client: Any = None
        self._flusher: _Flusher | None = None

    async def __call__(self, ts: float = 0.0) -> None:
        latency = _latency(ts, time.time())
        if self._body == "b":
            if self._flusher is None:
                self._flusher = _Flusher()
            self._flusher.bump(latency)
            return
        if self._client is None:
            import redis.asyncio

            self._client = redis.asyncio.Redis.from_url(url())
        if latency is None:
            await self._client.incr(COUNTER)
        else:
            pipe = self._client.pipeline(transaction=False)
            pipe.rpush(LATENCIES, latency)
            pipe.incr(COUNTER)
            await pipe.execute()
