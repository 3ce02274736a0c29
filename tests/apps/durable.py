"""A test engine for restart and proxy fault tests: it records executions on ANOTHER server.

The bus under test is restarted or cut, so the record of what ran must live elsewhere:
``NT_RECORD_URL`` (the session's server), under the run's ``NT_PREFIX``:

- ``P:test:runs``: hash n -> executions (what :class:`tests.ledger.Ledger` reads);
- ``P:test:entries``: hash ``"n|stream-entry-id"`` -> executions of that stream entry. Two
  entries for one ``n`` mean the producer stored it twice (a send retried after an error);
  one entry run twice is a redelivery by the framework.

The test side is here too: :func:`produce` sends with bookkeeping (:class:`Sends`), and
:class:`Record` reads the record back and compares (:class:`Outcome`).
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, cast

import redis.asyncio as aioredis

from nautilus_tasks import Client, Engine
from nautilus_tasks.context import current_message
from nautilus_tasks.errors import BusError
from nautilus_tasks.message import new_id
from tests.apps.common import conn as connection
from tests.apps.common import key

durable = Engine("durable")


@durable.task
async def record(n: int, work: float = 0.0) -> int:
    """Take ``work`` seconds, then record one execution of ``n`` and of its stream entry."""
    if work:
        await asyncio.sleep(work)
    message = current_message()
    entry = "?" if message is None else message.entry_id
    pipe = connection("NT_RECORD_URL").pipeline(transaction=False)
    pipe.hincrby(key("runs"), str(n), 1)
    pipe.hincrby(key("entries"), f"{n}|{entry}", 1)
    await pipe.execute()
    return n


# --- the test side: sending with bookkeeping, and reading the record back -------------------


@dataclass
class Sends:
    """What the producer did. A send counts as acknowledged only if it returned."""

    acked: dict[int, float] = field(default_factory=dict)
    """n -> monotonic time at which its successful attempt started."""
    failed: set[int] = field(default_factory=set)
    """Sends given up on: their last attempt raised. Each may or may not have been stored."""
    attempts: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    """Exceptions raised by sends, by type name."""

    @property
    def attempted(self) -> set[int]:
        return set(self.attempts)

    def acked_at_least(self, n: int, among: range | None = None) -> bool:
        """Whether ``n`` sends (of the n in ``among``, if given) have been acknowledged."""
        acked = self.acked.keys() if among is None else self.acked.keys() & set(among)
        return len(acked) >= n

    @property
    def retried(self) -> set[int]:
        """Sends that raised at least once (a retry may have stored a second copy)."""
        return {n for n, count in self.attempts.items() if count > 1}


async def produce(
    ns: Sequence[int],
    sends: Sends,
    *,
    retry_for: float,
    work: float = 0.0,
    lanes: int = 1,
    every: int = 10,
    pause: float = 0.004,
) -> None:
    """Send ``record(n, work)`` for each n through the bound client, one by one in each of
    ``lanes`` concurrent lanes, each pausing ``pause`` s after every ``every`` sends. A send that
    raises a BusError is tried again, with the same message id, for up to ``retry_for`` seconds
    (0: never), then recorded in ``sends.failed``."""
    lane = partial(_lane, sends=sends, retry_for=retry_for, work=work, every=every, pause=pause)
    await asyncio.gather(*(lane(ns[i::lanes]) for i in range(lanes)))


async def _lane(
    ns: Sequence[int], *, sends: Sends, retry_for: float, work: float, every: int, pause: float
) -> None:
    for i, n in enumerate(ns):
        message_id = new_id()
        deadline = time.monotonic() + retry_for
        while True:
            sends.attempts[n] += 1
            started = time.monotonic()
            try:
                await record.send_with(message_id=message_id)(n, work)
            except BusError as exc:
                sends.errors[type(exc).__name__] += 1
                if time.monotonic() >= deadline:
                    sends.failed.add(n)
                    break
                await asyncio.sleep(0.02)  # the producer's own retry pacing
                continue
            sends.acked[n] = started
            break
        if i % every == every - 1:
            await asyncio.sleep(pause)


@dataclass
class Outcome:
    """The record compared with the sends."""

    runs: dict[int, int]
    """n -> executions."""
    entries: dict[tuple[int, str], int]
    """(n, stream entry id) -> executions."""
    missing: set[int]
    """Acknowledged sends that never ran: must be empty."""
    unknown: set[int]
    """Executions of an n never sent: must be empty."""
    redelivered: int
    """Extra executions of one stream entry (the framework ran it again)."""
    redelivered_entries: int
    """Stream entries that ran more than once."""
    stored_twice: dict[int, int]
    """n -> stream entries carrying it, where more than one (a send stored twice)."""
    failed_but_ran: set[int]
    """Sends recorded as failed that ran anyway: the server had stored them."""

    def summary(self) -> str:
        return (
            f"ran {len(self.runs)} distinct, {sum(self.runs.values())} executions;"
            f" redelivered entries {self.redelivered_entries} (+{self.redelivered} runs);"
            f" sends stored twice {len(self.stored_twice)};"
            f" failed sends that ran anyway {len(self.failed_but_ran)}"
        )


class Record:
    """Reads what the durable app recorded (on the record server, under ``prefix``)."""

    def __init__(self, raw: aioredis.Redis, prefix: str) -> None:
        self.raw = raw
        self.runs_key = f"{prefix}:test:runs"
        self.entries_key = f"{prefix}:test:entries"

    async def distinct(self) -> int:
        """How many different n have run."""
        return int(await cast("Awaitable[int]", self.raw.hlen(self.runs_key)))

    async def ran_at_least(self, n: int) -> bool:
        """Whether at least ``n`` different n have run."""
        return await self.distinct() >= n

    async def ran_all(self, ns: Iterable[int]) -> bool:
        """Whether every n of ``ns`` has run at least once."""
        wanted = [str(n) for n in ns]
        if not wanted:
            return True
        found = await cast("Awaitable[list[Any]]", self.raw.hmget(self.runs_key, wanted))
        return all(v is not None for v in found)

    async def _hash(self, key: str) -> dict[bytes, bytes]:
        return await cast("Awaitable[dict[bytes, bytes]]", self.raw.hgetall(key))

    async def check(self, sends: Sends) -> Outcome:
        runs = {int(k): int(v) for k, v in (await self._hash(self.runs_key)).items()}
        entries: dict[tuple[int, str], int] = {}
        per_n: Counter[int] = Counter()
        for k, v in (await self._hash(self.entries_key)).items():
            n, _, entry = k.decode().partition("|")
            entries[int(n), entry] = int(v)
            per_n[int(n)] += 1
        return Outcome(
            runs=runs,
            entries=entries,
            missing=set(sends.acked) - set(runs),
            unknown=set(runs) - sends.attempted,
            redelivered=sum(v - 1 for v in entries.values()),
            redelivered_entries=sum(1 for v in entries.values() if v > 1),
            stored_twice={n: c for n, c in per_n.items() if c > 1},
            failed_but_ran=sends.failed & set(runs),
        )


async def joined(client: Client) -> bool:
    """Whether a worker has joined the consumer groups of ``durable`` on the client's bus."""
    info = await client.broker.inspect(durable.name)
    return all(t.consumers > 0 for t in info.tiers)


async def drained(client: Client) -> bool:
    """Nothing of ``durable`` left on the bus: inboxes empty, nothing pending, delayed, dead."""
    info = await client.broker.inspect(durable.name)
    held = sum(t.length + t.pending for t in info.tiers)
    return held == 0 and info.delayed == 0 and info.dead == 0


async def stop_gracefully(worker: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    """SIGTERM a worker process (it drains and hands back) and return its exit code."""
    worker.send_signal(signal.SIGTERM)
    return await asyncio.to_thread(worker.wait, timeout)


async def cancel(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` (a producer, say) and wait until it has ended."""
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
