"""What the test apps share: their own connection, made lazily in the worker process, and
the key names of the test run (``P:test:<name>``, P from NT_PREFIX)."""

from __future__ import annotations

import os

import redis.asyncio as aioredis

_connections: dict[str, aioredis.Redis] = {}


def conn(url_env: str = "NT_REDIS_URL") -> aioredis.Redis:
    """This process's connection to the server named by the environment variable ``url_env``."""
    if url_env not in _connections:
        _connections[url_env] = aioredis.Redis.from_url(os.environ[url_env])
    return _connections[url_env]


def key(name: str) -> str:
    """A key of this test run: ``P:test:name``."""
    return f"{os.environ['NT_PREFIX']}:test:{name}"
