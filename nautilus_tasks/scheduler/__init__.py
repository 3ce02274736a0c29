"""Periodic tasks: run the schedules declared with ``Engine.periodic`` (the ``scheduler``
extra: APScheduler 3). Only the scheduler process imports this package."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
from collections.abc import Sequence

from ..buses import Buses
from ..client import Client
from ..engine import Engine
from ..errors import BusError
from .runner import Entry, Scheduler

__all__ = ["Entry", "Scheduler", "run_scheduler", "serve"]

log = logging.getLogger("nautilus_tasks.scheduler")


async def serve(engines: Sequence[Engine], buses: Buses) -> None:
    """Connect, run the schedules of ``engines`` until SIGTERM/SIGINT (a second one exits
    at once), close."""
    async with await _connect(buses) as client:
        scheduler = Scheduler(engines, client)
        _signals(scheduler)
        await scheduler.run()


async def _connect(buses: Buses) -> Client:
    """Connect, retrying with jittered backoff while the bus is down."""
    failures = 0
    while True:
        try:
            return await Client.connect(buses, source="scheduler")
        except BusError as exc:
            failures += 1
            delay = random.uniform(0.5, min(10.0, 0.5 * 2**failures))
            log.warning("cannot reach the bus (%s); retrying in %.1fs", exc, delay)
            await asyncio.sleep(delay)


def _signals(scheduler: Scheduler) -> None:
    loop = asyncio.get_running_loop()
    count = [0]

    def on_signal(signum: int) -> None:
        count[0] += 1
        if count[0] == 1:
            log.info("%s: stopping the scheduler", signal.Signals(signum).name)
            scheduler.stop()
        else:
            log.warning("second signal: exiting now")
            os._exit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)


def run_scheduler(engines: Sequence[Engine], buses: Buses) -> None:
    """Blocking entry point used by the CLI."""
    asyncio.run(serve(engines, buses))
