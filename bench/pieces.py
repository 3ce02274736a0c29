"""One piece of the worker's per-message path, run N times, for instruction counts.

This VM's speed swings by up to half between runs seconds apart, so A/B figures of a few
microseconds come from callgrind, which counts instructions, not seconds: run a piece at two
sizes and divide the difference::

    for n in 1000 11000; do
        valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$n \\
            .venv/bin/python -m bench.pieces decode $n
    done   # (Collected at 11000 - Collected at 1000) / 10000 = instructions per decode

Pieces: ``loads`` (orjson of one bench task entry), ``model`` (``Envelope.model_validate``),
``model_json`` (``Envelope.model_validate_json`` of the raw bytes: pydantic's own parser),
``decode`` (``message.decode``: both and the checks), ``args`` (the task's argument
validation), ``process`` (``Executor.process`` of prebuilt deliveries: decode, validation,
the call of the bench's body-(b) handler, context, ack record, stats), ``empty`` (the loop).
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson

from nautilus_tasks.broker.base import Delivery
from nautilus_tasks.message import Envelope, decode, new_id, now_ms, task_payload
from nautilus_tasks.metrics import WorkerStats
from nautilus_tasks.priority import Priority
from nautilus_tasks.worker.acks import AckBatcher
from nautilus_tasks.worker.executor import Executor


def _entry() -> bytes:
    body = {"args": [0.0], "kwargs": {}}
    return task_payload(new_id(), "work", Priority.NORMAL, body, now_ms()) or b""


class _Counter:
    """Body b's in-process counter, without its flusher thread (nothing is sent)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0
        self._latencies: list[float] = []


async def _process(n: int) -> None:
    from bench.peers.apps import body, nt_bench

    body._Flusher.__init__ = _Counter.__init__  # type: ignore[method-assign]
    stats = WorkerStats()
    acks = AckBatcher(None, "bench", "c", stats, 0.001)  # type: ignore[arg-type]
    executor = Executor(
        nt_bench.engine, None, "c", acks, stats, ThreadPoolExecutor(1), lambda _: None,  # type: ignore[arg-type]
    )  # fmt: skip
    deliveries = [Delivery(Priority.NORMAL, f"{i}-0", {b"envelope": _entry()}) for i in range(n)]
    for delivery in deliveries:
        await executor.process(delivery)


def main(piece: str, n: int) -> None:
    os.environ.setdefault("BENCH_BODY", "b")
    raw = _entry()
    fields = {b"envelope": raw}
    data = orjson.loads(raw)
    if piece == "process":
        asyncio.run(_process(n))
        return
    from bench.peers.apps import nt_bench

    validator = nt_bench.engine.tasks["work"].validator
    calls: dict[str, Callable[[], Any]] = {
        "loads": lambda: orjson.loads(raw),
        "model": lambda: Envelope.model_validate(data),
        "model_json": lambda: Envelope.model_validate_json(raw),
        "decode": lambda: decode(fields),
        "args": lambda: validator.validate([0.0], {}),
        "empty": lambda: None,
    }
    call = calls[piece]
    for _ in range(n):
        call()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
