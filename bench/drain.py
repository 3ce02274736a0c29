"""One worker process draining a body-(b) backlog: tasks/s and the worker's CPU per task.

Flushes the server at ``BENCH_URL`` (give it one that holds nothing else), enqueues N
no-op tasks of ``bench/peers/apps/nt_bench.py`` with its producer, then starts
``python -m nautilus_tasks worker bench.peers.apps.nt_bench:engine -c 100`` (plus any
extra worker options given) and polls the completion counter every 5 ms::

    export BENCH_URL=redis://127.0.0.1:6411 BENCH_BODY=b
    .venv/bin/python -m bench.drain 200000                  # default prefetch
    .venv/bin/python -m bench.drain 200000 --prefetch 100

The rate is measured from the first completion seen to the last (start-up excluded); the CPU
is the worker process's user + system time (``/proc/<pid>/stat``, every thread) over the
whole run, divided by N. ``python -m`` imports the checkout in the current directory first,
so running this from a git worktree of another commit measures that commit's worker.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import redis


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(n: int, worker_args: list[str]) -> None:
    url = os.environ["BENCH_URL"]
    counter = redis.Redis.from_url(url)
    counter.flushdb()
    producer = ["-m", "bench.peers.apps.producer", "nt_bench", "enqueue", "--n", str(n)]
    producer += ["--cap", "60", "--chunk", "1000"]
    subprocess.run([sys.executable, *producer], check=True, stdout=subprocess.DEVNULL)
    worker = subprocess.Popen(
        [sys.executable, "-m", "nautilus_tasks", "--log-level", "WARNING", "worker",
         "bench.peers.apps.nt_bench:engine", "-c", "100", "--redis", url, *worker_args]
    )  # fmt: skip
    try:
        first: tuple[float, int] | None = None
        while (done := int(counter.get("bench:done") or 0)) < n:
            if done and first is None:
                first = (time.perf_counter(), done)
            if worker.poll() is not None:
                raise SystemExit(f"the worker exited with {worker.returncode}")
            time.sleep(0.005)
        ended = time.perf_counter()
        cpu = _cpu_seconds(worker.pid)
    finally:
        worker.terminate()
        worker.wait()
    began, counted = first or (ended, 0)
    rate = (n - counted) / (ended - began) if ended > began else float("nan")
    print(f"{rate:,.0f} tasks/s, worker CPU {cpu * 1e6 / n:.1f} us per task")


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2:])
