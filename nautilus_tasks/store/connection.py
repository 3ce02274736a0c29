"""asyncpg, imported on first use, and the one way this package opens a connection."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from ..errors import ConfigurationError

TRANSIENT_NAMES = (
    "InterfaceError",
    "PostgresConnectionError",
    "CannotConnectNowError",
    "TooManyConnectionsError",
    "AdminShutdownError",
    "CrashShutdownError",
    "InvalidCachedStatementError",  # the table changed under the writer's statement cache:
    # a new connection (a fresh cache) writes the batch
)


def asyncpg() -> ModuleType:
    """The asyncpg module, or ConfigurationError naming the extra to install."""
    try:
        return importlib.import_module("asyncpg")
    except ImportError:
        raise ConfigurationError(
            "the PostgreSQL store needs asyncpg: pip install 'nautilus-tasks[postgres]'"
        ) from None


async def connect(dsn: str, timeout: float = 10.0, statement_cache_size: int = 0) -> Any:
    """One asyncpg connection to ``dsn`` (by default no statement cache: schemas vary per
    call; the audit writer, bound to one schema, caches its COPY and upsert)."""
    return await asyncpg().connect(dsn, timeout=timeout, statement_cache_size=statement_cache_size)


def transient(exc: BaseException) -> bool:
    """Whether ``exc`` means the connection broke (retry later), not that the SQL failed."""
    if isinstance(exc, OSError | TimeoutError | ConnectionError):
        return True
    module = asyncpg()
    if isinstance(exc, module.DataError):  # a value the driver cannot encode: not the link
        return False
    return isinstance(exc, tuple(getattr(module, name) for name in TRANSIENT_NAMES))
