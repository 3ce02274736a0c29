"""A test engine of tasks that run past their ``timeout=``, run by real worker processes.

Every run records itself in Redis, under the run's ``NT_PREFIX``:

- ``P:test:starts:<n>``    list of the attempt numbers of the runs of message ``n`` that began;
- ``P:test:cancelled:<n>`` list of the attempts whose async handler saw its cancellation;
- ``P:test:finished``      hash n -> handler bodies of message ``n`` that ran to their end;
- ``P:test:gate``          list the test pushes to, once per blocked thread, to let
                           ``blocks`` finish (each run takes one item).

``sleeps`` is async; ``blocks`` is a plain ``def``, run in one of the worker's threads, with
its own (synchronous) connection.
"""

from __future__ import annotations

import asyncio
import os

import redis

from nautilus_tasks import Engine, current_message
from tests.apps.common import conn as connection
from tests.apps.common import key

timeouts = Engine("timeouts")

TIMEOUT = 1.5
"""The declared time limit of both tasks, in seconds: generous, so that recording the start
of a run always fits in it even on a loaded machine."""
WORK = 60.0
"""Seconds each handler would run if nobody stopped it: far past ``TIMEOUT``."""

_sync: list[redis.Redis] = []


def _attempt() -> int:
    msg = current_message()
    assert msg is not None, "runs only in a worker"
    return msg.attempt


def _sync_conn() -> redis.Redis:
    """This process's synchronous connection (threads share it: redis-py pools them)."""
    if not _sync:
        _sync.append(redis.Redis.from_url(os.environ["NT_REDIS_URL"]))
    return _sync[0]


@timeouts.task(timeout=TIMEOUT, retries=1, backoff_base=0.05, backoff_max=0.1)
async def sleeps(n: int) -> None:
    """Runs ``WORK`` seconds: past its limit it is cancelled (and records that it was)."""
    attempt = _attempt()
    conn = connection()
    await conn.rpush(key(f"starts:{n}"), attempt)
    try:
        await asyncio.sleep(WORK)
    except asyncio.CancelledError:
        # recorded with a blocking call: nothing awaited here can be cut short by a
        # cancellation still on its way (a test app may block the loop for a moment)
        _sync_conn().rpush(key(f"cancelled:{n}"), attempt)
        raise
    await conn.hincrby(key("finished"), str(n), 1)


@timeouts.task(timeout=TIMEOUT, retries=1, backoff_base=0.05, backoff_max=0.1)
def blocks(n: int) -> None:
    """Blocks its thread until the test opens the gate (a thread cannot be cancelled)."""
    conn = _sync_conn()
    conn.rpush(key(f"starts:{n}"), _attempt())
    conn.blpop([key("gate")], timeout=int(WORK))
    conn.hincrby(key("finished"), str(n), 1)
