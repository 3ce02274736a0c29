"""Worker lifecycle: connect once, fetch and run, drain gracefully on a signal."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import socket
import time
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from ..aio import cancel_all, run
from ..broker.base import Broker
from ..buses import DEFAULT, Buses
from ..config import BusConfig, WorkerConfig
from ..engine import Engine
from ..errors import BusError, ConfigurationError
from ..events import Publisher
from ..metrics import WorkerStats
from .acks import AckBatcher
from .consumer import Fetcher, LocalQueue
from .executor import Executor
from .leases import Leases
from .maintenance import (
    check_server,
    promote_loop,
    registry_loop,
    report_loop,
    report_once,
    trim_loop,
)

if TYPE_CHECKING:
    from ..client import Client
    from ..store import StoreConfig

log = logging.getLogger("nautilus_tasks.worker")


def consumer_name() -> str:
    """A consumer name unique to this process start: host-pid-random."""
    return f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"


class Worker:
    """Runs one engine's tasks from one bus until ``stop()``."""

    def __init__(
        self,
        engine: Engine,
        broker: Broker,
        config: WorkerConfig | None = None,
        consumer: str | None = None,
        patterns: list[str] | None = None,
        audit: StoreConfig | None = None,
    ) -> None:
        self.engine = engine
        self.patterns = engine.patterns if patterns is None else patterns
        """The event patterns registered on this worker's bus."""
        self.broker = broker
        self.config = cfg = config or WorkerConfig()
        self.consumer = consumer or consumer_name()
        self.stats = WorkerStats()
        self.queue = LocalQueue()
        name = engine.name
        self.fetcher = Fetcher(
            broker, name, self.consumer, self.queue,
            capacity=cfg.capacity, block_ms=cfg.block_ms, low_share=cfg.low_share,
            critical_room=cfg.critical_room,
        )  # fmt: skip
        self.acks = AckBatcher(broker, name, self.consumer, self.stats, cfg.ack_interval)
        self.leases = Leases(
            broker, name, self.consumer, self.stats,
            lease=cfg.lease, max_deliveries=cfg.max_deliveries,
        )  # fmt: skip
        self.publisher = Publisher(broker, name)
        self.fetcher.on_hold = self.leases.hold
        self.acks.on_done = self._acked
        self.acks.rider = self.fetcher
        self.leases.settling = self.acks.settling
        self.running: set[str] = set()
        self._nothing_running = asyncio.Event()
        self._nothing_running.set()
        self._stop = asyncio.Event()
        self.started = asyncio.Event()
        self.audit = None
        """The PostgreSQL audit writer, when ``audit`` (a StoreConfig) is given."""
        if audit is not None:
            from ..store import AuditWriter

            self.audit = AuditWriter(audit, self.stats.counts)

    def _acked(self, ids: list[str]) -> None:
        """A batch of entries left this consumer: ``_finished`` for each, in one go."""
        self.leases.drop(*ids)
        self.fetcher.release(len(ids))

    def _finished(self, entry_id: str) -> None:
        """An entry left this consumer (acked, retried, dead-lettered): its lease ends and
        its place frees up. Capacity counts entries until then, not just running
        handlers, so what a crash can leave pending stays bounded by the capacity."""
        self.leases.drop(entry_id)
        self.fetcher.release()

    def stop(self) -> None:
        """Ask for a graceful stop (idempotent)."""
        self._stop.set()

    def healthy(self, now: float | None = None) -> bool:
        """Fetched, or finished an idle blocking read, within a few block periods."""
        now = time.monotonic() if now is None else now
        limit = max(5.0, 3 * self.config.block_ms / 1000)
        return self.fetcher.free <= 0 or now - self.fetcher.last_fetch < limit

    async def _slot(self, executor: Executor) -> None:
        while True:
            delivery = await self.queue.get()
            self.running.add(delivery.entry_id)
            self._nothing_running.clear()
            try:
                await executor.process(delivery)
            finally:
                self.running.discard(delivery.entry_id)
                if not self.running:
                    self._nothing_running.set()

    def _background(self) -> list[Coroutine[Any, Any, None]]:
        broker, name, cfg = self.broker, self.engine.name, self.config
        retention = cfg.retention(self.engine.dead_retention)
        return [
            self.acks.run(),
            self.leases.renew_loop(),
            self.leases.reclaim_loop(self.fetcher),
            promote_loop(broker, name, self.stats, cfg.promote_interval),
            report_loop(broker, name, self.consumer, self.stats, cfg.stats_interval),
            trim_loop(broker, name, self.stats, retention, cfg.trim_interval),
            registry_loop(self.publisher, cfg.registry_interval),
            *([] if self.audit is None else [self.audit.run()]),
        ]

    async def run(self) -> None:
        """Serve until ``stop()``, then drain. Returns when everything is handed back."""
        await self.broker.ensure_groups(self.engine.name, self.consumer)
        # always register, even no patterns: that removes subscriptions dropped from the code
        await self.broker.register_subscriptions(self.engine.name, self.patterns)
        if self.patterns:
            log.info(
                "engine %r subscribes to %s on %s", self.engine.name, self.patterns, self.broker.url
            )
        version = await check_server(self.broker)
        log.info(
            "worker %s of engine %r: %s at %s, streams %s, concurrency %d, prefetch %d,"
            " lease %.1fs",
            self.consumer, self.engine.name, version, self.broker.url,
            " ".join(self.broker.stream_names(self.engine.name)), self.config.concurrency,
            self.config.prefetch_count, self.config.lease,
        )  # fmt: skip
        threads = ThreadPoolExecutor(self.config.sync_threads, "nt-sync")
        executor = Executor(
            self.engine, self.broker, self.consumer, self.acks, self.stats, threads,
            self._finished, self.publisher, self.audit,
        )  # fmt: skip
        try:
            async with asyncio.TaskGroup() as group:
                fetch = group.create_task(self.fetcher.run())
                background = [group.create_task(c) for c in self._background()]
                slots = [
                    group.create_task(self._slot(executor)) for _ in range(self.config.concurrency)
                ]
                self.started.set()
                await self._stop.wait()
                await self._drain(fetch, slots, executor)
                await cancel_all(background)
        finally:
            # wait for sync handlers still in threads without blocking the event loop
            await asyncio.get_running_loop().run_in_executor(None, threads.shutdown)
        await report_once(self.broker, self.engine.name, self.consumer, self.stats, heartbeat=False)
        log.info("worker %s stopped: %s", self.consumer, dict(self.stats.counts))

    async def _drain(
        self, fetch: asyncio.Task[Any], slots: list[asyncio.Task[Any]], executor: Executor
    ) -> None:
        self.fetcher.stop()
        await cancel_all([fetch])
        await self.fetcher.close()  # if a cancel cut the fetch loop's own wait for it short
        for _ in self.queue.drain():
            self.fetcher.release()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.config.grace):
                await self._nothing_running.wait()
        if self.running:
            log.warning(
                "grace period over: %d running tasks cancelled (a sync one finishes its thread)",
                len(self.running),
            )
        await cancel_all(slots)
        if not await self.acks.flush(max(5.0, self.config.grace)):
            log.error("could not flush acks; those entries stay pending and will run again")
        if self.audit is not None:
            await self.audit.flush(max(2.0, min(10.0, self.config.grace)))
        await self._hand_back(set(executor.in_threads))

    async def _hand_back(self, busy: set[str]) -> None:
        """Requeue what this consumer holds and did not finish, then leave the group.

        Entries in ``busy`` (sync handlers still running in a thread) stay pending:
        they are reclaimed after the lease, never run twice at the same time.
        """
        try:
            owned = await self.broker.owned_pending(self.engine.name, self.consumer)
            owned = {t: [i for i in ids if i not in busy] for t, ids in owned.items()}
            if busy:
                log.warning(
                    "%d sync handlers still run in threads; their entries stay pending", len(busy)
                )
            if sum(len(v) for v in owned.values()):
                moved = await self.broker.requeue(self.engine.name, self.consumer, owned)
                log.info("handed back %d held, unfinished messages of %s", moved, self.engine.name)
            self.leases.held.clear()
            await self.broker.release(self.engine.name, self.consumer)
        except BusError as exc:
            log.error("could not hand back held messages (%s): they are reclaimed later", exc)


