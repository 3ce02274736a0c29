"""AckBatcher: a batch goes out once ``early`` entries are collected, without waiting out
the interval, and entries collected after a batch left wait for the interval again."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from nautilus_tasks.metrics import WorkerStats
from nautilus_tasks.priority import Priority
from nautilus_tasks.worker.acks import AckBatcher


class _Broker:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.called = asyncio.Event()

    async def ack(
        self, engine: str, consumer: str, ids: Mapping[Priority, Sequence[str]]
    ) -> tuple[list[str], list[str]]:
        self.calls.append([i for v in ids.values() for i in v])
        self.called.set()
        return [], []


async def test_a_batch_leaves_once_early_entries_are_collected() -> None:
    broker = _Broker()
    done: list[list[str]] = []
    # an interval no test waits out: only `early` can send these
    acks = AckBatcher(broker, "e", "c", WorkerStats(), interval=600.0, early=3)  # type: ignore[arg-type]
    acks.on_done = done.append
    runner = asyncio.create_task(acks.run())
    try:
        acks.add(Priority.NORMAL, "1-0")
        acks.add(Priority.HIGH, "2-0")
        for _ in range(5):  # turns of the loop: the batcher runs and must keep waiting
            await asyncio.sleep(0)
        assert broker.calls == []
        acks.add(Priority.NORMAL, "3-0")
        async with asyncio.timeout(10):
            await broker.called.wait()
        assert sorted(broker.calls[0]) == ["1-0", "2-0", "3-0"]
        # the next entry is alone: it waits for the interval (or two more), not sent at once
        broker.called.clear()
        acks.add(Priority.LOW, "4-0")
        for _ in range(5):
            await asyncio.sleep(0)
        assert len(broker.calls) == 1
        assert acks.settling("4-0") and not acks.settling("1-0")
        acks.add(Priority.LOW, "5-0")
        acks.add(Priority.LOW, "6-0")
        async with asyncio.timeout(10):
            await broker.called.wait()
        assert [sorted(c) for c in broker.calls[1:]] == [["4-0", "5-0", "6-0"]]
        assert [sorted(d) for d in done] == [["1-0", "2-0", "3-0"], ["4-0", "5-0", "6-0"]]
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)


async def test_without_early_the_interval_still_sends(monkeypatch: Any) -> None:
    broker = _Broker()
    acks = AckBatcher(broker, "e", "c", WorkerStats(), interval=0.001)  # type: ignore[arg-type]
    runner = asyncio.create_task(acks.run())
    try:
        acks.add(Priority.NORMAL, "1-0")
        async with asyncio.timeout(10):
            await broker.called.wait()
        assert broker.calls == [["1-0"]]
        assert await acks.flush(5.0)
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
