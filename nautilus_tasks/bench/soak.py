"""The soak: many no-op tasks through one worker process, to show that its memory and
the streams stay bounded (acked entries are deleted, nothing stays pending)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from . import app
from .measure import Bench, CpuMeter, drained, workers
from .scenarios import CHUNK

BOUND = 50_000
"""The producer waits while the inbox holds more than this many entries."""


async def soak(bench: Bench) -> dict[str, Any]:
    """Send ``soak_n`` tasks in bounded waves; RSS after the first tenth (at most
    100,000) and at the end, the longest the inbox got, and XLEN/PEL once drained."""
    total = bench.options.soak_n
    first = min(100_000, max(1, total // 10))
    engine = app.bench.name
    async with workers(bench, ["bench"]) as procs:
        step = bench.progress.step("soak", total)
        meter, start = CpuMeter(bench, procs), time.perf_counter()
        sent, longest = 0, 0
        rss: dict[int, float | None] = {}
        marks = sorted({first, total})
        while sent < total:
            left = await bench.broker.backlog(engine)
            longest = max(longest, left)
            step.update(sent - left)
            if left > BOUND:
                await asyncio.sleep(0.01)
                continue
            count = min(CHUNK, total - sent, marks[0] - sent)
            await bench.client.send_many(app.noop, [((), {})] * count)
            sent += count
            if sent == marks[0]:
                await drained(bench, engine)
                rss[marks.pop(0)] = procs[0].rss_mb()
        seconds = time.perf_counter() - start
        step.finish()
        info = await bench.broker.inspect(engine)
        figures = meter.figures(total)
    early, late = rss.get(first), rss.get(total)
    growth = None if not early or late is None else round((late - early) / early * 100, 1)
    return {
        "n": total,
        "seconds": round(seconds, 3),
        "per_second": round(total / seconds, 1),
        f"rss_mb_after_{first}": None if early is None else round(early, 1),
        f"rss_mb_after_{total}": None if late is None else round(late, 1),
        "rss_growth_pct": growth,
        "rss_within_20pct": None if growth is None else abs(growth) <= 20,
        "longest_inbox": longest,
        "xlen_after": sum(t.length for t in info.tiers),
        "pending_after": sum(t.pending for t in info.tiers),
        "dead_letters": info.dead,
        **figures,
    }
