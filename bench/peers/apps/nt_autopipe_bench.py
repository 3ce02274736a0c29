"""nautilus-tasks with body (a) written through ``engine.redis``, the auto-pipelined handle.

Same engine, worker command and producer as ``nt_bench``; only the task body differs: the
INCR (and, for a latency sample, the RPUSH) of each task goes through the engine's
auto-pipeline, so the INCRs of the handlers running at once share one round trip. Body (b) is
the shared in-process counter, as for every system.
"""

from __future__ import annotations

import time

from nautilus_tasks import Engine

from . import nt_bench
from .body import COUNTER, LATENCIES, AsyncBody, body

engine = Engine("bench")
_flusher = AsyncBody()  # body (b) only
_BODY = body()


@engine.task()
async def work(ts: float = 0.0) -> None:
    if _BODY == "b":
        await _flusher(ts)
        return
    started = time.time()
    redis = engine.redis
    if ts > 0:
        pushed = redis.execute("RPUSH", LATENCIES, (started - ts) * 1000.0)
        await redis.incr(COUNTER)
        await pushed
    else:
        await redis.incr(COUNTER)


class Producer(nt_bench.Producer):
    engine = engine
    task = work
