"""``history`` and ``stats`` print the right figures for a data set inserted here
(acceptance 5); the expected percentiles are computed independently, in Python."""

from __future__ import annotations

import asyncio
import random
import statistics
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from nautilus_tasks.cli import cli
from nautilus_tasks.store.queries import insert_events


def _row(event: str, mid: str, engine: str, task: str, at: datetime, **extra: Any) -> tuple:
    return (
        event, mid, engine, task, extra.get("priority", "normal"), extra.get("attempt", 0),
        "host-1-abc", at - timedelta(seconds=1), at, extra.get("ms"),
        extra.get("error_type"), extra.get("error"), extra.get("reason"),
    )  # fmt: skip


@pytest.fixture
async def dataset(pg: Any, pg_schema: str) -> dict[str, Any]:
    """risk.check: 40 successes, 10 failures (4 of which dead-lettered) in the last hour and
    runs 3 h ago (outside ``--since 1h``); factors.refresh: 7 successes."""
    rng = random.Random(9)
    now = datetime.now(UTC)
    rows, durations, failed_ids = [], {"check": [], "refresh": []}, []
    for i in range(50):
        at = now - timedelta(minutes=50) + timedelta(seconds=30 * i)
        ms = round(rng.uniform(1, 500), 3)
        durations["check"].append(ms)
        mid = f"check-{i:02d}"
        rows.append(_row("received", mid, "risk", "check", at))
        if i % 5 == 0:
            rows.append(_row("failed", mid, "risk", "check", at, ms=ms, error_type="Boom",
                             error=f"boom {i}"))  # fmt: skip
            failed_ids.append(mid)
            if i % 10 == 0:
                rows.append(_row("dead_lettered", mid, "risk", "check", at, reason="failed",
                                 error_type="Boom", error=f"boom {i}"))  # fmt: skip
        else:
            rows.append(_row("succeeded", mid, "risk", "check", at, ms=ms))
    for i in range(7):
        ms = float(10 * (i + 1))
        durations["refresh"].append(ms)
        rows.append(_row("succeeded", f"refresh-{i}", "factors", "refresh",
                         now - timedelta(minutes=i), ms=ms, priority="high"))  # fmt: skip
    for i in range(5):  # outside the window
        old = now - timedelta(hours=3, minutes=i)
        rows.append(_row("failed", f"old-{i}", "risk", "check", old, ms=9999.0,
                         error_type="Old", error="old"))  # fmt: skip
    await insert_events(pg, pg_schema, rows)
    return {"durations": durations, "failed": failed_ids}


async def _invoke(schema: str, dsn: str, *args: str) -> str:
    """The command's output (run in a thread: it has its own event loop)."""
    env = {"NT_POSTGRES_DSN": dsn, "NT_POSTGRES_SCHEMA": schema}
    result = await asyncio.to_thread(CliRunner().invoke, cli, [*args], env=env)
    assert result.exit_code == 0, result.output
    return result.output


def _pct(values: list[float]) -> tuple[float, float, float]:
    cuts = statistics.quantiles(values, n=100, method="inclusive")  # linear interpolation
    return cuts[49], cuts[94], cuts[98]


