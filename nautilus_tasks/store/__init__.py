"""PostgreSQL persistence: the lifecycle audit of messages and durable results.

Off unless ``NT_POSTGRES_DSN`` is set (or a ``StoreConfig`` is given). Needs the
``postgres`` extra (asyncpg), imported only when a connection is made, so this package
imports without it. ``nautilus-tasks db migrate`` creates the versioned schema.
"""

from __future__ import annotations

from .config import DEFAULT_SCHEMA, StoreConfig
from .writer import AuditWriter

__all__ = ["DEFAULT_SCHEMA", "AuditWriter", "StoreConfig"]
