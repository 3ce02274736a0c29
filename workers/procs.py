"""The demo's processes and keys: the Procfile's workers under honcho, and the cleanup."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from nautilus_tasks import BusConfig, Client

from .progress import DemoError

log = logging.getLogger("workers.demo")

ROOT = Path(__file__).resolve().parent.parent
PROCFILE = ROOT / "Procfile"
STOP_TIMEOUT = 30.0
"""Seconds from the SIGTERM until every process honcho started must have exited."""
_GONE_POLL = 0.05
_STARTED = re.compile(r"\|\s*(\S+) started \(pid=(\d+)\)")


@dataclass
class Workers:
    """The honcho process, and once stopped, whether everything it started exited by itself."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    clean: bool | None = None
    """None while running; after the stop, False if a process had to be killed."""


@contextlib.contextmanager
def running_workers(url: str, prefix: str, log_path: Path) -> Iterator[Workers]:
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
    workers = Workers(proc, log_path)
    try:
        yield workers
    finally:
        workers.clean = stop_workers(proc, log_path)


def started_groups(log_path: Path) -> dict[str, int]:
    """The processes honcho started, by name, from its ``NAME started (pid=N)`` lines. Each
    leads a session and process group of its own, so N is also the group of the worker
    it runs (the child of a shell, when the Procfile line does not ``exec``)."""
    text = log_path.read_text("utf-8", "replace") if log_path.exists() else ""
    return {m[1]: int(m[2]) for m in _STARTED.finditer(text)}


def _group_alive(pgid: int) -> bool:
    """Whether process group ``pgid`` still holds a process that is not a zombie."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stats = list(Path("/proc").glob("[0-9]*/stat"))
    if not stats:  # no procfs (macOS): take the group's existence as the answer
        return True
    for stat in stats:
        with contextlib.suppress(OSError):
            state, _ppid, pgrp = stat.read_text().rpartition(")")[2].split()[:3]
            if int(pgrp) == pgid and state != "Z":
                return True
    return False


def stop_workers(proc: subprocess.Popen[bytes], log_path: Path) -> bool:
    """SIGTERM honcho's process group: honcho forwards one SIGTERM to each of its process
    groups, whose worker drains and exits. Each runs in its own session, so it is signalled
    only once. honcho exits when the shells it started do, which may be before their
    workers finish draining: wait for every group to be empty too, and kill what is left
    after :data:`STOP_TIMEOUT`. Returns whether everything exited by itself."""
    groups = started_groups(log_path)
    deadline = time.monotonic() + STOP_TIMEOUT
    clean = True
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            log.warning("honcho did not stop within %.0fs; killing it", STOP_TIMEOUT)
            clean = False
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    left = dict(groups)
    while left:
        left = {name: pgid for name, pgid in left.items() if _group_alive(pgid)}
        if not left or time.monotonic() > deadline:
            break
        time.sleep(_GONE_POLL)
    if left:
        log.warning("still running %.0fs after the stop, killed: %s", STOP_TIMEOUT, sorted(left))
        clean = False
        for pgid in left.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
    how = f"all {len(groups)} processes it started have exited" if clean else "not cleanly"
    log.info("workers stopped (honcho exit code %s): %s", proc.returncode, how)
    return clean


def check_alive(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        raise DemoError(f"the workers exited early (honcho exit code {proc.returncode})")


async def delete_keys(url: str, prefix: str) -> int:
    """Delete every key of this run (``prefix:*``); returns how many."""
    async with await Client.connect(BusConfig.from_url(url, prefix=prefix)) as client:
        return await client.broker.delete_prefix()


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text("utf-8", "replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(cannot read {path}: {exc})"
