"""Priority: a critical task overtakes a low backlog; tiers drain in order, but for the share."""

from __future__ import annotations

import asyncio

import pytest

from nautilus_tasks import Client, Engine, Priority, WorkerConfig
from tests.helpers import running_worker, wait_for

pytestmark = pytest.mark.integration


def _engine(order: list[tuple[str, int]], reached: asyncio.Event | None = None) -> Engine:
    engine = Engine("prio")

    @engine.task(priority=Priority.LOW)
    async def job(label: str, n: int, pause: float = 0.0) -> None:
        order.append((label, n))
        if reached is not None and len(order) >= 20:
            reached.set()
        if pause:
            await asyncio.sleep(pause)  # the task's own work, not a test wait

    return engine


async def test_critical_overtakes_10k_low_backlog(client: Client) -> None:
    order: list[tuple[str, int]] = []
    reached = asyncio.Event()
    engine = _engine(order, reached)
    job = engine.tasks["job"]
    client.bind(engine)
    for start in range(0, 10_000, 1000):
        await client.send_many(job, [(("low", n, 0.001), {}) for n in range(start, start + 1000)])
    config = WorkerConfig(concurrency=10, grace=5)
    async with running_worker(engine, client, config):
        await asyncio.wait_for(reached.wait(), 20)
        await job.send_with(priority=Priority.CRITICAL)("critical", 0)
        await wait_for(lambda: ("critical", 0) in order)
    low_before = order.index(("critical", 0))
    assert low_before <= 100, f"{low_before} LOW tasks started before the CRITICAL one"


def intrusions(tiers: list[int], window: int = 0) -> int:
    """Starts of a lower tier while a higher-tier message was still waiting: one that
    starts more than ``window`` places later. A worker of capacity C starts up to C
    messages at once, so their start order is a shuffle within about C places; a
    ``window`` of C leaves out that shuffle, and counts what was read out of tier order."""
    count = 0
    best_after = [99] * (len(tiers) + 1)
    for i in range(len(tiers) - 1, -1, -1):
        best_after[i] = min(tiers[i], best_after[i + 1])
    for i, tier in enumerate(tiers):
        later = i + 1 + window
        if later < len(tiers) and tier > best_after[later]:
            count += 1
    return count


PER_TIER = 500
CONFIGS = {
    "concurrency-1-prefetch-1": {"concurrency": 1, "prefetch": 1},
    "concurrency-10-default-prefetch": {"concurrency": 10},
    "defaults": {},
}


def share_bounds(share: float, per_tier: int) -> tuple[float, float]:
    """The intrusions the documented share allows (docs/protocol.md, "Anti-starvation
    share"): each priority read adds ``room * share`` to a credit per tier below
    critical, whose whole part is read from that tier first while it has a backlog.

    At least: ``high`` and ``normal`` are read only by priority reads (the extra room of a
    full worker reads ``critical`` only), so while their ``2 * per_tier`` messages are
    read, ``low`` (backlogged all along) earns ``share`` of them, and while ``high``'s are
    read, ``normal`` earns ``share`` of those: ``3 * share * per_tier``, less a fraction
    per tier, less the last share read of each tier if its higher tiers ran out meanwhile
    (with a room too small for every tier's part, the tiers take turns, and the total
    still reaches this). At most: each tier earns ``share``
    of every message read while a higher tier still waits (``high`` during critical's,
    ``normal`` during both, ``low`` during all three: ``6 * share * per_tier``), plus what
    the share reads themselves add, and a fraction."""
    return 3 * share * per_tier - 3, 6 * share * per_tier * 1.1 + 4


def test_share_bounds_would_catch_a_share_ten_times_off() -> None:
    low, high = share_bounds(0.01, PER_TIER)
    assert (low, high) == (12, 37)
    assert share_bounds(0.001, PER_TIER)[1] < low and high < share_bounds(0.1, PER_TIER)[0]


@pytest.mark.parametrize("share", [0.0, 0.01])
@pytest.mark.parametrize("settings", list(CONFIGS.values()), ids=list(CONFIGS))
async def test_mixed_tiers_drain_in_order_but_for_the_share(
    client: Client, share: float, settings: dict[str, int]
) -> None:
    order: list[tuple[str, int]] = []
    engine = _engine(order)
    job = engine.tasks["job"]
    client.bind(engine)
    for tier in reversed(Priority):  # lowest first, so stream order alone would be wrong
        sender = job.send_with(priority=tier)
        for n in range(PER_TIER):
            await sender(tier.label, n)
    config = WorkerConfig(**settings, low_share=share, grace=5)
    async with running_worker(engine, client, config):
        await wait_for(lambda: len(order) == 4 * PER_TIER, 60)
    tiers = [Priority[label.upper()].value for label, _ in order]
    found = intrusions(tiers, window=0 if config.concurrency == 1 else config.capacity)
    low, high = share_bounds(share, PER_TIER)
    if share == 0.0:
        assert found == 0
    else:
        assert low <= found <= high, (found, low, high)
    # and within each tier, messages start in the order they were sent (read in stream
    # order; with one handler, started in it too)
    if config.concurrency == 1:
        for tier in Priority:
            ns = [n for label, n in order if label == tier.label]
            assert ns == sorted(ns)


