"""A scheduler test app: ``tick`` every second, never run by a worker in the tests (the
tests read the enqueued envelopes straight from the inbox stream). ``misfire="all"``: a
scheduler that wakes up late still enqueues every tick, so the count is exact under load."""

from __future__ import annotations

from datetime import timedelta

from nautilus_tasks import Engine

ticker = Engine("ticker")


@ticker.periodic(every=timedelta(seconds=1), kwargs={"label": "every second"}, misfire="all")
@ticker.task
async def tick(label: str) -> str:
    return label