async def serve(
    engine: Engine, bus: BusConfig | Buses, config: WorkerConfig, consumer: str | None = None
) -> None:
    """Connect once, run a worker on every bus where ``engine`` has an inbox, until
    SIGTERM/SIGINT; a second signal exits at once."""
    buses = bus if isinstance(bus, Buses) else Buses({DEFAULT: bus})
    for name, cfg in buses.configs.items():
        if config.block_ms / 1000 + 1.0 > cfg.socket_timeout:
            raise ConfigurationError(
                f"bus {name!r}: socket_timeout ({cfg.socket_timeout}s) must exceed the blocking"
                f" read ({config.block_ms} ms) by at least 1 s (redis-py #2807)"
            )
    from ..store import StoreConfig

    audit = StoreConfig.from_env()
    if audit is not None:
        log.info("lifecycle audit on: PostgreSQL schema %s", audit.schema_name)
    client = await _connect(buses)
    workers = workers_for(engine, client, buses, config, consumer, audit)
    engine.bind(client)
    _signals(workers)
    try:
        async with asyncio.TaskGroup() as group:
            for worker in workers:
                group.create_task(worker.run())
    finally:
        engine.bind(None)
        await client.close()


def workers_for(
    engine: Engine,
    client: Client,
    buses: Buses,
    config: WorkerConfig,
    consumer: str | None = None,
    audit: StoreConfig | None = None,
) -> list[Worker]:
    """One worker per bus on which ``engine`` has an inbox, each registering the event
    patterns that route to its bus (and with its own audit writer, given ``audit``)."""
    return [
        Worker(engine, client.links[name].broker, config, consumer,
               [p for p in engine.patterns if buses.for_topic(p) == name], audit)
        for name in buses.for_engine(engine)
    ]  # fmt: skip


