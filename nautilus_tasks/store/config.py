"""Settings of the PostgreSQL store, from code or from the environment."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from pydantic import Field, field_validator

from ..config import _Frozen
from ..errors import ConfigurationError

DEFAULT_SCHEMA = "nautilus_tasks"
_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

ENV_DSN = "NT_POSTGRES_DSN"
ENV_SCHEMA = "NT_POSTGRES_SCHEMA"
ENV_BUFFER = "NT_AUDIT_BUFFER"
ENV_BATCH = "NT_AUDIT_BATCH"
ENV_FLUSH = "NT_AUDIT_FLUSH_INTERVAL"


def check_schema(name: str) -> str:
    """A schema name made of lower-case letters, digits and ``_`` (it is put into SQL)."""
    if not _SCHEMA.match(name):
        raise ConfigurationError(
            f"schema name {name!r} must be lower-case letters, digits or '_' (at most 63),"
            " not starting with a digit"
        )
    return name


class StoreConfig(_Frozen):
    """Where the audit and durable results live, and how the worker buffers them."""

    dsn: str = Field(min_length=1)
    schema_name: str = DEFAULT_SCHEMA
    buffer_size: int = Field(default=100_000, ge=1)
    """Events a worker holds in memory at most (and as many durable results); more are
    dropped and counted."""
    batch_size: int = Field(default=5000, ge=1)
    """Rows per write (one COPY)."""
    flush_interval: float = Field(default=0.2, gt=0)
    """Seconds between two writes while the buffer holds less than a batch."""
    write_timeout: float = Field(default=10.0, gt=0)
    """A write (or a connect) that takes longer is abandoned and its connection closed."""
    backoff_max: float = Field(default=30.0, gt=0)
    """Longest pause between two reconnection attempts."""
    synchronous_commit: bool = False
    """False (the default): the writer's session runs with ``synchronous_commit = off``,
    so a batch's commit does not wait for its WAL flush. A PostgreSQL crash may then lose
    the last few hundred milliseconds of committed audit rows (never corrupt them); True
    keeps the server's setting."""

    @field_validator("schema_name")
    @classmethod
    def _schema(cls, value: str) -> str:
        try:
            return check_schema(value)
        except ConfigurationError as exc:
            raise ValueError(str(exc)) from None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StoreConfig | None:
        """From ``NT_POSTGRES_DSN`` (None when unset or empty: the store is off),
        ``NT_POSTGRES_SCHEMA``, ``NT_AUDIT_BUFFER``, ``NT_AUDIT_BATCH`` and
        ``NT_AUDIT_FLUSH_INTERVAL``."""
        env = os.environ if env is None else env
        dsn = env.get(ENV_DSN, "")
        if not dsn:
            return None
        values: dict[str, object] = {"dsn": dsn}
        for var, field in (
            (ENV_SCHEMA, "schema_name"),
            (ENV_BUFFER, "buffer_size"),
            (ENV_BATCH, "batch_size"),
            (ENV_FLUSH, "flush_interval"),
        ):
            if env.get(var):
                values[field] = env[var]
        result: StoreConfig = cls.from_mapping(values)
        return result
