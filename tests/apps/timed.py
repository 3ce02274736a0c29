"""A test engine for delays and TTL, run by real worker processes.

Keys (under the run's NT_PREFIX): ``P:test:runs`` hash n -> executions (the Ledger's
key, shared by every task here: give each send a distinct ``n``), and ``P:test:starts``,
a list of ``"<n>:<Redis TIME in microseconds>"`` written by ``stamp`` as it starts.
The connection is opened on first use, per process.
"""

from __future__ import annotations

from nautilus_tasks import Engine
from tests.apps.common import conn as connection
from tests.apps.common import key

timed = Engine("timed")

FLEETING_TTL = 0.3
"""The TTL that ``fleeting`` declares, in seconds."""


async def _record(n: int) -> None:
    await connection().hincrby(key("runs"), str(n), 1)


@timed.task
async def stamp(n: int) -> None:
    """Record the Redis TIME at the start, then the execution."""
    conn = connection()
    seconds, micros = await conn.time()
    await conn.rpush(key("starts"), f"{n}:{seconds * 1_000_000 + micros}")
    await _record(n)


@timed.task(ttl=FLEETING_TTL)
async def fleeting(n: int) -> None:
    """A task whose messages expire by default (declared ttl; expired ones are dead-lettered)."""
    await _record(n)


@timed.task(on_expire="drop")
async def droppable(n: int) -> None:
    """A task whose expired messages are dropped (counted), not dead-lettered."""
    await _record(n)
