"""A test engine for the PostgreSQL audit, run by worker processes with NT_POSTGRES_DSN.

``ok`` succeeds at once, ``flaky`` asks for one retry then succeeds, ``doomed`` fails
twice and is dead-lettered. Each success increments ``P:test:done`` (P from NT_PREFIX).
"""

from __future__ import annotations

from nautilus_tasks import Engine, Retry, current_message
from tests.apps.common import conn, key

audited = Engine("audited")


@audited.task
async def ok(n: int) -> int:
    await conn().incr(key("done"))
    return n


@audited.task(retries=1)
async def flaky(n: int) -> int:
    msg = current_message()
    assert msg is not None
    if msg.attempt == 0:
        raise Retry(delay=0.05)
    await conn().incr(key("done"))
    return n


@audited.task(retries=1, backoff_base=0.01, backoff_max=0.05)
async def doomed(n: int) -> None:
    raise ValueError(f"doomed {n}")
