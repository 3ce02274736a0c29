"""Restarts of the Redis server under a working worker process and a sending producer.

The bus under test is an EmbeddedServer of each test's own; what ran is recorded on the
session's server (``tests/apps/durable.py``), which survives the restarts.

- With AOF (SIGTERM; SIGKILL with ``appendfsync always``, so every acknowledged write was
  fsynced), no acknowledged send is lost and the worker reconnects by itself. A third case
  keeps the server down until the worker's leases have run out: what it held is then idle
  past the lease when the server comes back.
- Without persistence the groups are gone: the worker recreates them, warns once per
  restart, and runs what is sent after the restart.

Sends that raised are retried by the producer with the same message id. Such a send may have
been stored before its reply was lost (seen with both SIGTERM and SIGKILL), so its retry can
store a second stream entry: the record tells those apart from redeliveries.
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from nautilus_tasks import BusConfig, Client
from nautilus_tasks.broker.redis import RedisBroker
from nautilus_tasks.embedded import EmbeddedServer
from nautilus_tasks.errors import BusUnavailable
from nautilus_tasks.priority import Priority
from tests.apps.durable import (
    Outcome,
    Record,
    Sends,
    cancel,
    drained,
    durable,
    joined,
    produce,
    stop_gracefully,
)
from tests.helpers import wait_for
from tests.procs import start_worker

pytestmark = [pytest.mark.integration, pytest.mark.own_server]

APP = "tests.apps.durable:durable"
TOTAL = 5000
CONCURRENCY = 20
CAPACITY = CONCURRENCY + CONCURRENCY // 4
"""What one worker holds at most: running plus prefetched (the default prefetch)."""
WINDOW = 2 * CAPACITY
"""Entries one break can make run again: those held, plus those finished whose ack was lost."""
RETRY_FOR = 30.0
LANES = 4
"""Concurrent one-by-one senders: with ``appendfsync always`` they share the fsyncs."""
WORK = 0.02
"""Seconds each task takes: the producer runs ahead, so the worker holds a full window and
has a backlog when the server goes away."""
RENEWAL_FAILED = "lease renewal in durable failed"
WARNING = re.compile(r"consumer group 'durable' was missing on .* recreated it")


@asynccontextmanager
async def bus_and_worker(
    server: EmbeddedServer, prefix: str, log: Path
) -> AsyncIterator[tuple[Client, subprocess.Popen[bytes]]]:
    """The started server, a worker process on it and a producer's client bound to
    ``durable``; everything is stopped and killed at the end, whatever happened."""
    await asyncio.to_thread(server.start)
    worker: subprocess.Popen[bytes] | None = None
    client: Client | None = None
    try:
        args = ("--lease", "1", "-c", str(CONCURRENCY))
        worker = start_worker(APP, server.url, prefix, *args, log=log)
        client = await Client.connect(BusConfig.from_url(server.url, prefix=prefix), source="t")
        client.bind(durable)
        await wait_for(lambda: joined(client), 30)  # it connects once; then it reconnects
        yield client, worker
    finally:
        if client is not None:
            await client.close()
        if worker is not None and worker.poll() is None:
            worker.kill()
            worker.wait(10)
        if server.running:
            await asyncio.to_thread(server.kill, signal.SIGKILL)


async def restart(
    server: EmbeddedServer, how: str, down_until: Callable[[], bool] | None = None
) -> None:
    """SIGTERM (a clean shutdown: the AOF is flushed) or SIGKILL, then start again on the
    same port and data directory, once ``down_until`` holds if given. Off the event loop:
    the producer keeps running."""
    if how == "sigterm":
        await asyncio.to_thread(server.stop)
    else:
        await asyncio.to_thread(server.kill, signal.SIGKILL)
    if down_until is not None:
        await wait_for(down_until, 30)
    await asyncio.to_thread(server.start)


def renewals_failed(log: Path, n: int) -> bool:
    """Whether the worker has logged ``n`` failed lease renewals (one try every third of the
    lease): after 4 since the server went away, what it holds is idle past its lease."""
    return log.read_text().count(RENEWAL_FAILED) >= n


def check_duplicates(outcome: Outcome, sends: Sends, breaks: int) -> None:
    """Duplicates only inside the documented window."""
    # One stream entry running again: it was held by the worker when its connection broke.
    assert outcome.redelivered_entries <= breaks * WINDOW, outcome.summary()
    # Two stream entries for one n: only a send that raised and was retried can do that.
    for n, entries in outcome.stored_twice.items():
        assert n in sends.retried, f"{n} stored {entries} times but sent once"
        assert entries <= sends.attempts[n], (n, entries, sends.attempts[n])


@pytest.mark.parametrize(
    ("how", "fsync", "past_lease"),
    [("sigterm", "everysec", False), ("sigkill", "always", False), ("sigkill", "always", True)],
    ids=["sigterm", "sigkill", "sigkill-down-past-the-lease"],
)
async def test_restart_with_aof_loses_no_acknowledged_send(
    how: str,
    fsync: str,
    past_lease: bool,
    raw: aioredis.Redis,
    redis_url: str,
    prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NT_RECORD_URL", redis_url)  # the worker records on the session server
    server = EmbeddedServer(tmp_path / "bus", appendonly=True, appendfsync=fsync)
    log = tmp_path / "worker.log"
    sends, record = Sends(), Record(raw, prefix)
    async with bus_and_worker(server, prefix, log) as (client, worker):
        producer = asyncio.create_task(
            produce(range(TOTAL), sends, retry_for=RETRY_FOR, work=WORK, lanes=LANES, pause=0.0)
        )
        try:
            # restart in the middle: half sent, the worker busy with a backlog
            await wait_for(lambda: len(sends.acked) >= TOTAL // 2, 60)
            await wait_for(lambda: _backlog_at_least(record, sends, 2 * CAPACITY), 60)
            ran_before, acked_before = await record.distinct(), len(sends.acked)
            # past the lease: what the worker holds is reclaimable when the server is back
            failed = log.read_text().count(RENEWAL_FAILED)
            down_until = partial(renewals_failed, log, failed + 4) if past_lease else None
            await restart(server, how, down_until)
            await asyncio.wait_for(producer, 120)
        finally:
            await cancel(producer)
        await wait_for(lambda: record.ran_all(sends.acked), 60)
        await wait_for(lambda: drained(client), 30)  # acks retried after the reconnect
        assert worker.poll() is None, "the worker reconnected by itself and is still running"
        assert await stop_gracefully(worker) == 0, log.read_text()[-5000:]
    outcome = await record.check(sends)
    text = log.read_text()
    case = f"{how}/{fsync}{'/down past the lease' if past_lease else ''}"
    print(
        f"\n[{case}] restart with {acked_before} acked, {ran_before} ran;"
        f" acked {len(sends.acked)}, failed {len(sends.failed)},"
        f" send errors {dict(sends.errors)}; {outcome.summary()};"
        f" worker log: {_log_counts(text)}"
    )
    assert sends.errors.keys() <= {"BusUnavailable"}, sends.errors
    assert not sends.failed, "every send succeeded within the producer's retry time"
    assert len(sends.acked) == TOTAL
    assert not outcome.missing, f"acknowledged sends lost: {sorted(outcome.missing)[:20]}"
    assert not outcome.unknown, f"ran but never sent: {sorted(outcome.unknown)[:20]}"
    # Down past the lease, the one worker currently reclaims (XAUTOCLAIM) the entries it still
    # holds itself and runs them a second time: its whole window, inside the bound below.
    check_duplicates(outcome, sends, breaks=1)
    assert "Traceback" not in text, text[-5000:]
    assert acked_before - ran_before > CAPACITY, "the worker had a backlog at the restart"


async def test_restart_without_persistence_recreates_groups_and_warns_once(
    raw: aioredis.Redis,
    redis_url: str,
    prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NT_RECORD_URL", redis_url)
    server = EmbeddedServer(tmp_path / "bus", appendonly=False)  # and --save "": no data kept
    log = tmp_path / "worker.log"
    sends, record = Sends(), Record(raw, prefix)
    phase = 1000
    warned: list[int] = []
    """Warnings logged for each restart."""
    async with bus_and_worker(server, prefix, log) as (client, worker):
        for i, how in enumerate(("sigterm", "sigkill")):
            ns = range(i * phase, (i + 1) * phase)
            producer = asyncio.create_task(produce(ns, sends, retry_for=RETRY_FOR, work=WORK))
            try:
                await wait_for(partial(sends.acked_at_least, phase // 2, ns), 60)
                await restart(server, how)
                restarted = time.monotonic()
                await asyncio.wait_for(producer, 60)
            finally:
                await cancel(producer)
            # what was sent after the restart runs: the worker recovered and consumes again
            after = {n for n in ns if n in sends.acked and sends.acked[n] >= restarted}
            assert len(after) >= phase // 4, "the producer kept sending after the restart"
            await wait_for(partial(record.ran_all, after), 60)
            await wait_for(partial(_warned, log, i + 1), 30)
            assert worker.poll() is None, "the worker survived the loss of its groups"
            assert await joined(client), "its groups and consumer are back on all four tiers"
            warned.append(_warnings(log) - sum(warned))
        await wait_for(lambda: drained(client), 30)
        assert await stop_gracefully(worker) == 0, log.read_text()[-5000:]
    warned[-1] += _warnings(log) - sum(warned)  # none may come later either
    outcome = await record.check(sends)
    text = log.read_text()
    print(
        f"\n[no persistence] acked {len(sends.acked)}, failed {len(sends.failed)},"
        f" send errors {dict(sends.errors)}; {outcome.summary()}; lost (sent before a loss)"
        f" {len(outcome.missing)}; worker log: {_log_counts(text)}"
    )
    assert not outcome.unknown, f"ran but never sent: {sorted(outcome.unknown)[:20]}"
    check_duplicates(outcome, sends, breaks=2)
    assert "Traceback" not in text, text[-5000:]
    # exactly one warning per restart (the loops that meet NOGROUP together share one lock)
    assert warned == [1, 1], f"warnings per restart {warned}:\n{_grep(log)}"
    # no busy loop on NOGROUP or on the lost connection: a few backed-off retries per restart
    assert text.count("fetch from durable failed") <= 2 * 20, _grep(log)


LOSSES = 20


async def test_loops_meeting_nogroup_at_once_warn_once_per_loss(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The broker calls of a worker's concurrent loops, made at once after each of
    ``LOSSES`` restarts without persistence, log the warning exactly once per loss."""
    server = EmbeddedServer(tmp_path / "bus")
    await asyncio.to_thread(server.start)
    broker: RedisBroker | None = None
    per_loss: list[int] = []
    try:
        broker = await RedisBroker.connect(BusConfig.from_url(server.url, prefix="race"))
        await broker.ensure_groups("durable", "c1")
        with caplog.at_level(logging.WARNING, logger="nautilus_tasks.broker"):
            for _ in range(LOSSES):
                await restart(server, "sigkill")
                caplog.clear()
                await _loops_meet_the_loss(broker)
                per_loss.append(sum("was missing on" in r.getMessage() for r in caplog.records))
    finally:
        if broker is not None:
            await broker.close()
        await asyncio.to_thread(server.kill, signal.SIGKILL)
    assert per_loss == [1] * LOSSES, f"warnings per loss: {per_loss}"


