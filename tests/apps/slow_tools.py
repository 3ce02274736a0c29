"""Test-side tools of the fault tests that run ``tests.apps.slow``: worker processes that are
always reaped, the per-consumer stats JSON, and the state of the engine's streams."""

from __future__ import annotations

import os
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis

from nautilus_tasks.broker.redis.keys import Keys
from nautilus_tasks.message import decode
from tests.apps.slow import ready
from tests.helpers import wait_for
from tests.procs import start_worker

APP = "tests.apps.slow:slow"
ENGINE = "slow"


@dataclass
class Workers:
    """The worker processes of one test; ``kill_all`` in a ``finally`` reaps every one."""

    url: str
    prefix: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, log: Path, *options: str) -> subprocess.Popen[bytes]:
        proc = start_worker(APP, self.url, self.prefix, *options, log=log)
        self.procs.append(proc)
        return proc

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()  # SIGKILL also ends a stopped (SIGSTOP) process
            proc.wait(10)


@contextmanager
def workers(url: str, prefix: str) -> Iterator[Workers]:
    group = Workers(url, prefix)
    try:
        yield group
    finally:
        group.kill_all()


async def exited(proc: subprocess.Popen[bytes], timeout: float = 30) -> int:
    """Wait (polling, never blocking the loop) until ``proc`` has exited; its return code."""
    await wait_for(lambda: proc.poll() is not None, timeout)
    code = proc.poll()
    assert code is not None
    return code


async def stop(proc: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    """SIGTERM: a graceful stop, which writes the worker's final stats. It must exit 0."""
    proc.send_signal(signal.SIGTERM)
    code = await exited(proc, timeout)
    assert code == 0, f"worker {proc.pid} exited with {code}:\n{tail(log)}"


async def sigkill(proc: subprocess.Popen[bytes]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    assert await exited(proc, 10) == -signal.SIGKILL


def tail(log: Path, lines: int = 60) -> str:
    if not log.exists():
        return "(no log)"
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def keys(prefix: str) -> Keys:
    return Keys(prefix, ENGINE)


def pid_of(consumer: str) -> int:
    """Consumer names are host-pid-random."""
    return int(consumer.split("-")[-2])


async def stats(raw: aioredis.Redis, prefix: str) -> dict[str, Counter[str]]:
    """Each consumer's last published counters, from the ``P:{E}:stats`` hash."""
    data: dict[bytes, bytes] = await ready(raw.hgetall(keys(prefix).stats))
    out: dict[str, Counter[str]] = {}
    for consumer, blob in data.items():
        parsed: dict[str, Any] = orjson.loads(blob)
        out[consumer.decode()] = Counter({k: int(v) for k, v in parsed["counts"].items()})
    return out


async def stats_of_pid(raw: aioredis.Redis, prefix: str, pid: int) -> Counter[str]:
    found = [c for name, c in (await stats(raw, prefix)).items() if pid_of(name) == pid]
    assert len(found) == 1, f"one stats entry for pid {pid}, found {len(found)}"
    return found[0]


async def pending(raw: aioredis.Redis, prefix: str) -> int:
    """Entries delivered and not acked, over the four tier streams."""
    total = 0
    for stream in keys(prefix).streams:
        if await raw.exists(stream):
            total += int((await raw.xpending(stream, ENGINE))["pending"])
    return total


async def queued(raw: aioredis.Redis, prefix: str) -> int:
    """Entries still in the tier streams (acked entries are deleted)."""
    return sum([int(await raw.xlen(stream)) for stream in keys(prefix).streams])


async def settled(raw: aioredis.Redis, prefix: str) -> bool:
    """Nothing left: every entry was acked and deleted, nothing is pending or delayed."""
    k = keys(prefix)
    return (
        await queued(raw, prefix) == 0
        and await pending(raw, prefix) == 0
        and int(await raw.zcard(k.delayed)) == 0
    )


async def consumer_named(raw: aioredis.Redis, prefix: str, pid: int) -> str:
    """The group consumer of the worker process ``pid`` (each worker joins every tier)."""
    rows = await raw.xinfo_consumers(keys(prefix).streams[0], ENGINE)
    names = [r["name"].decode() for r in rows if pid_of(r["name"].decode()) == pid]
    assert len(names) == 1, f"one consumer of pid {pid}, found {names} in {rows}"
    return str(names[0])


async def held_by(raw: aioredis.Redis, prefix: str, consumer: str) -> list[int]:
    """The argument ``n`` of every entry pending with ``consumer`` (its held messages)."""
    out: list[int] = []
    for stream in keys(prefix).streams:
        if not await raw.exists(stream):
            continue
        start = "-"
        while True:
            rows = await raw.xpending_range(
                stream, ENGINE, min=start, max="+", count=1000, consumername=consumer
            )
            for row in rows:
                entry_id = row["message_id"]
                entries = await raw.xrange(stream, entry_id, entry_id)
                assert entries, f"pending entry {entry_id!r} was deleted"
                body = decode(entries[0][1]).body
                out.append(int(body["args"][0]))
            if len(rows) < 1000:
                break
            start = "(" + rows[-1]["message_id"].decode()
    return out
