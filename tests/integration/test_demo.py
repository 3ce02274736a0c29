"""The demo end to end: honcho runs the Procfile's workers, 500 trades go through every engine."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ENGINES = ("marketdata", "risk", "factors", "analytics")


def test_demo_processes_every_trade_in_every_engine(redis_url: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "workers.demo", "--trades", "500", "--redis", redis_url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=100,
        check=False,
    )
    report = f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert proc.returncode == 0, report
    counts = " ".join(f"{engine}=500" for engine in ENGINES)
    assert f"OK: 500 trades sent; processed {counts}" in proc.stdout, report
    for engine in ENGINES:  # the table row: engine, sent 500, processed 500, dead 0
        assert re.search(rf"{engine}\W+500\W+500\W+0\W", proc.stdout), report
    assert "deleted" in proc.stderr and "embedded Valkey" not in proc.stderr, report
