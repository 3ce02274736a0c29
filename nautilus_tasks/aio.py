"""Stopping background tasks for sure.

On Python 3.11 a cancellation can be swallowed inside a library call (redis-py wraps
socket writes in ``asyncio.wait_for``, which drops a cancel that lands as the inner
call completes), and a ``while True`` loop then runs on. So a stop is repeated until
every task has really finished.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger("nautilus_tasks")


async def cancel_all(tasks: Iterable[asyncio.Task[Any]], patience: float = 0.05) -> None:
    """Cancel ``tasks`` and wait until all are done, cancelling again while any runs on."""
    pending = {t for t in tasks if not t.done()}
    rounds = 0
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=patience)
        rounds += 1
        if pending and rounds % 100 == 0:
            log.warning("%d background tasks still running after %d cancels", len(pending), rounds)
