"""The command line against a real server: send, inspect, worker."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import orjson
import pytest
import redis.asyncio as aioredis

from nautilus_tasks import Client, Engine, Priority
from nautilus_tasks.embedded import stop_daemon
from tests.procs import ROOT

pytestmark = pytest.mark.integration


async def cli(redis_url: str, prefix: str, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "NT_REDIS_URL": redis_url, "NT_PREFIX": prefix}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "nautilus_tasks", *args,
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_send_prints_the_id_of_a_stored_message(
    redis_url: str, prefix: str, raw: aioredis.Redis
) -> None:
    code, out, err = await cli(
        redis_url, prefix, "send", "risk.check", "--args", '["AAPL", 5]', "--priority", "critical"
    )
    assert code == 0, err
    [(_, fields)] = await raw.xrange(f"{prefix}:{{risk}}:q:critical")
    envelope = orjson.loads(fields[b"envelope"])
    assert envelope["id"] == out.strip()
    assert envelope["name"] == "check"
    assert envelope["body"] == {"args": ["AAPL", 5], "kwargs": {}}
    code, _, err = await cli(redis_url, prefix, "send", "nodot", "--args", "{}")
    assert code == 2 and "ENGINE.TASK" in err


async def test_send_with_kwargs_stores_them_in_the_body(
    redis_url: str, prefix: str, raw: aioredis.Redis
) -> None:
    code, out, err = await cli(
        redis_url, prefix, "send", "risk.check",
        "--args", '["AAPL"]', "--kwargs", '{"limit": 5, "desk": "fx"}', "--priority", "low",
    )  # fmt: skip
    assert code == 0, err
    [(_, fields)] = await raw.xrange(f"{prefix}:{{risk}}:q:low")
    envelope = orjson.loads(fields[b"envelope"])
    assert envelope["id"] == out.strip()
    assert envelope["body"] == {"args": ["AAPL"], "kwargs": {"limit": 5, "desk": "fx"}}
    code, _, err = await cli(redis_url, prefix, "send", "risk.check", "--kwargs", "[1]")
    assert code == 2 and "Invalid value for --kwargs: must be a JSON" in err
    assert await raw.xlen(f"{prefix}:{{risk}}:q:normal") == 0


async def test_send_without_a_url_starts_the_embedded_valkey_and_says_so_once(
    tmp_path: Path, prefix: str
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("NT_REDIS_URL", "XDG_RUNTIME_DIR")}
    env |= {"NT_RUNTIME_DIR": str(tmp_path), "NT_PREFIX": prefix}
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "nautilus_tasks", "send", "risk.check", "--args", "[1]",
            cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
        lines = [line for line in err.decode().splitlines() if "embedded Valkey at" in line]
        assert len(lines) == 1, err.decode()
        assert "(started, data in" in lines[0] and str(tmp_path) in lines[0], lines
        port = int((tmp_path / "valkey.port").read_text())
        assert f"redis://127.0.0.1:{port}" in lines[0]
        conn = aioredis.Redis(port=port)
        try:
            [(_, fields)] = await conn.xrange(f"{prefix}:{{risk}}:q:normal")
            assert orjson.loads(fields[b"envelope"])["id"] == out.decode().strip()
        finally:
            await conn.aclose()
    finally:
        assert stop_daemon(tmp_path)


async def test_inspect_shows_lengths_and_pending_of_a_backlog(
    client: Client, redis_url: str, prefix: str
) -> None:
    engine = Engine("analytics")

    @engine.task(priority=Priority.LOW)
    def record(n: int) -> None: ...

    client.bind(engine)
    await client.send_many(record, [((n,), {}) for n in range(50)])
    for n in range(5):
        await record.send_with(priority="critical")(n)
    await client.broker.ensure_groups("analytics", "probe")
    # a consumer takes 8 messages and holds them: they are pending, not acked
    got = await client.broker.read("analytics", "probe", 8, (0, 0, 0), block_ms=0)
    assert len(got) == 8
    code, out, err = await cli(redis_url, prefix, "inspect", "analytics", "--json")
    assert code == 0, err
    [row] = orjson.loads(out)
    tiers = {t["tier"]: t for t in row["tiers"]}
    assert (tiers["critical"]["length"], tiers["critical"]["pending"]) == (5, 5)
    assert (tiers["low"]["length"], tiers["low"]["pending"]) == (50, 3)
    assert tiers["low"]["consumers"] == 1
    assert tiers["low"]["oldest_pending_age_ms"] is not None
    assert tiers["high"]["length"] == 0 and tiers["high"]["pending"] == 0
    if tiers["low"]["lag"] is not None:  # Redis 7.0+ reports lag
        assert tiers["low"]["lag"] == 47
    code, out, err = await cli(redis_url, prefix, "inspect")  # every engine, as a table
    assert code == 0, err
    rows = table_rows(out, "analytics")
    lag = "-" if tiers["low"]["lag"] is None else "47"
    assert rows["critical"][:3] == ["5", "5", "1"], rows
    assert rows["low"][:3] == ["50", "3", "1"] and rows["low"][4] == lag, rows
    assert rows["high"][:4] == ["0", "0", "1", "-"] and rows["normal"][:4] == rows["high"][:4]
    for tier in ("critical", "low"):  # the oldest pending age, in seconds
        assert re.fullmatch(r"\d+\.\ds", rows[tier][3]), rows
    assert rows["delayed/dead"][:2] == ["0", "0"] and rows["counts"][0] == "none", rows


def table_rows(out: str, engine: str) -> dict[str, list[str]]:
    """The rows of ``engine`` in the inspect table, by tier: the cells after the tier."""
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃|]", line)][1:-1]
        if len(cells) > 2 and cells[0] == engine:
            rows[cells[1]] = cells[2:]
    return rows


async def test_server_command_runs_an_embedded_valkey_until_sigterm(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "nautilus_tasks", "server", "--dir", str(tmp_path),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        url = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().strip()
        assert url.startswith("redis://127.0.0.1:")
        conn = aioredis.Redis.from_url(url)
        assert await conn.ping()
        await conn.aclose()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_worker_refuses_consumer_with_processes(redis_url: str, prefix: str) -> None:
    code, _, err = await cli(
        redis_url, prefix, "worker", "tests.apps.recorder:recorder", "-p", "2", "--consumer", "x"
    )
    assert code == 2 and "--consumer" in err
