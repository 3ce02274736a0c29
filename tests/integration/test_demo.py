"""The demo end to end: honcho runs the Procfile's workers; trades and quotes go through
every engine, quotes as events, breach alerts to alerts, then VaR requests. Once against
the session's server (``--redis``), once as from a clean clone: no URL at all, so the demo
starts its own embedded Valkey in a fresh runtime directory and stops it at the end."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import redis

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TRADES, QUOTES, VAR_REQUESTS = 500, 250, 100
SEED = 37
"""A market whose 500 trades take TSLA over its limit in several episodes (6 when the trades
are checked in order; an unseeded market of 500 trades can raise none)."""
SUBSCRIBERS = ("factors", "risk", "analytics")
ENGINES = ("marketdata", *SUBSCRIBERS, "alerts")
PROCFILE_PROCESSES = 7
"""Lines of the Procfile: six workers and the scheduler."""
SYSTEM_REDIS = 6379


def run_demo(*args: str, env: dict[str, str] | None = None) -> tuple[str, str, str]:
    """Run ``python -m workers.demo ARGS``; its stdout, stderr and a report for failures."""
    proc = subprocess.run(
        [sys.executable, "-m", "workers.demo", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=150,
        check=False,
    )
    report = f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert proc.returncode == 0, report
    return proc.stdout, proc.stderr, report


def table_rows(out: str) -> dict[str, list[str]]:
    """The rows of the printed tables, by their first cell (an engine name in the first)."""
    rows: dict[str, list[str]] = {}
    for line in out.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃|]", line)]
        if len(cells) > 3:
            rows.setdefault(cells[1], cells[2:-1])
    return rows


def number(cell: str) -> float:
    """A figure as printed (``1,019.8``); fails the test on anything else."""
    assert re.fullmatch(r"\d[\d,]*(\.\d+)?", cell), f"not a number: {cell!r}"
    return float(cell.replace(",", ""))


def check_engine_table(out: str, sent: dict[str, int], report: str) -> None:
    """Per engine: sent, processed, none dead, then throughput and p50 <= p99 figures."""
    rows = table_rows(out)
    for engine, count in sent.items():
        row = rows.get(engine)
        assert row is not None, report
        assert row[:3] == [str(count), str(count), "0"] and row[-1] == "yes", (engine, report)
        rate, p50, p99 = row[3:6]
        if count == 0:
            assert (number(rate), p50, p99) == (0, "-", "-"), (engine, report)
            continue
        assert number(rate) > 0, (engine, report)
        assert 0 < number(p50) <= number(p99), (engine, report)
    total = rows.get("total")
    assert total is not None, report
    assert total[:3] == [str(sum(sent.values()))] * 2 + ["0"], report
    assert number(total[3]) > 0 and total[-1] == "yes", report


def demo_prefix(err: str, report: str) -> str:
    found = re.search(r"prefix (demo-[0-9a-f]+), output in", err)
    assert found is not None, report
    return found[1]


def processes_with(marker: bytes) -> list[int]:
    """Pids of the live processes whose environment holds ``marker`` (``NT_PREFIX=...``)."""
    pids = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker in environ.read_bytes().split(b"\0"):
                state = (environ.parent / "stat").read_text().rpartition(")")[2].split()[0]
                if state != "Z":
                    pids.append(int(environ.parent.name))
        except (OSError, IndexError):
            continue  # gone meanwhile, or not ours to read
    return pids


def alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie (an orphan init has not reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def check_clean_stop(err: str, prefix: str, report: str) -> None:
    """honcho was stopped by the demo's SIGTERM (honcho exits 143 then), every process it
    started exited by itself, and no process of this run is left."""
    stopped = (
        f"workers stopped (honcho exit code 143): all {PROCFILE_PROCESSES} processes it"
        " started have exited"
    )
    assert stopped in err, report
    assert "killed" not in err and "killing" not in err, report
    assert processes_with(f"NT_PREFIX={prefix}".encode()) == [], report
    assert re.search(rf"deleted \d+ keys of prefix {prefix}", err), report


def system_redis() -> redis.Redis | None:
    """The system server on 6379, if one runs and this session's tests do not use it (CI's
    second pass does: sequential, yet a stray write would blur the count): the embedded
    demo must not touch it."""
    if f":{SYSTEM_REDIS}" in os.environ.get("NT_TEST_REDIS_URL", ""):
        return None
    conn = redis.Redis(port=SYSTEM_REDIS, socket_connect_timeout=2)
    try:
        conn.ping()
    except redis.ConnectionError:
        return None
    return conn


def test_demo_processes_every_trade_and_event_and_answers_var_requests(redis_url: str) -> None:
    out, err, report = run_demo(
        *("--trades", str(TRADES), "--var-requests", str(VAR_REQUESTS), "--redis", redis_url),
        *("--seed", str(SEED)),
    )
    # per engine: market data gets every trade and quote; the three subscribers every
    # trade (a task) and every quote (an event); alerts every breach alert raised
    breaches = re.search(r"EVENTS OK: risk\.breach\.# published (\d+); received alerts=(\d+)", out)
    assert breaches is not None and breaches[1] == breaches[2], report
    raised = int(breaches[1])
    assert raised > 0, report  # TSLA is bought more than sold and has a tight limit
    each = TRADES + QUOTES
    counts = f"marketdata={each} risk={each} factors={each} analytics={each}"
    expected = f"OK: {TRADES} trades and {QUOTES} quotes sent; processed {counts} alerts={raised}"
    assert expected in out, report
    check_engine_table(out, {**{e: each for e in ENGINES[:-1]}, "alerts": raised}, report)
    # the second table and its lines: quotes published once and received by each subscriber
    received = " ".join(f"{e}={QUOTES}" for e in SUBSCRIBERS)
    assert f"EVENTS OK: market.quote.* published {QUOTES}; received {received}" in out, report
    for engine in SUBSCRIBERS:
        assert re.search(rf"market\.quote\.\*\W+{QUOTES}\W+{engine}\W+{QUOTES}\W+yes", out), report
    assert re.search(rf"risk\.breach\.#\W+{raised}\W+alerts\W+{raised}\W+yes", out), report
    assert f"ALERTS OK: breach alerts raised {raised}, recorded by alerts {raised}" in out, report
    var = re.search(
        rf"VAR OK: {VAR_REQUESTS} requests, {VAR_REQUESTS} replies, risk processed"
        rf" {VAR_REQUESTS}; round trip p50 ([\d.,]+) ms p99 ([\d.,]+) ms",
        out,
    )
    assert var is not None, report
    assert 0 < float(var[1]) <= float(var[2]), report
    row = rf"VaR request\W+{VAR_REQUESTS}\W+risk\W+{VAR_REQUESTS}\W+[\d.,]+\W+[\d.,]+\W+yes"
    assert re.search(row, out), report
    assert re.search(r"99% historical VaR of the demo portfolio .*: [\d,]+\.\d\d", out), report
    assert f"using the server at {redis_url}" in err and "embedded Valkey" not in err, report
    prefix = demo_prefix(err, report)
    check_clean_stop(err, prefix, report)
    conn = redis.Redis.from_url(redis_url)
    try:  # the workers were gone before the keys were deleted: none was written after
        assert list(conn.scan_iter(match=f"{prefix}:*", count=1000)) == [], report
    finally:
        conn.close()


@pytest.mark.own_server
def test_demo_without_a_url_runs_on_its_own_embedded_valkey_and_stops_it(tmp_path: Path) -> None:
    """As from a clean clone: no NT_REDIS_URL, no --redis, a runtime directory of its own."""
    trades, quotes, requests = 200, 100, 20
    runtime = tmp_path / "runtime"
    drop = ("NT_REDIS_URL", "NT_PREFIX", "NT_TEST_REDIS_URL", "XDG_RUNTIME_DIR")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["NT_RUNTIME_DIR"] = str(runtime)
    system = system_redis()
    keys_before = None if system is None else system.dbsize()
    out, err, report = run_demo(
        *("--trades", str(trades), "--quotes", str(quotes), "--var-requests", str(requests)),
        env=env,
    )
    started = re.search(
        r"embedded Valkey at redis://127\.0\.0\.1:(\d+) \(started, data in (\S+)\)", err
    )
    assert started is not None, report
    port = int(started[1])
    assert Path(started[2]) == runtime / "data" and port != SYSTEM_REDIS, report
    assert f"using the embedded Valkey at redis://127.0.0.1:{port} (started)" in err, report
    assert re.search(r"server: valkey \d", err), report
    breaches = re.search(r"EVENTS OK: risk\.breach\.# published (\d+); received alerts=(\d+)", out)
    assert breaches is not None and breaches[1] == breaches[2], report
    raised, each = int(breaches[1]), trades + quotes
    counts = f"marketdata={each} risk={each} factors={each} analytics={each} alerts={raised}"
    assert f"OK: {trades} trades and {quotes} quotes sent; processed {counts}" in out, report
    check_engine_table(out, {**{e: each for e in ENGINES[:-1]}, "alerts": raised}, report)
    var = re.search(rf"VAR OK: {requests} requests, {requests} replies", out)
    assert var is not None, report
    prefix = demo_prefix(err, report)
    check_clean_stop(err, prefix, report)
    # the server this run started is stopped: its pid is gone, its port closed
    stopped = re.search(r"stopped embedded Valkey pid (\d+) \(data in (\S+)\)", err)
    assert stopped is not None and Path(stopped[2]) == runtime / "data", report
    assert "stopped the embedded Valkey this run started" in err, report
    assert not alive(int(stopped[1])), report
    assert not (runtime / "valkey.pid").exists(), report
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
    if system is not None:  # nothing went to the system server
        try:
            assert system.dbsize() == keys_before, report
            assert list(system.scan_iter(match=f"{prefix}:*", count=1000)) == [], report
        finally:
            system.close()