async def test_stats_figures(dataset: dict[str, Any], pg_dsn: str, pg_schema: str) -> None:
    out = await _invoke(pg_schema, pg_dsn, "stats", "--since", "1h", "--json")
    got = {(s["engine"], s["task"]): s for s in map(orjson.loads, out.splitlines())}
    assert set(got) == {("risk", "check"), ("factors", "refresh")}
    check, refresh = got["risk", "check"], got["factors", "refresh"]
    assert (check["runs"], check["failed"], check["dead_lettered"]) == (50, 10, 5)
    assert check["failure_rate"] == pytest.approx(0.2)
    for name, stat in (("check", check), ("refresh", refresh)):
        p50, p95, p99 = _pct(dataset["durations"][name])
        assert (stat["p50"], stat["p95"], stat["p99"]) == (
            pytest.approx(p50),
            pytest.approx(p95),
            pytest.approx(p99),
        )
    assert (refresh["runs"], refresh["failed"], refresh["failure_rate"]) == (7, 0, 0.0)

    table = await _invoke(pg_schema, pg_dsn, "stats", "--since", "1h")
    line = next(x for x in table.splitlines() if "risk.check" in x).split()
    p50, p95, p99 = _pct(dataset["durations"]["check"])
    assert line == [
        "risk.check",
        "50",
        "10",
        "20.00",
        "5",
        f"{p50:.2f}",
        f"{p95:.2f}",
        f"{p99:.2f}",
    ]

    wide = await _invoke(pg_schema, pg_dsn, "stats", "--since", "4h", "--json")
    check4 = next(s for s in map(orjson.loads, wide.splitlines()) if s["task"] == "check")
    assert (check4["runs"], check4["failed"]) == (55, 15)


async def test_history_filters(dataset: dict[str, Any], pg_dsn: str, pg_schema: str) -> None:
    out = await _invoke(
        pg_schema, pg_dsn, "history", "--task", "risk.check", "--status", "failed",
        "--since", "1h", "--json",
    )  # fmt: skip
    rows = [orjson.loads(x) for x in out.splitlines()]
    assert [r["message_id"] for r in rows] == dataset["failed"][::-1]  # newest first
    assert {(r["event"], r["error_type"]) for r in rows} == {("failed", "Boom")}
    assert rows[0]["error"] == "boom 45" and rows[0]["worker"] == "host-1-abc"

    text = await _invoke(
        pg_schema, pg_dsn, "history", "--task", "check", "--status", "dead_lettered"
    )
    assert text.rstrip().endswith("5 events")
    for mid in ("check-00", "check-10", "check-20", "check-30", "check-40"):
        assert mid in text
    assert "Boom: boom 40" in text

    limited = await _invoke(pg_schema, pg_dsn, "history", "--since", "1h", "--limit", "3", "--json")
    newest = [orjson.loads(x)["message_id"] for x in limited.splitlines()]
    assert newest == ["refresh-0", "refresh-1", "refresh-2"]


async def test_history_of_one_message(
    dataset: dict[str, Any], pg: Any, pg_dsn: str, pg_schema: str
) -> None:
    out = await _invoke(pg_schema, pg_dsn, "history", "--message", "check-10", "--json")
    rows = [orjson.loads(x) for x in out.splitlines()]
    assert sorted(r["event"] for r in rows) == ["dead_lettered", "failed", "received"]
    assert {r["message_id"] for r in rows} == {"check-10"}
    await pg.execute("SET enable_seqscan = off")  # the tables here are tiny
    plan = await pg.fetch(
        f'EXPLAIN SELECT min(event_at) FROM "{pg_schema}".audit'
        " WHERE message_id = 'check-10' AND event = 'received'"
    )
    assert "audit_message" in "\n".join(r[0] for r in plan)  # the lookup is indexed


async def test_history_window_and_old_messages(pg: Any, pg_dsn: str, pg_schema: str) -> None:
    old = datetime.now(UTC) - timedelta(days=3)
    await insert_events(
        pg,
        pg_schema,
        [_row("received", "ancient", "risk", "check", old),
         _row("succeeded", "ancient", "risk", "check", old + timedelta(seconds=1), ms=5.0),
         _row("received", "recent", "risk", "check", datetime.now(UTC))],
    )  # fmt: skip
    default = await _invoke(pg_schema, pg_dsn, "history", "--json")
    assert [orjson.loads(x)["message_id"] for x in default.splitlines()] == ["recent"]
    one = await _invoke(pg_schema, pg_dsn, "history", "--message", "ancient", "--json")
    assert [orjson.loads(x)["event"] for x in one.splitlines()] == ["succeeded", "received"]
    windowed = await _invoke(
        pg_schema, pg_dsn, "history", "--message", "ancient", "--since", "1d", "--json"
    )
    assert windowed == ""
