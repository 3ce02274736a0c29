"""The raw baseline: hand-written asyncio redis-py (hiredis) on one stream and consumer group.

Worker: ``XREADGROUP COUNT 500 BLOCK``; body a pipelines one INCR per entry with the batch's
XACK (one round trip per batch); body b bumps an in-process counter flushed every 10 ms by
INCRBY, and XACKs each batch. Producer: pipelined XADD, 500 per pipeline (the reference rate
for enqueue). No framework, no retries, no leases: the upper bound on one connection.
"""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import redis.asyncio as aredis

from .body import COUNTER, FLUSH_EVERY, LATENCIES, body, url

STREAM = "bench:raw"
GROUP = "workers"


async def _flusher(client: Any, state: dict[str, Any]) -> None:
    while True:
        await asyncio.sleep(FLUSH_EVERY)
        count, state["count"] = state["count"], 0
        latencies, state["lat"] = state["lat"], []
        if count:
            pipe = client.pipeline(transaction=False)
            if latencies:
                pipe.rpush(LATENCIES, *latencies)
            pipe.incrby(COUNTER, count)
            await pipe.execute()


async def _handle(client: Any, entries: list[Any], mode: str, state: dict[str, Any]) -> None:
    pipe = client.pipeline(transaction=False)
    ids = []
    for entry_id, fields in entries:
        ids.append(entry_id)
        ts = float(fields.get(b"ts", 0) or 0)
        latency = (time.time() - ts) * 1000.0 if ts > 0 else None
        if mode == "b":
            state["count"] += 1
            if latency is not None:
                state["lat"].append(latency)
        else:
            if latency is not None:
                pipe.rpush(LATENCIES, latency)
            pipe.incr(COUNTER)
    pipe.xack(STREAM, GROUP, *ids)
    await pipe.execute()


async def worker() -> None:
    client = aredis.Redis.from_url(url())
    mode = body()
    try:
        await client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    except aredis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    state: dict[str, Any] = {"count": 0, "lat": []}
    flusher = asyncio.create_task(_flusher(client, state)) if mode == "b" else None
    while not stop.is_set():
        reply = await client.xreadgroup(GROUP, "c1", {STREAM: ">"}, count=500, block=1000)
        for _stream, entries in reply or ():
            await _handle(client, entries, mode, state)
    if flusher is not None:
        flusher.cancel()
    await client.aclose()


class Producer:
    async def __aenter__(self) -> Producer:
        self.client = aredis.Redis.from_url(url())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()

    async def enqueue(self, count: int) -> None:
        pipe = self.client.pipeline(transaction=False)
        for _ in range(count):
            pipe.xadd(STREAM, {"task": "bench", "ts": 0})
        await pipe.execute()

    async def send(self, ts: float) -> None:
        await self.client.xadd(STREAM, {"task": "bench", "ts": repr(ts)})

    async def finish(self) -> None:
        return None


if __name__ == "__main__":
    asyncio.run(worker())
