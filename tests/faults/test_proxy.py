"""Connection cuts: a TCP proxy sits between the bus and both the worker process and the
producer (this test's client), and drops every connection at once, 5 times in 5,000 tasks.

Sends are not retried here. A send that raised may or may not have been stored (the command
can reach the server while the reply is lost), so: every acknowledged send runs; what runs
was sent; a send that raised may run or not. Each cut breaks the worker's connections while
it holds work: its acks are retried after the reconnect, and consuming resumes.

With the proxy stalled instead (connections open, nothing goes through): a send raises
BusUnavailable once its socket timeout passes, and never reports success; a worker whose
handlers finish meanwhile keeps their acks and retries them after the reconnect, so nothing
runs twice. And a worker refuses a socket timeout that does not exceed its blocking read.
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import subprocess
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from urllib.parse import urlparse

import pytest
import redis.asyncio as aioredis

from nautilus_tasks import (
    BusConfig,
    BusUnavailable,
    Client,
    ConfigurationError,
    Engine,
    Priority,
    WorkerConfig,
)
from nautilus_tasks.embedded import HOST, EmbeddedServer
from nautilus_tasks.message import decode
from nautilus_tasks.worker.runner import serve
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
from tests.helpers import running_worker, wait_for
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


@pytest.mark.own_server
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


STALL_TIMEOUT = 2.0
"""The socket timeout of the clients behind a stalled proxy, in seconds (above the 0.5 s
blocking read of the worker behind it, by the 1 s that ``serve`` asks for)."""
HELD = 5
"""Handlers running in the worker when the proxy stalls."""


@asynccontextmanager
async def proxied(
    redis_url: str, prefix: str, timeout: float
) -> AsyncIterator[tuple[Proxy, Client]]:
    """A proxy in front of the session's server, and a client through it with ``timeout``
    as its socket timeout."""
    target = urlparse(redis_url)
    async with Proxy(target.hostname or HOST, target.port or 6379) as proxy:
        bus = BusConfig.from_url(proxy.url, prefix=prefix, socket_timeout=timeout)
        async with await Client.connect(bus, source="stalled") as client:
            yield proxy, client


async def _sent(raw: aioredis.Redis, stream: str) -> list[int]:
    """The argument of every message in ``stream``."""
    return [decode(fields).body["args"][0] for _, fields in await raw.xrange(stream)]


async def test_a_send_through_a_stalled_link_raises_bus_unavailable_after_its_timeout(
    raw: aioredis.Redis, redis_url: str, prefix: str
) -> None:
    engine = Engine("stall")

    @engine.task
    async def job(n: int) -> None: ...

    async with proxied(redis_url, prefix, STALL_TIMEOUT) as (proxy, client):
        client.bind(engine)
        stream = client.broker.keys("stall").stream(Priority.NORMAL)
        await job.send(0)  # the link works
        proxy.stall()
        outcome = await asyncio.wait_for(
            asyncio.gather(job.send(1), return_exceptions=True), 10 * STALL_TIMEOUT
        )
        assert isinstance(outcome[0], BusUnavailable), outcome  # neither success nor a hang
        proxy.cut()  # what waited in the stalled link is dropped: the message was not stored
        proxy.resume()
        assert await _sent(raw, stream) == [0]
        await job.send(2)  # the client reconnects by itself
        assert await _sent(raw, stream) == [0, 2]


async def test_acks_that_failed_while_the_link_stalled_are_retried_after_the_reconnect(
    client: Client, raw: aioredis.Redis, redis_url: str, prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """HELD handlers run while the worker's link stalls; they finish meanwhile, their acks
    time out, and the stalled commands are then dropped (a cut): only the worker's retry of
    its acks can settle the entries. Each runs once; nothing waits for the lease."""
    engine = Engine("stall")
    go = asyncio.Event()
    started: list[int] = []
    ran: list[int] = []

    @engine.task
    async def held(n: int) -> None:
        started.append(n)
        await go.wait()
        ran.append(n)

    client.bind(engine)
    keys = client.broker.keys("stall")
    config = WorkerConfig(concurrency=HELD, prefetch=0, block_ms=500, lease=60, grace=5)
    async with proxied(redis_url, prefix, STALL_TIMEOUT) as (proxy, bus):
        with caplog.at_level(logging.WARNING, logger="nautilus_tasks.worker"):
            async with running_worker(engine, bus, config) as worker:
                await client.send_many(held, [((n,), {}) for n in range(HELD)])
                await wait_for(lambda: len(started) == HELD, 30)
                proxy.stall()
                go.set()  # the handlers go on while the bus is out of reach
                await wait_for(lambda: len(ran) == HELD, 30)
                await wait_for(lambda: _ack_failed(caplog.text), 30)
                assert worker.stats.counts["acked"] == 0
                proxy.cut()
                proxy.resume()
                await wait_for(lambda: worker.stats.counts["acked"] == HELD, 30)
                counts = Counter(worker.stats.counts)
    assert sorted(ran) == list(range(HELD)), "each ran once: nothing was delivered again"
    assert counts["reclaimed"] == 0 and counts["ack_gone"] == 0, counts
    assert counts["succeeded"] == HELD, counts
    assert int(await raw.xlen(keys.stream(Priority.NORMAL))) == 0
    assert int((await raw.xpending(keys.stream(Priority.NORMAL), "stall"))["pending"]) == 0


def _ack_failed(text: str) -> bool:
    return re.search(r"ack of \d+ entries failed", text) is not None


@pytest.mark.parametrize("socket_timeout", [1.0, 1.5])
async def test_a_worker_refuses_a_socket_timeout_not_above_its_blocking_read(
    socket_timeout: float,
) -> None:
    """``serve`` checks every bus before it connects (here to nothing: the port is closed,
    so a worker that skipped the check would keep retrying the connection instead)."""
    bus = BusConfig.from_url("redis://127.0.0.1:1", socket_timeout=socket_timeout)
    with pytest.raises(ConfigurationError, match=r"socket_timeout \(.*\) must exceed"):
        await asyncio.wait_for(serve(Engine("t"), bus, WorkerConfig(block_ms=1000)), 10)
