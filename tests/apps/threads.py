"""A test engine of blocking sync handlers, run by real worker processes (``--threads``).

Keys (under the run's NT_PREFIX): ``P:test:entries`` list of ``n:threads`` per start of
``block``, where threads is how many threads of the worker's sync pool (named ``nt-sync``)
existed then; ``P:test:gate`` list the test pushes one token to per handler it lets go;
``P:test:runs`` hash n -> executions. The connection is opened on first use, per process.
"""

from __future__ import annotations

import os
import threading

import redis

from nautilus_tasks import Engine
from tests.apps.common import key

threads = Engine("threads")

GATE_TIMEOUT = 60
"""Seconds a handler waits for its token at most (the test pushes them much sooner)."""

_lock = threading.Lock()
_conn: list[redis.Redis] = []


def _connection() -> redis.Redis:
    with _lock:
        if not _conn:
            _conn.append(redis.Redis.from_url(os.environ["NT_REDIS_URL"]))
        return _conn[0]


def pool_threads() -> int:
    """Threads of the worker's sync handler pool alive now."""
    return sum(t.name.startswith("nt-sync") for t in threading.enumerate())


@threads.task
def block(n: int) -> int:
    """Record the start and the pool's size, hold a thread until the test's token, count."""
    conn = _connection()
    conn.rpush(key("entries"), f"{n}:{pool_threads()}")
    if conn.blpop([key("gate")], timeout=GATE_TIMEOUT) is None:
        raise TimeoutError(f"no token for message {n} within {GATE_TIMEOUT}s")
    conn.hincrby(key("runs"), str(n), 1)
    return n
