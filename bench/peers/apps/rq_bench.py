"""RQ: ``rq worker --url URL --worker-class rq.worker.SimpleWorker bench``.

``SimpleWorker`` runs jobs in the worker process (the default ``Worker`` forks a child per job,
in which body b's in-process counter could not live). Results are not kept (``result_ttl=0``).
Producer: ``Queue.enqueue_many()`` with ``Queue.prepare_data()`` (one pipeline per call).
"""

from __future__ import annotations

from typing import Any

from redis import Redis
from rq import Queue

from .body import SyncBody, url

_body = SyncBody()


def work(ts: float = 0.0) -> None:
    _body(ts)


class Producer:
    def __enter__(self) -> Producer:
        self.queue = Queue("bench", connection=Redis.from_url(url()))
        return self

    def __exit__(self, *exc: Any) -> None:
        self.queue.connection.close()

    def enqueue(self, count: int) -> None:
        jobs = [Queue.prepare_data(work, args=(0.0,), result_ttl=0) for _ in range(count)]
        self.queue.enqueue_many(jobs)

    def send(self, ts: float) -> None:
        self.queue.enqueue(work, ts, result_ttl=0)

    def finish(self) -> None:
        return None