async def _loops_meet_the_loss(broker: RedisBroker) -> None:
    """What the fetch, ack, renew and reclaim loops of one worker call, at the same time;
    again, as the loops do, while some fail on connections broken by the restart."""
    held = {Priority.NORMAL: ["1-0", "2-0"]}
    for _ in range(10):
        results = await asyncio.gather(
            broker.read("durable", "c1", 10, [0, 0, 0], 0),
            broker.ack("durable", "c1", held),
            broker.renew("durable", "c1", held),
            broker.reclaim(
                "durable",
                "c1",
                Priority.CRITICAL,
                cursor="0-0",
                count=10,
                min_idle_ms=1000,
                max_deliveries=5,
                now_ms=0,
            ),
            return_exceptions=True,
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        if not errors:
            return
        if not all(isinstance(e, BusUnavailable) for e in errors):
            raise errors[0]
    raise AssertionError("the broker did not reconnect")


async def _backlog_at_least(record: Record, sends: Sends, n: int) -> bool:
    return len(sends.acked) - await record.distinct() >= n


def _warnings(log: Path) -> int:
    return sum(1 for line in log.read_text().splitlines() if WARNING.search(line))


def _warned(log: Path, n: int) -> bool:
    return _warnings(log) >= n


def _grep(log: Path) -> str:
    return "\n".join(line for line in log.read_text().splitlines() if "WARNING" in line)[-5000:]


def _log_counts(text: str) -> dict[str, int]:
    """How often the worker logged each kind of trouble (for the report)."""
    kinds = {
        "fetch failed": "fetch from",
        "fetch resumed": "fetching from",
        "ack failed": "ack of",
        "ack refused": "ack refused",
        "renew failed": "lease renewal",
        "lease lost": "lost the lease",
        "reclaimed": "reclaimed",
        "reclaim failed": "reclaim in",
        "group recreated": "was missing on",
    }
    return {k: text.count(v) for k, v in kinds.items() if text.count(v)}
