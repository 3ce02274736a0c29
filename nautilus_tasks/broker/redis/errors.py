"""Mapping of redis-py errors onto the framework's errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis import exceptions as rexc

from ...errors import BusError, BusFull, BusUnavailable


def bus_error(what: str, exc: BaseException) -> BusError:
    """The framework's error for a redis-py error (or OSError) raised while doing ``what``:
    BusUnavailable for connection errors and timeouts, BusFull for out of memory, else
    BusError. The caller chains it (``raise ... from exc``)."""
    if isinstance(exc, (rexc.ConnectionError, rexc.TimeoutError, OSError)):
        error: BusError = BusUnavailable(f"{what}: bus unreachable: {exc}")
    elif isinstance(exc, rexc.OutOfMemoryError) or "OOM" in str(exc):
        error = BusFull(f"{what}: the server is out of memory: {exc}")
    else:
        error = BusError(f"{what}: {exc}")
    error.__cause__ = exc
    return error


@asynccontextmanager
async def mapped_errors(what: str) -> AsyncIterator[None]:
    """Map redis-py errors onto the framework's BusUnavailable / BusError."""
    try:
        yield
    except (rexc.RedisError, OSError) as exc:
        raise bus_error(what, exc) from exc