def _signals(workers: list[Worker]) -> None:
    """First SIGTERM/SIGINT: graceful stop of every worker; a second: exit at once."""
    loop = asyncio.get_running_loop()
    count = [0]

    def on_signal(signum: int) -> None:
        count[0] += 1
        if count[0] == 1:
            name = signal.Signals(signum).name
            log.info("%s: stopping gracefully (send again to exit at once)", name)
            for worker in workers:
                worker.stop()
        else:
            log.warning("second signal: exiting now; unacked messages stay pending for reclaim")
            os._exit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)


async def _connect(bus: Buses) -> Client:
    """Connect, retrying with jittered backoff while the bus is down (as Celery does)."""
    from ..client import Client

    failures = 0
    while True:
        try:
            return await Client.connect(bus)
        except BusError as exc:
            failures += 1
            delay = random.uniform(0.5, min(10.0, 0.5 * 2**failures))
            log.warning(
                "cannot reach the bus at %s (%s); retrying in %.1fs",
                sorted(c.url for c in bus.configs.values()),
                exc,
                delay,
            )
            await asyncio.sleep(delay)


def run_worker(
    engine: Engine,
    bus: BusConfig | Buses,
    config: WorkerConfig,
    consumer: str | None = None,
    loop: str = "asyncio",
) -> None:
    """Blocking entry point used by the CLI; ``loop="uvloop"`` needs the uvloop extra."""
    run(serve(engine, bus, config, consumer), loop)
