"""The engine of the grace-period fault test: async handlers that wait for what never comes.

Keys (under the run's ``NT_PREFIX``):

- ``P:test:starts``  hash n -> how many times ``linger`` started for message ``n``;
- ``P:test:runs``    hash n -> how many times it finished (``tests.ledger.Ledger`` reads it);
- ``P:test:finish``  set by the test: from then on ``linger`` finishes at once.

Without ``finish``, ``linger`` sleeps far longer than any test waits, so a graceful stop
can only end it by cancelling it once the grace period is over.
"""

from __future__ import annotations

import asyncio

from nautilus_tasks import Engine
from tests.apps.common import conn as connection
from tests.apps.common import key

graceful = Engine("graceful")

FOREVER = 600.0
"""Seconds ``linger`` waits without ``finish``: never reached in a test."""


@graceful.task
async def linger(n: int) -> int:
    """Count a start; unless ``finish`` is set, wait (as if for a reply that never comes);
    then count the run."""
    conn = connection()
    await conn.hincrby(key("starts"), str(n), 1)
    if not await conn.exists(key("finish")):
        await asyncio.sleep(FOREVER)
    await conn.hincrby(key("runs"), str(n), 1)
    return n
