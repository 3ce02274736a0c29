"""The dual-bus example of seed 004 runs end to end on two embedded servers."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.procs import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.own_server]


def test_dual_bus_example_routes_quotes_and_tasks_to_their_servers() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "workers.dual_bus", "--trades", "300"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert "OK: quotes went over the marketdata bus, tasks over the default bus" in out.stdout
    assert "│ risk       │ marketdata │       150 │           150 │" in out.stdout
