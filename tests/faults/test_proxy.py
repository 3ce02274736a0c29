"""Connection cuts: a TCP proxy sits between the bus and both the worker process and the
producer (this test's client), and drops every connection at once, 5 times in 5,000 tasks.

Sends are not retried here. A send that raised may or may not have been stored (the command
can reach the server while the reply is lost), so: every acknowledged send runs; what runs
was sent; a send that raised may run or not. Each cut breaks the worker's connections while
it holds work: its acks are retried after the reconnect, and consuming resumes.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from functools import partial
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from nautilus_tasks import BusConfig, Client
from nautilus_tasks.embedded import HOST, EmbeddedServer
from tests.apps.durable import (
    Record,
    Sends,
    cancel,
    drained,
    durable,
    joined,
    produce,
    stop_gracefully,
)
from tests.faults.proxy import Proxy
from tests.helpers import wait_for
from tests.procs import start_worker

pytestmark = pytest.mark.integration

APP = "tests.apps.durable:durable"
TOTAL = 5000
CUTS = 5
CONCURRENCY = 20
CAPACITY = CONCURRENCY + CONCURRENCY // 4
WINDOW = 2 * CAPACITY
"""Entries one cut can make run again: those held, plus those finished whose ack was lost."""
WORK = 0.01


async def test_five_cuts_of_every_connection_lose_no_acknowledged_send(
    raw: aioredis.Redis,
    redis_url: str,
    prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NT_RECORD_URL", redis_url)  # records go straight to the session server
    server = EmbeddedServer(tmp_path / "bus")
    proxy = Proxy(HOST, server.port)
    log = tmp_path / "worker.log"
    sends, record = Sends(), Record(raw, prefix)
    worker: subprocess.Popen[bytes] | None = None
    client: Client | None = None
    producer: asyncio.Task[None] | None = None
    cut: list[int] = []
    try:
        await asyncio.to_thread(server.start)
        await proxy.start()
        args = ("--lease", "1", "-c", str(CONCURRENCY))
        worker = start_worker(APP, proxy.url, prefix, *args, log=log)
        bus = BusConfig.from_url(proxy.url, prefix=prefix, socket_timeout=5.0)
        client = await Client.connect(bus, source="t")
        client.bind(durable)
        await wait_for(lambda: joined(client), 30)  # the worker is in; the cuts may begin
        producer = asyncio.create_task(
            produce(range(TOTAL), sends, retry_for=0, work=WORK, pause=0.008)
        )
        for k in range(1, CUTS + 1):
            ran = await record.distinct()
            await wait_for(partial(sends.acked_at_least, k * TOTAL // (CUTS + 2)), 60)
            await wait_for(partial(record.ran_at_least, ran + 50), 60)  # consuming resumed
            assert not producer.done(), "the cuts happen while the producer sends"
            cut.append(proxy.cut())
        await asyncio.wait_for(producer, 60)
        await wait_for(lambda: record.ran_all(sends.acked), 60)
        await wait_for(lambda: drained(client), 30)
        assert worker.poll() is None, "the worker reconnected by itself and is still running"
        assert await stop_gracefully(worker) == 0, log.read_text()[-5000:]
    finally:
        if producer is not None:
            await cancel(producer)
        if client is not None:
            await client.close()
        if worker is not None and worker.poll() is None:
            worker.kill()
            worker.wait(10)
        await proxy.close()
        if server.running:
            await asyncio.to_thread(server.kill, signal.SIGKILL)
    outcome = await record.check(sends)
    text = log.read_text()
    print(
        f"\n[proxy] connections cut {cut} ({proxy.accepted} accepted); acked"
        f" {len(sends.acked)}, raised {len(sends.failed)} {dict(sends.errors)}; {outcome.summary()}"
    )
    assert all(n >= 2 for n in cut), f"each cut broke the worker's and the producer's: {cut}"
    assert sends.errors.keys() <= {"BusUnavailable"}, sends.errors
    assert len(sends.acked) + len(sends.failed) == TOTAL
    assert not outcome.missing, f"acknowledged sends lost: {sorted(outcome.missing)[:20]}"
    assert not outcome.unknown, f"ran but never sent: {sorted(outcome.unknown)[:20]}"
    # the only sends that did not run are sends that raised (some of those ran: stored, reply lost)
    assert sends.attempted - set(outcome.runs) <= sends.failed
    # duplicates only inside the window: entries held by the worker when a cut broke them
    assert not outcome.stored_twice, "each n was sent once: one stream entry each"
    assert outcome.redelivered_entries <= CUTS * WINDOW, outcome.summary()
    assert "Traceback" not in text, text[-5000:]
