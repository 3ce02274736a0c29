"""The engines the bench runs in its worker processes (``nautilus-tasks worker`` loads
``nautilus_tasks.bench.app:bench``, ``...:fan_a`` and so on).

Handlers that measure a one-way latency take the producer's ``time.time_ns()`` as an
argument and subtract it from the clock at the start of the handler: both processes
run on this machine, so they read the same wall clock. The samples stay in the
worker process until the bench asks for them with the ``collect`` task.
"""

from __future__ import annotations

import os
import resource
import time
from typing import Any

from ..engine import Engine
from ..priority import Priority

FAN_TOPIC = "ntbench.fan.tick"
FAN_PATTERN = "ntbench.fan.*"


class Samples:
    """One worker process's latency samples (nanoseconds), until collected."""

    def __init__(self) -> None:
        self.values: list[int] = []

    def add(self, sent_ns: int) -> None:
        self.values.append(time.time_ns() - sent_ns)

    def take(self) -> dict[str, Any]:
        """The samples so far (then forgotten), with this process's CPU time and RSS."""
        values, self.values = self.values, []
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "pid": os.getpid(),
            "latencies_ns": values,
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "max_rss_kb": usage.ru_maxrss,
        }


samples = Samples()
"""This process's samples: the bench app's only state, read through ``collect``."""

bench = Engine("ntbench")
"""Tasks of the throughput, latency, round-trip and critical-tier scenarios."""


@bench.task
async def noop() -> None:
    """Does nothing: what is measured is the framework."""


@bench.task(priority=Priority.LOW)
async def low() -> None:
    """Does nothing, in the low tier: the backlog of the critical-tier scenario."""


@bench.task
async def stamp(sent_ns: int) -> None:
    """Records its one-way latency: handler start minus the producer's send time."""
    samples.add(sent_ns)


@bench.task(priority=Priority.CRITICAL, name="stamp_critical")
async def stamp_critical(sent_ns: int) -> None:
    """``stamp`` in the critical tier."""
    samples.add(sent_ns)


@bench.task
async def echo(value: int) -> int:
    """Answers its argument (request/response round trip)."""
    return value


async def collect() -> dict[str, Any]:
    """The samples recorded in this process since the last collect."""
    return samples.take()


bench.task(priority=Priority.CRITICAL)(collect)


def _fan_engine(name: str) -> Engine:
    engine = Engine(name)

    @engine.on(FAN_PATTERN)
    async def tick(payload: int) -> None:
        samples.add(payload)

    engine.task(priority=Priority.CRITICAL)(collect)
    return engine


fan_a = _fan_engine("ntbench_fan_a")
fan_b = _fan_engine("ntbench_fan_b")
fan_c = _fan_engine("ntbench_fan_c")
FAN_ENGINES = ("fan_a", "fan_b", "fan_c")
"""The attributes of this module that name the three subscribed engines."""

sink = Engine("ntbench_sink")
"""The target of the enqueue scenarios: no worker reads it."""


@sink.task
async def put(value: int) -> None:
    """Never runs: the enqueue scenarios measure the sending side alone."""
