"""Dramatiq: ``dramatiq bench.peers.apps.dramatiq_bench --processes 1 --threads 8``.

RedisBroker, no retries. Producer: ``actor.send()`` (Dramatiq has no bulk enqueue API).
"""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from .body import SyncBody, url

broker = RedisBroker(url=url())
dramatiq.set_broker(broker)
_body = SyncBody()


@dramatiq.actor(queue_name="bench", max_retries=0)
def work(ts: float = 0.0) -> None:
    _body(ts)


class Producer:
    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc: Any) -> None:
        broker.close()

    def enqueue(self, count: int) -> None:
        for _ in range(count):
            work.send(0.0)

    def send(self, ts: float) -> None:
        work.send(ts)

    def finish(self) -> None:
        return None
