"""The bench says whether its workers audited to PostgreSQL (``meta.audit``) and what the
audit wrote, from the stats the workers leave on the bus (no benchmark is run here)."""

from __future__ import annotations

import orjson
import pytest

from nautilus_tasks import Client
from nautilus_tasks.bench.audit import audit_meta, audit_schema
from nautilus_tasks.bench.report import table
from nautilus_tasks.errors import ConfigurationError

DSN = "postgresql://bench@127.0.0.1:5432/test"


def test_the_audit_is_on_where_the_workers_get_a_dsn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NT_POSTGRES_DSN", raising=False)
    monkeypatch.delenv("NT_POSTGRES_SCHEMA", raising=False)
    assert audit_schema({}) is None
    assert audit_schema({"NT_POSTGRES_DSN": DSN}) == "nautilus_tasks"
    assert audit_schema({"NT_POSTGRES_DSN": DSN, "NT_POSTGRES_SCHEMA": "bench_1"}) == "bench_1"
    monkeypatch.setenv("NT_POSTGRES_DSN", DSN)  # inherited by the workers
    assert audit_schema({}) == "nautilus_tasks"
    assert audit_schema({"NT_POSTGRES_DSN": ""}) is None  # --env NT_POSTGRES_DSN= turns it off
    with pytest.raises(ConfigurationError):
        audit_schema({"NT_POSTGRES_SCHEMA": "Bad-Name"})


async def test_meta_audit_sums_every_worker_of_the_run(client: Client) -> None:
    broker = client.broker
    left = {
        ("ntbench", "w1"): {"succeeded": 10, "audit_written": 30, "audit_dropped": 2},
        ("ntbench", "w2"): {"succeeded": 5, "audit_written": 15, "audit_write_errors": 1},
        ("ntbench_fan_b", "w3"): {"audit_written": 7},
        ("other", "w4"): {"audit_written": 1000},  # not an engine of the bench
    }
    for (engine, consumer), counts in left.items():
        await broker.write_stats(engine, consumer, orjson.dumps({"counts": counts}))
    audit = await audit_meta(client, "bench_1")
    assert audit == {
        "on": True, "schema": "bench_1",
        "audit_written": 52, "audit_dropped": 2, "audit_write_errors": 1,
    }  # fmt: skip
    assert await audit_meta(client, None) == {**audit, "on": False, "schema": None}
    meta = {"nautilus_tasks": "x", "server": "valkey", "python": "3", "cpus": 2, "audit": audit}
    shown = table({"meta": meta, "results": {}}).columns
    assert list(shown[1].cells) == ["on, schema bench_1"]
    assert list(shown[2].cells) == ["52 rows written, 2 dropped, 1 write errors"]
    off = {**meta, "audit": {**audit, "on": False, "schema": None}}
    assert list(table({"meta": off, "results": {}}).columns[1].cells) == ["off"]
