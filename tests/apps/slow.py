"""The engine of the kill -9, long-task and zombie fault tests, run by real worker processes.

Every handler records what it did in Redis, under the run's ``NT_PREFIX``:

- ``P:test:runs``      hash n -> how many times a handler body finished for message ``n``
                       (the key that ``tests.ledger.Ledger`` reads);
- ``P:test:began``     hash n -> epoch ms when ``timed`` started (last start wins);
- ``P:test:ended``     hash n -> epoch ms when ``timed`` finished;
- ``P:test:seen``      list of ``n:deliveries:pid`` per finished run of ``timed``;
- ``P:test:starts``    list of ``pid:deliveries`` per start of ``hold``/``hold_once``;
- ``P:test:holder``    the pid of the first process that started ``hold``/``hold_once``;
- ``P:test:gate``      list the test pushes to, to let the first holder go on;
- ``P:test:gate2``     the same for a later runner, when it was asked to wait too.

``hold`` and ``hold_once`` return the pid of the process that ran them (what a requester
gets as its reply tells who sent it).

The connection is opened on first use, in the worker process.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable
from typing import TypeVar, cast

from nautilus_tasks import Engine, MessageContext, current_message
from tests.apps.common import conn as connection
from tests.apps.common import key

slow = Engine("slow")

T = TypeVar("T")

GATE_TIMEOUT = 60
"""Seconds the first holder waits for the gate at most (the test opens it much sooner)."""


async def ready(value: Awaitable[T] | T) -> T:
    """Await a redis-py command: typed as sync-or-async, it is awaitable on asyncio clients."""
    return await cast(Awaitable[T], value)


def _context() -> MessageContext:
    context = current_message()
    if context is None:
        raise RuntimeError("a slow task runs only in a worker")
    return context


def _ms() -> str:
    return str(int(time.time() * 1000))


@slow.task
async def quick(n: int, pause: float = 0.0) -> int:
    """A few milliseconds of work, then record the execution (kill -9 test)."""
    if pause:
        await asyncio.sleep(pause)
    await ready(connection().hincrby(key("runs"), str(n), 1))
    return n


@slow.task
async def timed(n: int, pause: float) -> int:
    """``pause`` seconds of work, recording start, end, delivery count and pid (long task)."""
    conn = connection()
    deliveries = _context().deliveries
    await ready(conn.hset(key("began"), str(n), _ms()))
    await asyncio.sleep(pause)
    pipe = conn.pipeline(transaction=False)
    pipe.hincrby(key("runs"), str(n), 1)
    pipe.hset(key("ended"), str(n), _ms())
    pipe.rpush(key("seen"), f"{n}:{deliveries}:{os.getpid()}")
    await pipe.execute()
    return n


class ZombieFailure(RuntimeError):
    """Raised by the first holder after it resumed, in the retry and dead-letter variants."""


async def _hold(n: int, fail: bool, wait_later: bool) -> int:
    """The first process to run this blocks on ``gate`` (the test pauses it there), then
    finishes or, with ``fail``, raises. A later run (the reclaiming worker's) finishes, at
    once or, with ``wait_later``, when the test opens ``gate2``."""
    conn = connection()
    deliveries = _context().deliveries
    pid = os.getpid()
    await ready(conn.rpush(key("starts"), f"{pid}:{deliveries}"))
    if await conn.set(key("holder"), pid, nx=True):
        await ready(conn.blpop([key("gate")], timeout=GATE_TIMEOUT))
        if fail:
            raise ZombieFailure(f"message {n} failed in {pid} after resuming")
    elif wait_later:
        await ready(conn.blpop([key("gate2")], timeout=GATE_TIMEOUT))
    await ready(conn.hincrby(key("runs"), str(n), 1))
    return pid


@slow.task(backoff_base=0.05, backoff_max=0.1)
async def hold(n: int, fail: bool = False, wait_later: bool = False) -> int:
    """Blocks in its first runner; a failure there asks for a retry (3 retries, short backoff)."""
    return await _hold(n, fail, wait_later)


@slow.task(retries=0)
async def hold_once(n: int, fail: bool = False, wait_later: bool = False) -> int:
    """As ``hold``, but a failure is not retried: it is dead-lettered."""
    return await _hold(n, fail, wait_later)
