"""Mapping of redis-py errors onto the framework's errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis import exceptions as rexc

from ...errors import BusError, BusFull, BusUnavailable


@asynccontextmanager
async def mapped_errors(what: str) -> AsyncIterator[None]:
    """Map redis-py errors onto the framework's BusUnavailable / BusError."""
    try:
        yield
    except (rexc.ConnectionError, rexc.TimeoutError, OSError) as exc:
        raise BusUnavailable(f"{what}: bus unreachable: {exc}") from exc
    except rexc.RedisError as exc:
        if isinstance(exc, rexc.OutOfMemoryError) or "OOM" in str(exc):
            raise BusFull(f"{what}: the server is out of memory: {exc}") from exc
        raise BusError(f"{what}: {exc}") from exc
