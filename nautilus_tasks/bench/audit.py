"""Whether the workers of a bench run had the PostgreSQL audit on, and what it wrote.

A worker audits when ``NT_POSTGRES_DSN`` is set in its environment (this process's, plus
``--env``); its counters (``audit_written``, ``audit_dropped``, ``audit_write_errors``)
reach the bus with its stats when it stops. ``meta.audit`` of the bench's JSON sums them
over every worker process of the run, so a figure quoted as "audit on" shows it was.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson

from ..store.config import StoreConfig
from . import app

if TYPE_CHECKING:
    from ..client import Client

COUNTS = ("audit_written", "audit_dropped", "audit_write_errors")
ENGINES = (app.bench, app.sink, app.fan_a, app.fan_b, app.fan_c)


def audit_schema(env: Mapping[str, str]) -> str | None:
    """The schema the bench's workers audit into, None when the audit is off for them."""
    config = StoreConfig.from_env({**os.environ, **env})
    return None if config is None else config.schema_name


async def audit_meta(client: Client, schema: str | None) -> dict[str, Any]:
    """``{"on", "schema", "audit_written", "audit_dropped", "audit_write_errors"}``: the
    audit counters summed over the stats every worker of the run left on the bus."""
    totals: Counter[str] = Counter()
    for engine in ENGINES:
        info = await client.broker.inspect(engine.name)
        for raw in info.stats.values():
            counts = orjson.loads(raw).get("counts", {})
            totals.update({name: int(counts.get(name, 0)) for name in COUNTS})
    return {"on": schema is not None, "schema": schema, **{name: totals[name] for name in COUNTS}}
