"""Reading durable results: what ``MessageHandle.result()`` polls for a durable send."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..errors import ConfigurationError, StoreError
from .config import StoreConfig
from .connection import asyncpg, transient
from .queries import fetch_result

log = logging.getLogger("nautilus_tasks.store")


class DurableResults:
    """A small connection pool, opened on first use, reading ``<schema>.results``."""

    def __init__(self, config: StoreConfig) -> None:
        self.config = config
        self._pool: Any = None
        self._lock = asyncio.Lock()

    @classmethod
    def from_env(cls) -> DurableResults:
        config = StoreConfig.from_env()
        if config is None:
            raise ConfigurationError(
                "a durable result is read from PostgreSQL: set NT_POSTGRES_DSN (and"
                " NT_POSTGRES_SCHEMA if the workers use another schema than the default)"
            )
        return cls(config)

    async def get(self, engine: str, message_id: str) -> Any | None:
        """The outcome body of ``message_id``, None while there is none; StoreError when
        PostgreSQL cannot be reached."""
        try:
            pool = await self._open()
            async with pool.acquire(timeout=self.config.write_timeout) as conn:
                return await fetch_result(conn, self.config.schema_name, engine, message_id)
        except Exception as exc:
            if transient(exc) or isinstance(exc, asyncpg().PostgresError):
                raise StoreError(f"cannot read the durable result of {message_id}: {exc}") from exc
            raise

    async def _open(self) -> Any:
        async with self._lock:
            if self._pool is None:
                self._pool = await asyncpg().create_pool(
                    self.config.dsn, min_size=0, max_size=4, statement_cache_size=0,
                    timeout=self.config.write_timeout,
                )  # fmt: skip
            return self._pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()
