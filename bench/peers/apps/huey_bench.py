"""huey: ``huey_consumer bench.peers.apps.huey_bench.huey --workers 8 --worker-type thread``.

``RedisHuey`` without a result store. Producer: calling the task enqueues it (no bulk API).
"""

from __future__ import annotations

from typing import Any

from huey import RedisHuey

from .body import SyncBody, url

huey = RedisHuey("bench", url=url(), results=False)
_body = SyncBody()


@huey.task()
def work(ts: float = 0.0) -> None:
    _body(ts)


class Producer:
    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def enqueue(self, count: int) -> None:
        for _ in range(count):
            work(0.0)

    def send(self, ts: float) -> None:
        work(ts)

    def finish(self) -> None:
        return None
