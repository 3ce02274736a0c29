"""A test engine of failing tasks, run by real worker processes: retries and dead letters.

Every run is recorded in Redis (under the run's NT_PREFIX) before the handler fails or
succeeds: ``P:test:runs:<n>`` is a list of JSON objects ``{"task", "attempt", "at",
"message_id", "correlation_id"}``, where ``at`` is the server's clock (Redis TIME) in
milliseconds, so gaps between runs are measured on the same clock that schedules retries.
``P:test:done`` is a hash n -> the attempt that succeeded. ``P:test:fixed`` set means the
bug behind ``fixable`` is fixed.
"""

from __future__ import annotations

import orjson

from nautilus_tasks import Engine, MessageContext, Retry, current_message
from tests.apps.common import conn as connection
from tests.apps.common import key


class Boom(Exception):
    """What ``always_fails`` raises."""


flaky = Engine("flaky")


async def _record(task: str, n: int) -> MessageContext:
    """Append this run (attempt, Redis TIME in ms, ids) to ``P:test:runs:<n>``."""
    msg = current_message()
    assert msg is not None
    conn = connection()
    seconds, micros = await conn.time()
    run = {
        "task": task,
        "attempt": msg.attempt,
        "at": seconds * 1000 + micros / 1000,
        "message_id": msg.message_id,
        "correlation_id": msg.envelope.correlation_id,
    }
    await conn.rpush(key(f"runs:{n}"), orjson.dumps(run))
    return msg


async def _done(n: int, attempt: int) -> None:
    await connection().hset(key("done"), str(n), str(attempt))


@flaky.task(retries=3, backoff_base=0.2, backoff_max=2)
async def always_fails(n: int) -> None:
    """Fails every time: 1 + 3 runs with backoff, then the dead-letter stream."""
    await _record("always_fails", n)
    raise Boom(f"boom {n}")


@flaky.task(retries=1, backoff_base=0.05, backoff_max=0.1)
async def fixable(n: int) -> None:
    """Fails until ``P:test:fixed`` is set (the fix is deployed), then succeeds."""
    msg = await _record("fixable", n)
    if not await connection().exists(key("fixed")):
        raise RuntimeError(f"not fixed yet ({n})")
    await _done(n, msg.attempt)


@flaky.task(retries=3)
async def asks_retry(n: int, delay: float, until: int) -> None:
    """Asks for a retry in ``delay`` seconds while its attempt is below ``until``."""
    msg = await _record("asks_retry", n)
    if msg.attempt < until:
        raise Retry(delay=delay, reason=f"not yet ({msg.attempt})")
    await _done(n, msg.attempt)


@flaky.task(retries=3, backoff_base=0.05, backoff_max=0.1, dont_retry_on=(ValueError,))
async def refuses(n: int) -> None:
    """Raises ValueError, which its ``dont_retry_on`` excludes from retries."""
    await _record("refuses", n)
    raise ValueError(f"bad value {n}")


@flaky.task(retries=3, backoff_base=0.05, backoff_max=0.1, retry_on=(ConnectionError,))
async def picky(n: int, error: str) -> None:
    """Retried only on ConnectionError: ``connection`` fails twice then succeeds; ``key``
    raises KeyError, which is not retried."""
    msg = await _record("picky", n)
    if error == "connection" and msg.attempt < 2:
        raise ConnectionError(f"link down ({msg.attempt})")
    if error == "key":
        raise KeyError(f"no such key {n}")
    await _done(n, msg.attempt)
