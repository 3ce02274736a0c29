"""Real worker processes for fault tests: started through the CLI, signalled, awaited."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def worker_process(
    app: str, url: str, prefix: str, *extra: str, log: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """``start_worker``, killed when the block ends if the test left it running."""
    proc = start_worker(app, url, prefix, *extra, log=log)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def start_scheduler(app: str, url: str, prefix: str, log: Path) -> subprocess.Popen[bytes]:
    """``python -m nautilus_tasks scheduler APP``, its output appended to ``log``."""
    env = {**os.environ, "NT_REDIS_URL": url, "NT_PREFIX": prefix, "PYTHONUNBUFFERED": "1"}
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "nautilus_tasks", "scheduler", app],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stop_workers(procs: list[subprocess.Popen[bytes]], timeout: float = 30.0) -> list[int]:
    """SIGTERM each worker and wait for its graceful exit; returns the exit codes. A worker
    still running after ``timeout`` is killed and fails the test: a stop must not hang."""
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    codes = []
    for proc in procs:
        try:
            codes.append(proc.wait(timeout))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError(f"worker {proc.pid} hung {timeout:.0f}s after SIGTERM") from None
    return codes
