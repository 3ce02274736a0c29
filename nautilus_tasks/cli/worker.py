"""``nautilus-tasks worker``: run an engine's workers."""

from __future__ import annotations

import sys

import click

from ..aio import LOOPS
from ..buses import DEFAULT, Buses
from ..config import BusConfig, WorkerConfig
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
@click.option("--bus", "extra_buses", multiple=True, metavar="NAME=URL", help="Another bus.")
@click.option("--route", "routes", multiple=True, metavar="PATTERN=BUS", help="Topic route.")
@click.option(
    "--loop", type=click.Choice(LOOPS), default="asyncio", envvar="NT_LOOP", show_default=True,
    help="Event loop; uvloop needs the uvloop extra [env NT_LOOP].",
)  # fmt: skip
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
    extra_buses: tuple[str, ...],
    routes: tuple[str, ...],
    loop: str,
    redis_url: str | None,
    prefix: str,
) -> None:
    """Run the tasks of APP (module:engine) until SIGTERM or Ctrl-C."""
    bus = bus_config(redis_url, prefix)
    buses = _buses(bus, extra_buses, routes)
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
        argv += ["--lease", str(lease), "--max-deliveries", str(max_deliveries), "--loop", loop]
        argv += [] if prefetch is None else ["--prefetch", str(prefetch)]
        argv += ["--redis", bus.url, "--prefix", bus.prefix]
        argv += [f"--bus={b}" for b in extra_buses] + [f"--route={r}" for r in routes]
        sys.exit(supervise(argv, processes, grace))
    engine = load_engine(app)
    from ..worker import run_worker

    try:
        run_worker(engine, buses, config, consumer, loop)
    except NautilusTasksError as exc:
        raise click.ClickException(str(exc)) from exc


def _pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    out = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key or not rest:
            raise click.BadParameter(f"{value!r}: expected {what}", param_hint=what)
        out[key] = rest
    return out


def _buses(default: BusConfig, extra: tuple[str, ...], routes: tuple[str, ...]) -> Buses:
    configs = {DEFAULT: default}
    for name, url in _pairs(extra, "NAME=URL").items():
        configs[name] = BusConfig.from_url(url, prefix=default.prefix)
    try:
        return Buses(configs, _pairs(routes, "PATTERN=BUS"))
    except NautilusTasksError as exc:
        raise click.ClickException(str(exc)) from exc
