"""``nautilus-tasks worker``: run an engine's workers."""

from __future__ import annotations

import sys

import click

from ..config import WorkerConfig
from ..errors import NautilusTasksError
from .common import bus_config, bus_options, load_engine


@click.command("worker")
@click.argument("app")
@click.option("-c", "--concurrency", type=int, default=100, show_default=True)
@click.option("--prefetch", type=int, default=None, help="Extra messages held beyond concurrency.")
@click.option("-p", "--processes", type=int, default=1, show_default=True)
@click.option("--grace", type=float, default=30.0, show_default=True, help="Drain time on stop.")
@click.option("--threads", type=int, default=8, show_default=True, help="Threads for sync tasks.")
@click.option("--consumer", default=None, help="Consumer name (default: host-pid-random).")
@click.option("--lease", type=float, default=30.0, show_default=True, help="Lease in seconds.")
@click.option("--max-deliveries", type=int, default=5, show_default=True, help="Poison limit.")
@bus_options
def worker_command(
    app: str,
    concurrency: int,
    prefetch: int | None,
    processes: int,
    grace: float,
    threads: int,
    consumer: str | None,
    lease: float,
    max_deliveries: int,
    redis_url: str | None,
    prefix: str,
) -> None:
    """Run the tasks of APP (module:engine) until SIGTERM or Ctrl-C."""
    bus = bus_config(redis_url, prefix)
    try:
        config = WorkerConfig(
            concurrency=concurrency,
            prefetch=prefetch,
            grace=grace,
            sync_threads=threads,
            lease=lease,
            max_deliveries=max_deliveries,
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    if processes > 1:
        from ..worker.supervisor import supervise

        if consumer is not None:
            raise click.UsageError("--consumer names one process; it cannot go with --processes")
        log_level = click.get_current_context().find_root().params.get("log_level", "INFO")
        argv = [sys.executable, "-m", "nautilus_tasks", "--log-level", log_level]
        argv += ["worker", app, "--processes", "1"]
        argv += ["-c", str(concurrency), "--grace", str(grace), "--threads", str(threads)]
        argv += ["--lease", str(lease), "--max-deliveries", str(max_deliveries)]
        argv += [] if prefetch is None else ["--prefetch", str(prefetch)]
        argv += ["--redis", bus.url, "--prefix", bus.prefix]
        sys.exit(supervise(argv, processes, grace))
    engine = load_engine(app)
    from ..worker import run_worker

    try:
        run_worker(engine, bus, config, consumer)
    except NautilusTasksError as exc:
        raise click.ClickException(str(exc)) from exc
