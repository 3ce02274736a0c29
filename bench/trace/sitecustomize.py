"""Where a critical message's one-way latency accrues: before or after the worker takes it in.

Loaded by every Python process started with this directory on ``PYTHONPATH`` and
``NT_TRACE_DIR`` set; only the bench's worker processes get both::

    .venv/bin/nautilus-tasks bench -s critical --json \\
        --env PYTHONPATH=bench/trace --env NT_TRACE_DIR=/tmp/nt-trace > critical.json
    .venv/bin/python -m bench.trace /tmp/nt-trace

It wraps ``Fetcher.accept`` (the worker queueing what a read returned) and records, for
each critical delivery carrying the bench's send stamp, the time from the producer's
``time.time_ns()`` to that moment; each worker writes its samples to
``NT_TRACE_DIR/accept.<pid>.txt`` (milliseconds, one per line) when it exits. The bench's
own figures are the time to the handler's first line, so the difference is the time the
delivery spent in the worker's local queue and consumer hand-off.
"""

from __future__ import annotations

import atexit
import os
import time
from pathlib import Path
from typing import Any


def _install(directory: Path) -> None:
    import orjson

    from nautilus_tasks.priority import Priority
    from nautilus_tasks.worker import consumer

    samples: list[float] = []
    accept = consumer.Fetcher.accept

    def traced(self: Any, deliveries: list[Any]) -> None:
        now = time.time_ns()
        for delivery in deliveries:
            if delivery.tier is Priority.CRITICAL:
                args = orjson.loads(delivery.fields[b"envelope"])["body"]["args"]
                if args and isinstance(args[0], int):
                    samples.append((now - args[0]) / 1e6)
        accept(self, deliveries)

    def dump() -> None:
        if samples:
            directory.mkdir(parents=True, exist_ok=True)
            text = "\n".join(f"{s:.3f}" for s in samples)
            (directory / f"accept.{os.getpid()}.txt").write_text(text + "\n")

    consumer.Fetcher.accept = traced  # type: ignore[method-assign]
    atexit.register(dump)


if os.environ.get("NT_TRACE_DIR"):
    _install(Path(os.environ["NT_TRACE_DIR"]))
