"""Stopping background tasks for sure.

On Python 3.11 a cancellation can be swallowed inside a library call (redis-py wraps
socket writes in ``asyncio.wait_for``, which drops a cancel that lands as the inner
call completes), and a ``while True`` loop then runs on. So a stop is repeated until
every task has really finished.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, TypeVar

from .errors import ConfigurationError

T = TypeVar("T")
LOOPS = ("asyncio", "uvloop")

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


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop factory named ``name``: None for the standard asyncio loop, or
    uvloop's, which needs the ``uvloop`` extra (``pip install nautilus-tasks[uvloop]``)."""
    if name == "asyncio":
        return None
    if name != "uvloop":
        raise ConfigurationError(f"unknown event loop {name!r} (one of {', '.join(LOOPS)})")
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError as exc:
        raise ConfigurationError(
            "the uvloop event loop needs uvloop: pip install 'nautilus-tasks[uvloop]'"
        ) from exc
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(coro: Coroutine[Any, Any, T], loop: str = "asyncio") -> T:
    """``asyncio.run`` on the event loop named ``loop`` (see ``loop_factory``)."""
    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        return runner.run(coro)
