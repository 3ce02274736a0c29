"""``nautilus-tasks bench`` at tiny sizes against the test server: the JSON it prints
has every scenario with plausible counts. No timing is asserted."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from nautilus_tasks.bench.measure import percentiles
from nautilus_tasks.bench.report import rows
from tests.procs import ROOT

pytestmark = pytest.mark.integration


async def bench(redis_url: str, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "nautilus_tasks", "--log-level", "WARNING", "bench",
        "--url", redis_url, "--json", *args,
        cwd=ROOT, env=dict(os.environ), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 300)
    return proc.returncode or 0, out.decode(), err.decode()


def _latency_ok(p: dict[str, Any], n: int) -> None:
    assert p["n"] == n
    assert 0 <= p["p50_ms"] <= p["p90_ms"] <= p["p99_ms"] <= p["max_ms"]


@pytest.mark.long
@pytest.mark.timeout(300)
async def test_every_scenario_reports_plausible_counts(redis_url: str) -> None:
    code, out, err = await bench(
        redis_url, "-s", "all", "-n", "300", "--latency-n", "40", "--rate", "400",
        "--rpc-n", "30", "--backlog", "500", "--fanout-n", "60", "--soak-n", "1000",
        "-c", "20", "--env", "NT_BENCH_PROBE=1",
    )  # fmt: skip
    assert code == 0, err
    data = orjson.loads(out)
    meta, results = data["meta"], data["results"]
    assert meta["options"]["n"] == 300 and meta["options"]["env"] == ["NT_BENCH_PROBE"]
    if "NT_POSTGRES_DSN" not in os.environ:  # no audit in this run's workers, and it says so
        assert meta["audit"] == {
            "on": False, "schema": None,
            "audit_written": 0, "audit_dropped": 0, "audit_write_errors": 0,
        }  # fmt: skip
    assert set(results) == {
        "enqueue", "throughput_1", "throughput_2", "latency", "rpc", "critical", "fanout", "soak",
    }  # fmt: skip
    for mode in ("buffered", "buffered_await", "unbuffered", "bulk"):
        assert results["enqueue"][mode]["n"] == 300
        assert results["enqueue"][mode]["per_second"] > 0
    for name, processes in (("throughput_1", 1), ("throughput_2", 2)):
        r = results[name]
        assert r["n"] == 300 and r["processes"] == processes and r["per_second"] > 0
        assert len(r["worker_rss_mb"]) == processes and all(m > 0 for m in r["worker_rss_mb"])
        assert r["worker_cpu_us_per_task"] >= 0
    _latency_ok(results["latency"], 40)
    _latency_ok(results["rpc"], 30)
    critical = results["critical"]
    _latency_ok(critical["idle"], 40)
    busy = critical["with_backlog"]  # sent only while a tenth of the backlog still waits
    if busy["n"]:
        _latency_ok(busy, busy["n"])
    assert busy["n"] <= 40
    assert 0 < critical["queued_at_start"] <= 500 + 40
    fanout = results["fanout"]
    assert fanout["deliveries"] == 3 * 60 and fanout["engines"] == 3
    _latency_ok(fanout["latency"], 180)
    soak = results["soak"]
    assert soak["n"] == 1000 and soak["xlen_after"] == 0 and soak["pending_after"] == 0
    assert soak["dead_letters"] == 0 and soak["rss_mb_after_1000"] > 0
    assert len(rows(results)) > 20


async def test_the_bench_leaves_no_keys_behind(redis_url: str) -> None:
    code, out, err = await bench(redis_url, "-s", "throughput", "-n", "50", "-p", "1")
    assert code == 0, err
    data = orjson.loads(out)
    assert set(data["results"]) == {"throughput_1"}
    conn = aioredis.Redis.from_url(redis_url)
    try:
        left = [k async for k in conn.scan_iter(match=f"{data['meta']['prefix']}:*")]
    finally:
        await conn.aclose()
    assert left == []


def test_percentiles_use_the_nearest_rank() -> None:
    p = percentiles([float(v) for v in range(1, 101)])
    assert (p["n"], p["p50_ms"], p["p90_ms"], p["p99_ms"], p["max_ms"]) == (100, 50, 90, 99, 100)
    assert percentiles([]) == {"n": 0}
