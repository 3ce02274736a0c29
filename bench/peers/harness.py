"""The phases of one run of one system: enqueue, processing (bodies a and b), latency.

Every producer and worker is a subprocess in the system's venv, started from the checkout's
root with ``BENCH_URL`` and ``BENCH_BODY`` in its environment. Completion is read from the
Redis counter that the task bodies increment; the database is flushed before each phase.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import stats
from .apps.body import COUNTER, LATENCIES
from .systems import System
from .venvs import REPO, bin_path

PRODUCER = "bench.peers.apps.producer"
POLL = 0.002
TIMELINE_EVERY = 0.5  # seconds between the counts kept of a processing phase
STARTUP_TIMEOUT = 60.0
STOP_GRACE = 3.0
WARMUP_SECONDS = 0.5
DRAIN_TIMEOUT = 10.0  # after the last latency send, for the worker to finish
BACKLOG_SECONDS = 1.0  # a worker still busy this long after the last send was backlogged


class PhaseError(Exception):
    """A producer or worker failed; the phase's metric is missing from the run."""


@dataclass(frozen=True)
class Config:
    n: int
    enqueue_cap: float
    process_cap: float
    rate: float
    latency_seconds: float
    logs: Path


def _env(url: str, body: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(BENCH_URL=url, BENCH_BODY=body, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    env.pop("NT_REDIS_URL", None)
    return env


def produce(system: System, url: str, args: list[str], timeout: float) -> dict[str, Any]:
    """Run the system's producer with ``args``; its JSON result."""
    argv = [str(bin_path(system, "python")), "-m", PRODUCER, system.app, *args]
    try:
        done = subprocess.run(
            argv, cwd=REPO, env=_env(url, "a"), capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        raise PhaseError(
            f"{system.name} producer {args[0]} timed out after {timeout:.0f}s"
        ) from exc
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise PhaseError(f"{system.name} producer {args[0]} failed ({done.returncode}):\n{tail}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


class Worker:
    """A worker process group started with the framework's CLI (stopped with SIGTERM, then KILL)."""

    def __init__(self, system: System, url: str, body: str, logs: Path) -> None:
        argv = system.worker_argv(url)
        argv[0] = str(bin_path(system, argv[0]))
        logs.mkdir(parents=True, exist_ok=True)
        self.log_path = logs / f"{system.name}-worker-{body}.log"
        self.system = system
        with self.log_path.open("ab") as log:
            log.write(f"\n=== {' '.join(argv)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                argv,
                cwd=REPO,
                env=_env(url, body),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )

    def check(self) -> None:
        if (code := self.proc.poll()) is not None:
            raise PhaseError(f"{self.system.name} worker exited ({code}); see {self.log_path}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            _signal_group(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(STOP_GRACE)
        _signal_group(self.proc.pid, signal.SIGKILL)  # children left behind, if any
        if self.proc.poll() is None:
            self.proc.wait()


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _count(client: Any) -> int:
    return int(client.get(COUNTER) or 0)


@dataclass
class Drain:
    """What a processing phase saw: the rate, the count reached, whether it was capped, and
    ``(seconds since the first count, count)`` every :data:`TIMELINE_EVERY` seconds."""

    rate: float | None
    count: int
    capped: bool
    timeline: list[tuple[float, int]]


def wait_count(client: Any, worker: Worker, target: int, cap: float) -> Drain:
    """Poll the counter until it reaches ``target``.

    The rate is measured from the first count seen (the worker's start-up is not counted)
    to the last; the phase stops ``cap`` seconds after the first count.
    """
    begin = time.perf_counter()
    first: tuple[float, int] | None = None
    timeline: list[tuple[float, int]] = []
    while True:
        value, now = _count(client), time.perf_counter()
        if first is None and value > 0:
            first = (now, value)
        if first is not None and now - first[0] >= len(timeline) * TIMELINE_EVERY:
            timeline.append((round(now - first[0], 3), value))
        if value >= target or (first is not None and now - first[0] > cap):
            break
        if first is None and now - begin > STARTUP_TIMEOUT:
            worker.check()
            raise PhaseError(
                f"{worker.system.name}: no task done {STARTUP_TIMEOUT:.0f}s after start"
            )
        worker.check()
        time.sleep(POLL)
    assert first is not None
    timeline.append((round(now - first[0], 3), value))
    return Drain(stats.rate(value - first[1], now - first[0]), value, value < target, timeline)


def _wait_target(client: Any, worker: Worker, target: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _count(client) < target:
        worker.check()
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL * 5)
    return True


def enqueue_phase(system: System, url: str, cfg: Config, run: dict[str, Any]) -> int:
    args = ["enqueue", "--n", str(cfg.n), "--cap", str(cfg.enqueue_cap)]
    result = produce(system, url, args, timeout=cfg.enqueue_cap + 120)
    run.setdefault("enqueue", stats.rate(result["count"], result["seconds"]))
    run.setdefault("enqueue_n", result["count"])
    return int(result["count"])


def latency_phase(
    system: System, url: str, cfg: Config, client: Any, worker: Worker, run: dict[str, Any]
) -> None:
    """Warm up, then send at ``cfg.rate`` for ``cfg.latency_seconds``; p50/p99 of the samples."""
    client.delete(COUNTER, LATENCIES)
    warm = ["latency", "--rate", str(cfg.rate), "--seconds", str(WARMUP_SECONDS)]
    sent = produce(system, url, warm, timeout=60)["count"]
    if not _wait_target(client, worker, sent, 30.0):
        run["notes"].append("latency warm-up not drained")
    client.delete(COUNTER, LATENCIES)
    args = ["latency", "--rate", str(cfg.rate), "--seconds", str(cfg.latency_seconds)]
    result = produce(system, url, args, timeout=cfg.latency_seconds + 120)
    sent_by = time.monotonic()
    if not _wait_target(client, worker, result["count"], DRAIN_TIMEOUT):
        run["notes"].append("latency not drained")
    else:
        run["lat_drain_s"] = round(time.monotonic() - sent_by, 3)
        if run["lat_drain_s"] > BACKLOG_SECONDS:
            run["notes"].append("latency backlogged")
    samples = [float(v) for v in client.lrange(LATENCIES, 0, -1)]
    run["lat_p50"] = stats.percentile(samples, 50)
    run["lat_p99"] = stats.percentile(samples, 99)
    run["lat_n"] = len(samples)


def process_phase(
    system: System, url: str, cfg: Config, client: Any, body: str, run: dict[str, Any]
) -> Worker:
    """Fill the backlog, start the worker, measure its drain; the worker keeps running."""
    client.flushdb()
    count = enqueue_phase(system, url, cfg, run)
    worker = Worker(system, url, body, cfg.logs)
    try:
        drain = wait_count(client, worker, count, cfg.process_cap)
    except BaseException:
        worker.stop()
        raise
    run[f"process_{body}"] = drain.rate
    run[f"process_{body}_n"] = drain.count
    run[f"process_{body}_timeline"] = drain.timeline
    if drain.capped:
        run["notes"].append(f"processing ({body}) time-capped")
    return worker


def run_system(system: System, url: str, cfg: Config, client: Any) -> dict[str, Any]:
    """One run of every phase for one system; a failed phase is recorded in ``errors``."""
    run: dict[str, Any] = {"notes": [], "errors": []}
    for body in ("a", "b"):
        worker = None
        try:
            worker = process_phase(system, url, cfg, client, body, run)
            if body == "a":
                if "processing (a) time-capped" in run["notes"]:  # a backlog is left: restart
                    worker.stop()
                    client.flushdb()
                    worker = Worker(system, url, body, cfg.logs)
                latency_phase(system, url, cfg, client, worker, run)
        except PhaseError as exc:
            run["errors"].append(str(exc))
        finally:
            if worker is not None:
                worker.stop()
    client.flushdb()
    return run
