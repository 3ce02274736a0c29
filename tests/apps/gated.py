"""An engine whose task waits on a gate, for the backpressure and full-server tests."""

from __future__ import annotations

import asyncio

from nautilus_tasks import Engine, Task

FILL_PAYLOAD = "x" * 2000
QUIET = {"promote_interval": 5.0, "stats_interval": 60.0}
"""Keeps an in-process worker's background loops asleep (no Redis call in flight) when it is
stopped: on Python 3.11 redis-py can lose a cancellation that lands during a call, and those
loops stop on cancellation alone, so the worker's stop would hang (a known library bug)."""
FILL_LIMIT = 20_000
"""Sends to give up after when filling a server (4 MB holds about 1,500 of these)."""


def _gated_engine(name: str, gate: asyncio.Event, ran: list[int], **kw: int) -> Engine:
    """An engine whose task waits for ``gate``, then records its argument."""
    engine = Engine(name, **kw)

    @engine.task
    async def job(n: int, blob: str = "") -> None:
        await gate.wait()
        ran.append(n)

    return engine


def _job(engine: Engine) -> Task[..., None]:
    return engine.tasks["job"]