@pytest.mark.parametrize(
    "settings",
    [
        pytest.param(
            {"concurrency": 1, "prefetch": 1},
            id="concurrency-1-prefetch-1",
        ),
        pytest.param({"concurrency": 10}, id="concurrency-10-default-prefetch"),
    ],
)
async def test_a_critical_flood_leaves_each_lower_tier_its_share(
    client: Client, settings: dict[str, int]
) -> None:
    """docs/protocol.md: "so that a flood of critical messages cannot starve the lower
    tiers, each read reserves, for each of high, normal and low, low_share of the room".
    While 500 critical messages are read, each lower tier is owed 1% of them: 5, of which
    at least 4 start before the last critical one (a fraction may still be carried)."""
    order: list[tuple[str, int]] = []
    engine = _engine(order)
    job = engine.tasks["job"]
    client.bind(engine)
    for tier in reversed(Priority):
        sender = job.send_with(priority=tier)
        for n in range(PER_TIER):
            await sender(tier.label, n)
    config = WorkerConfig(**settings, low_share=0.01, grace=5)
    async with running_worker(engine, client, config):
        await wait_for(lambda: len(order) == 4 * PER_TIER, 60)
    last = max(i for i, (label, _) in enumerate(order) if label == "critical")
    during = {t.label: sum(label == t.label for label, _ in order[:last]) for t in Priority}
    owed = 0.01 * PER_TIER
    assert all(during[t] >= owed - 1 for t in ("high", "normal", "low")), during


def test_intrusions_counts_out_of_order_starts() -> None:
    assert intrusions([0, 0, 1, 2, 3]) == 0
    assert intrusions([0, 3, 0, 1]) == 1
    assert intrusions([3, 2, 1, 0]) == 3
    assert intrusions([1, 0, 0, 0, 0], window=2) == 1  # 0s start more than 2 places later
    assert intrusions([0, 1, 0, 0], window=2) == 0  # within the shuffle of 2


def _held_engine(order: list[tuple[str, int]], go: asyncio.Event) -> Engine:
    """LOW jobs that, once started, hold their place until ``go`` is set; CRITICAL
    ``urgent`` ones that do not wait."""
    engine = Engine("prio")

    @engine.task(priority=Priority.LOW)
    async def job(label: str, n: int) -> None:
        order.append((label, n))
        if label == "low":
            await go.wait()

    @engine.task(priority=Priority.CRITICAL)
    async def urgent(n: int) -> None:
        order.append(("critical", n))

    return engine


async def test_critical_is_taken_in_while_every_place_is_held(client: Client) -> None:
    """A LOW backlog fills every place (2 running, 2 prefetched, all held by slow
    handlers): a CRITICAL message sent then is read at once into the room kept beyond the
    capacity, and starts on the first place to free up, before the prefetched LOW ones.
    Without that room it waits until a LOW one is acked and starts after the prefetched."""
    order: list[tuple[str, int]] = []
    go = asyncio.Event()
    engine = _held_engine(order, go)
    job = engine.tasks["job"]
    client.bind(engine)
    await client.send_many(job, [(("low", n), {}) for n in range(50)])
    config = WorkerConfig(concurrency=2, prefetch=2, low_share=0, grace=5)
    assert config.critical_room == 1
    async with running_worker(engine, client, config) as worker:
        await wait_for(lambda: len(order) == 2 and worker.fetcher.held == config.capacity)
        await engine.tasks["urgent"].send(0)
        await wait_for(lambda: worker.fetcher.held == config.capacity + 1)
        assert len(order) == 2  # nothing else started meanwhile: every place is still held
        go.set()
        await wait_for(lambda: len(order) == 51)
    assert order.index(("critical", 0)) == 2, order[:6]


async def test_critical_burst_on_a_full_worker_starts_in_order(client: Client) -> None:
    """More CRITICAL messages than the extra room arrive at once while every place is
    held: the blocking read takes what fits, the priority read the rest, and they start
    in the order sent, before any LOW message not already held when they came."""
    order: list[tuple[str, int]] = []
    go = asyncio.Event()
    engine = _held_engine(order, go)
    job = engine.tasks["job"]
    client.bind(engine)
    await client.send_many(job, [(("low", n), {}) for n in range(40)])
    config = WorkerConfig(concurrency=1, prefetch=1, low_share=0, grace=5)
    async with running_worker(engine, client, config) as worker:
        await wait_for(lambda: len(order) == 1 and worker.fetcher.held == config.capacity)
        await client.send_many(engine.tasks["urgent"], [((n,), {}) for n in range(30)])
        await wait_for(lambda: worker.fetcher.held == config.capacity + 1)
        go.set()
        await wait_for(lambda: len(order) == 70)
    ns = [n for label, n in order if label == "critical"]
    assert ns == list(range(30))
    last = max(i for i, (label, _) in enumerate(order) if label == "critical")
    assert {n for label, n in order[:last] if label == "low"} <= {0, 1}, order[: last + 1]


async def test_lower_tiers_wait_while_critical_entries_are_undelivered(client: Client) -> None:
    """The read that leaves the critical stream to its own blocking reader reads nothing
    while critical entries wait undelivered, and reads the lower tiers otherwise."""
    order: list[tuple[str, int]] = []
    engine = _engine(order)
    job = engine.tasks["job"]
    client.bind(engine)
    broker = client.broker
    await broker.ensure_groups("prio", "c1")
    await job.send("low", 0)
    await job.send_with(priority=Priority.CRITICAL)("critical", 0)
    assert await broker.read_below_critical("prio", "c1", 10, (0, 0, 0), 0) is None
    [first] = await broker.read_critical("prio", "c1", 10, 0)
    assert first.tier is Priority.CRITICAL
    [low] = await broker.read_below_critical("prio", "c1", 10, (0, 0, 0), 0) or []
    assert low.tier is Priority.LOW
