"""The demo's processes and keys: the Procfile's workers under honcho, and the cleanup."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import redis.asyncio as aioredis

from .progress import DemoError

log = logging.getLogger("workers.demo")

ROOT = Path(__file__).resolve().parent.parent
PROCFILE = ROOT / "Procfile"
STOP_TIMEOUT = 30.0


@contextlib.contextmanager
def running_workers(url: str, prefix: str, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The Procfile's workers under honcho, their output in ``log_path``; stopped on exit."""
    venv_bin = str(Path(sys.executable).parent)  # not resolved: a venv's python is a symlink
    env = {
        **os.environ,
        "NT_REDIS_URL": url,
        "NT_PREFIX": prefix,
        "PYTHONUNBUFFERED": "1",
        "PATH": os.pathsep.join([venv_bin, os.environ.get("PATH", "")]),
    }
    argv = [sys.executable, "-m", "honcho", "start", "-f", str(PROCFILE)]
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    log.info(
        "started the workers with honcho (pid %d), prefix %s, output in %s",
        *(proc.pid, prefix, log_path),
    )
    try:
        yield proc
    finally:
        stop_workers(proc)


def stop_workers(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM honcho's process group: honcho forwards one SIGTERM to each worker, which
    drains and exits. Each worker runs in its own session, so it is signalled only once."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            log.warning("honcho did not stop within %.0fs; killing it", STOP_TIMEOUT)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    log.info("workers stopped (honcho exit code %s)", proc.returncode)


def check_alive(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        raise DemoError(f"the workers exited early (honcho exit code {proc.returncode})")


async def delete_keys(url: str, prefix: str) -> int:
    """Delete every key of this run (``prefix:*``); returns how many."""
    conn = aioredis.Redis.from_url(url)
    deleted = 0
    try:
        batch: list[bytes] = []
        async for key in conn.scan_iter(match=f"{prefix}:*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                deleted += await conn.delete(*batch)
                batch.clear()
        if batch:
            deleted += await conn.delete(*batch)
    finally:
        await conn.aclose()
    return deleted


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text("utf-8", "replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(cannot read {path}: {exc})"
