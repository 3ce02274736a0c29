"""The systems compared by ``bench/peers``: pinned requirements, worker command, settings.

Every system runs in its own venv (``bench/peers/.venvs/<name>``) because the peers' redis-py
requirements conflict. The framework and its Redis client are pinned (at the versions pip
resolved when this was written); nautilus-tasks is installed from the checkout. The worker
command is the framework's own CLI, the way a user runs it; ``{module}`` is the system's app
module under ``bench.peers.apps`` and ``{url}`` the server URL.

nautilus-tasks has two rows: ``nautilus-tasks``, whose body (a) INCRs with its own redis-py
client like every peer's, and ``nautilus-tasks-autopipe``, whose body (a) INCRs through
``engine.redis``, the framework's auto-pipelined handle (both share one venv).
"""

from __future__ import annotations

from dataclasses import dataclass

HIREDIS = "hiredis==3.5.0"


@dataclass(frozen=True)
class System:
    """One framework (or the raw loop) as the runner sets it up and runs it."""

    name: str
    label: str
    requirements: tuple[str, ...]  # pip requirement strings; "{repo}" is the checkout
    packages: tuple[str, ...]  # distributions whose versions are recorded
    app: str  # module under bench.peers.apps
    worker: tuple[str, ...]  # argv; the first item is a script in the venv's bin/
    concurrency: str
    enqueue_api: str
    venv: str | None = None  # another system's venv to share (default: its own, by name)

    @property
    def module(self) -> str:
        return f"bench.peers.apps.{self.app}"

    def worker_argv(self, url: str) -> list[str]:
        return [part.format(module=self.module, url=url) for part in self.worker]


SYSTEMS: tuple[System, ...] = (
    System(
        "raw",
        "raw streams loop",
        ("redis[hiredis]==7.4.0", HIREDIS),
        ("redis", "hiredis"),
        "raw_bench",
        ("python", "-m", "{module}", "worker"),
        "1 asyncio loop; XREADGROUP COUNT 500, INCRs pipelined with the batch's XACK",
        "XADD, 500 per pipeline",
    ),
    System(
        "nautilus-tasks",
        "nautilus-tasks",
        ("-e {repo}", HIREDIS),
        ("nautilus-tasks", "redis", "hiredis", "orjson", "pydantic"),
        "nt_bench",
        (
            "nautilus-tasks",
            "--log-level",
            "WARNING",
            "worker",
            "{module}:engine",
            "-c",
            "100",
            "--redis",
            "{url}",
        ),
        "worker -c 100 (1 process)",
        "send_nowait() (buffered) + client.flush()",
    ),
    System(
        "nautilus-tasks-autopipe",
        "nautilus-tasks (engine.redis)",
        ("-e {repo}", HIREDIS),
        ("nautilus-tasks", "redis", "hiredis", "orjson", "pydantic"),
        "nt_autopipe_bench",
        (
            "nautilus-tasks",
            "--log-level",
            "WARNING",
            "worker",
            "{module}:engine",
            "-c",
            "100",
            "--redis",
            "{url}",
        ),
        "worker -c 100 (1 process); body (a) through engine.redis (auto-pipelined)",
        "send_nowait() (buffered) + client.flush()",
        venv="nautilus-tasks",
    ),
    System(
        "celery",
        "Celery",
        ("celery[redis]==5.7.0", "redis==8.1.0", HIREDIS),
        ("celery", "kombu", "redis", "hiredis"),
        "celery_bench",
        (
            "celery",
            "-A",
            "{module}",
            "worker",
            "--pool",
            "threads",
            "--concurrency",
            "8",
            "--loglevel",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ),
        "--pool threads --concurrency 8",
        "apply_async() on one producer (no bulk API)",
    ),
    System(
        "dramatiq",
        "Dramatiq",
        ("dramatiq[redis]==2.2.1", "redis==8.1.0", HIREDIS),
        ("dramatiq", "redis", "hiredis"),
        "dramatiq_bench",
        ("dramatiq", "{module}", "--processes", "1", "--threads", "8"),
        "--processes 1 --threads 8",
        "actor.send() (no bulk API)",
    ),
    System(
        "arq",
        "arq",
        ("arq==0.28.0", "redis==5.3.1", HIREDIS),
        ("arq", "redis", "hiredis"),
        "arq_bench",
        ("arq", "{module}.WorkerSettings", "--custom-log-dict", "{module}.LOGGING"),
        "max_jobs = 100",
        "enqueue_job(), 100 concurrent (asyncio.gather; no bulk API)",
    ),
    System(
        "saq",
        "SAQ",
        ("saq[redis,hiredis]==0.26.4", "redis==7.4.0", "typing-extensions", HIREDIS),
        ("saq", "redis", "hiredis"),
        "saq_bench",
        ("saq", "{module}.settings", "--workers", "1", "--quiet"),
        "concurrency = 100, --workers 1",
        "queue.enqueue(), 100 concurrent (asyncio.gather)",
    ),
    System(
        "taskiq",
        "taskiq-redis",
        ("taskiq-redis==1.2.4", "taskiq==0.13.0", "redis==8.1.0", HIREDIS),
        ("taskiq", "taskiq-redis", "redis", "hiredis"),
        "taskiq_bench",
        (
            "taskiq",
            "worker",
            "{module}:broker",
            "--workers",
            "1",
            "--max-async-tasks",
            "100",
            "--log-level",
            "WARNING",
        ),
        "RedisStreamBroker; --workers 1 --max-async-tasks 100",
        "task.kiq(), 100 concurrent (asyncio.gather; no bulk API)",
    ),
    System(
        "streaq",
        "streaq",
        ("streaq==7.2.0", "coredis==6.9.0", "redis==8.1.0", HIREDIS),
        ("streaq", "coredis", "redis", "hiredis"),
        "streaq_bench",
        ("streaq", "run", "{module}:worker"),
        "Worker(concurrency=100)",
        "worker.enqueue_many() (bulk)",
    ),
    System(
        "huey",
        "huey",
        ("huey==3.5.4", "redis==8.1.0", HIREDIS),
        ("huey", "redis", "hiredis"),
        "huey_bench",
        ("huey_consumer", "{module}.huey", "--workers", "8", "--worker-type", "thread", "-q"),
        "huey_consumer -k thread -w 8",
        "task() call (no bulk API)",
    ),
    System(
        "rq",
        "RQ",
        ("rq==3.0.0", "redis==8.1.0", HIREDIS),
        ("rq", "redis", "hiredis"),
        "rq_bench",
        (
            "rq",
            "worker",
            "--url",
            "{url}",
            "--worker-class",
            "rq.worker.SimpleWorker",
            "--quiet",
            "bench",
        ),
        "1 SimpleWorker (no fork; one job at a time)",
        "Queue.enqueue_many() in a pipeline (bulk)",
    ),
)

BY_NAME = {system.name: system for system in SYSTEMS}
