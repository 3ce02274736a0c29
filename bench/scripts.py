"""Server time of the worker's two steady-state script calls: the read and the ack.

Runs on a private embedded Valkey (started and stopped here): sends N tasks to one
engine, then reads them as a worker does (``Broker.read`` of 125 entries while holding 12
more, the low tiers' share of one entry each, the critical stream left to its blocking
read) and acks each batch (``Broker.ack``). The server times every command
(``SLOWLOG`` with a threshold of 0); the figures are its own microseconds per call of
each script, and per entry::

    .venv/bin/python -m bench.scripts [N]          # N defaults to 50000

To compare a script with an older version of it, run this from a worktree of that commit.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

import redis.asyncio as aioredis

from nautilus_tasks import Client, Engine
from nautilus_tasks.embedded import EmbeddedServer
from nautilus_tasks.priority import Priority

BATCH = 125
HELD = 12
LOG_LEN = 1_000_000


async def _cycle(url: str, n: int) -> dict[str, list[int]]:
    engine = Engine("scripts")

    @engine.task
    async def work(x: float = 0.0) -> None: ...

    client = await Client.connect(url)
    raw = aioredis.Redis.from_url(url)
    try:
        client.bind(engine)
        broker = client.broker
        await broker.ensure_groups(engine.name, "c")
        for start in range(0, n, 1000):
            await client.send_many(work, [((0.0,), {}) for _ in range(min(1000, n - start))])
        await broker.read(engine.name, "c", HELD, (0, 0, 0), block_ms=0)
        await raw.config_set("slowlog-log-slower-than", 0)
        await raw.config_set("slowlog-max-len", LOG_LEN)
        await raw.slowlog_reset()
        while got := await broker.read_below_critical(engine.name, "c", BATCH, (1, 1, 1), 0):
            taken, gone = await broker.ack(engine.name, "c", {Priority.NORMAL: [
                d.entry_id for d in got
            ]})  # fmt: skip
            if taken or gone:
                raise RuntimeError(f"ack refused {len(taken)} and found {len(gone)} gone")
        log = await raw.slowlog_get(LOG_LEN)
    finally:
        await client.close()
        await raw.aclose()
    times: dict[str, list[int]] = {"read": [], "ack": []}
    for row in log:
        args = row["command"].split()
        if args[0].upper() == b"EVALSHA" and len(args) > 9:
            # the ack passes the four counts and then the ids; the read, 7 fixed values
            times["ack" if len(args) > 14 else "read"].append(int(row["duration"]))
    return times


def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, EmbeddedServer(Path(tmp)) as server:
        times = asyncio.run(_cycle(server.url, n))
    for name, durations in times.items():
        mean = statistics.mean(durations)
        print(
            f"{name}.lua: {len(durations)} calls, server µs per call: mean {mean:.1f},"
            f" median {statistics.median(durations):.1f}; per entry {mean / BATCH:.2f}"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 50_000)
