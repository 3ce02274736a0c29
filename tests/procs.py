"""Real worker processes for fault tests: started through the CLI, signalled, awaited."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def start_worker(
    app: str, url: str, prefix: str, *extra: str, log: Path | None = None
) -> subprocess.Popen[bytes]:
    """``python -m nautilus_tasks worker APP`` against ``url`` with ``prefix``."""
    env = {**os.environ, "NT_REDIS_URL": url, "NT_PREFIX": prefix, "PYTHONUNBUFFERED": "1"}
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen(
        [sys.executable, "-m", "nautilus_tasks", "worker", app, *extra],
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
