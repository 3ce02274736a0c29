"""Celery: ``celery -A bench.peers.apps.celery_bench worker --pool threads --concurrency 8``.

No result backend (``ignore_result``). Producer: ``apply_async()`` on one producer taken with
``app.producer_or_acquire()`` (Celery has no bulk enqueue API).
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from .body import SyncBody, url

app = Celery("bench", broker=url())
app.conf.update(task_ignore_result=True, broker_connection_retry_on_startup=True)
_body = SyncBody()


@app.task(name="bench.work", ignore_result=True)
def work(ts: float = 0.0) -> None:
    _body(ts)


class Producer:
    def __enter__(self) -> Producer:
        self._context = app.producer_or_acquire()
        self.producer: Any = self._context.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._context.__exit__(*exc)

    def enqueue(self, count: int) -> None:
        for _ in range(count):
            work.apply_async((0.0,), producer=self.producer)

    def send(self, ts: float) -> None:
        work.apply_async((ts,), producer=self.producer)

    def finish(self) -> None:
        return None
