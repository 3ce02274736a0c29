"""Background duties of a worker: delayed-task promotion, heartbeat and stats."""

from __future__ import annotations

import asyncio
import logging
import random

import orjson

from ..broker.base import Broker
from ..config import DeadRetention
from ..errors import BusError
from ..events import Publisher
from ..message import now_ms
from ..metrics import WorkerStats

log = logging.getLogger("nautilus_tasks.worker")

PROMOTE_BATCH = 1000


async def promote_loop(broker: Broker, engine: str, stats: WorkerStats, interval: float) -> None:
    """Move due delayed messages into their streams, counting them as ``promoted``. Safe to
    run in many workers at once: the script moves each member exactly once, judged by
    Redis TIME, and a worker killed between two calls has nothing in flight."""
    while True:
        try:
            moved, wait_ms = await broker.promote_due(engine, PROMOTE_BATCH)
        except BusError as exc:
            log.warning("promotion of delayed messages in %s failed: %s", engine, exc)
            await asyncio.sleep(interval * random.uniform(1, 3))
            continue
        if moved:
            stats.counts["promoted"] += moved
        if moved >= PROMOTE_BATCH:
            continue
        pause = interval if wait_ms < 0 else min(interval, wait_ms / 1000)
        await asyncio.sleep(pause)


async def report_loop(
    broker: Broker, engine: str, consumer: str, stats: WorkerStats, interval: float
) -> None:
    """Heartbeat and publish this worker's counters; a failed write is retried next time."""
    while True:
        await report_once(broker, engine, consumer, stats)
        await asyncio.sleep(interval)


async def report_once(
    broker: Broker, engine: str, consumer: str, stats: WorkerStats, *, heartbeat: bool = True
) -> None:
    """Write this worker's counters (and, unless it is leaving, its heartbeat)."""
    at = now_ms()
    try:
        if heartbeat:
            await broker.heartbeat(engine, consumer, at)
        await broker.write_stats(engine, consumer, orjson.dumps(stats.to_json(at=at)))
    except BusError as exc:
        log.warning("could not report stats of %s: %s", engine, exc)


async def trim_loop(
    broker: Broker, engine: str, stats: WorkerStats, retention: DeadRetention, interval: float
) -> None:
    """Apply the dead-letter retention; every removal is counted and logged."""
    max_age_ms = None if retention.max_age is None else int(retention.max_age * 1000)
    if retention.max_len is None and max_age_ms is None:
        return
    while True:
        try:
            removed = await broker.trim_dead(engine, retention.max_len, max_age_ms)
        except BusError as exc:
            log.warning("trimming dead letters of %s failed: %s", engine, exc)
            removed = 0
        if removed:
            stats.counts["dead_trimmed"] += removed
            log.info("retention removed %d dead letters of %s", removed, engine)
        await asyncio.sleep(interval)


async def check_server(broker: Broker) -> str:
    """The server's name and version; warn when its eviction policy can lose messages."""
    version = await broker.server_version()
    policy = await broker.config_get("maxmemory-policy")
    if policy is not None and policy != "noeviction":
        log.warning(
            "maxmemory-policy is %r on %s: under memory pressure the server may evict stream"
            " entries and lose messages; set it to 'noeviction'",
            policy,
            broker.url,
        )
    return version


async def registry_loop(publisher: Publisher, interval: float) -> None:
    """Keep the subscription registry used for callback topics fresh."""
    while True:
        await asyncio.sleep(interval)
        try:
            await publisher.refresh()
        except BusError as exc:
            log.warning("refreshing the subscription registry failed: %s", exc)
