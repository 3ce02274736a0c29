"""How long the worker's event loop runs between two reads of its sockets, while it drains
a body-(b) backlog in-process (the set-up of ``bench/timeline.py``)::

    export BENCH_URL=redis://127.0.0.1:6411 BENCH_BODY=b     # a server that holds nothing else
    .venv/bin/python -m bench.peers.apps.producer nt_bench enqueue --n 100000 --cap 60 --chunk 1000
    .venv/bin/python -m bench.turns 100000

A turn is the time from the end of one ``select`` of the loop to the start of the next: the
callbacks it runs in between (handlers, reply parsing, acks). A critical message whose
reply arrives during a turn waits for its end; so does the ack timer.
"""

from __future__ import annotations

import asyncio
import selectors
import sys
import time
from typing import Any

from bench.timeline import _drain


def main(n: int) -> None:
    turns: list[float] = []
    ended: list[float] = []
    select = selectors.EpollSelector.select

    def timed(self: selectors.EpollSelector, timeout: float | None = None) -> Any:
        began = time.perf_counter()
        if ended:
            turns.append(began - ended[0])
        events = select(self, timeout)
        ended[:] = [time.perf_counter()]
        return events

    selectors.EpollSelector.select = timed  # type: ignore[method-assign]
    asyncio.run(_drain(n, None, []))
    turns.sort()
    busy = sum(turns)
    print(f"turns: {len(turns)}, {busy:.2f} s in all")
    for q in (0.5, 0.9, 0.99, 0.999):
        print(f"p{100 * q:g}: {1e3 * turns[int(len(turns) * q)]:.3f} ms")
    long = [t for t in turns if t > 0.0005]
    print(f"over 0.5 ms: {len(long)} turns, {sum(long) / busy:.0%} of the time in turns")


if __name__ == "__main__":
    main(int(sys.argv[1]))
