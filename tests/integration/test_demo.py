"""The demo end to end: honcho runs the Procfile's workers; 500 trades and 250 quotes go
through every engine, quotes as events, breach alerts to alerts, then VaR requests."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TRADES, QUOTES, VAR_REQUESTS = 500, 250, 100
SUBSCRIBERS = ("factors", "risk", "analytics")


def test_demo_processes_every_trade_and_event_and_answers_var_requests(redis_url: str) -> None:
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "workers.demo", "--trades", str(TRADES)),
            *("--var-requests", str(VAR_REQUESTS), "--redis", redis_url),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=100,
        check=False,
    )
    out, report = proc.stdout, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert proc.returncode == 0, report
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
    for engine in ("marketdata", *SUBSCRIBERS):  # the row: engine, sent, processed, dead 0
        assert re.search(rf"{engine}\W+{each}\W+{each}\W+0\W", out), report
    assert re.search(rf"alerts\W+{raised}\W+{raised}\W+0\W", out), report
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
    assert "deleted" in proc.stderr and "embedded Valkey" not in proc.stderr, report
