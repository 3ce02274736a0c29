"""``nautilus-tasks bench``: measure this machine's throughput and latencies."""

from __future__ import annotations

import asyncio

import click

from ..aio import LOOPS, run
from ..errors import NautilusTasksError

_ALL = ("enqueue", "throughput", "latency", "rpc", "critical", "fanout", "soak", "all")


def _env(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{value!r}: expected KEY=VALUE", param_hint="--env")
        out[key] = rest
    return out


@click.command("bench")
@click.option("--url", default=None, help="Bus URL; default: a private embedded Valkey.")
@click.option(
    "-s",
    "--scenario",
    "selected",
    multiple=True,
    type=click.Choice(_ALL),
    help="Scenario to run (repeat for several); default: all but soak.",
)
@click.option(
    "-n",
    "n",
    type=int,
    default=20_000,
    show_default=True,
    help="Messages per enqueue and throughput run.",
)
@click.option(
    "--latency-n",
    type=int,
    default=1_000,
    show_default=True,
    help="Stamped tasks per latency measurement.",
)
@click.option(
    "--rate",
    type=float,
    default=200.0,
    show_default=True,
    help="Offered rate (per second) of the latency scenarios.",
)
@click.option("--rpc-n", type=int, default=1_000, show_default=True, help="Round trips.")
@click.option(
    "--backlog",
    type=int,
    default=100_000,
    show_default=True,
    help="LOW tasks queued in the critical-tier scenario.",
)
@click.option("--fanout-n", type=int, default=5_000, show_default=True, help="Events.")
@click.option("--soak-n", type=int, default=1_000_000, show_default=True, help="Soak tasks.")
@click.option(
    "-p",
    "--processes",
    type=int,
    default=2,
    show_default=True,
    help="Worker processes of the second throughput run (1: skip it).",
)
@click.option(
    "-c",
    "--concurrency",
    type=int,
    default=100,
    show_default=True,
    help="Concurrency of each worker process.",
)
@click.option(
    "--env",
    "env",
    multiple=True,
    metavar="KEY=VALUE",
    help="Extra environment of the workers (they inherit this one's).",
)
@click.option(
    "--worker-arg",
    "worker_args",
    multiple=True,
    metavar="ARG",
    help="Extra argument of the workers, e.g. --worker-arg=--prefetch=200.",
)
@click.option(
    "--loop", type=click.Choice(LOOPS), default="asyncio", show_default=True,
    help="Event loop of this process and of the workers (uvloop needs the uvloop extra).",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON on stdout.")
def bench_command(
    url: str | None,
    selected: tuple[str, ...],
    n: int,
    latency_n: int,
    rate: float,
    rpc_n: int,
    backlog: int,
    fanout_n: int,
    soak_n: int,
    processes: int,
    concurrency: int,
    env: tuple[str, ...],
    worker_args: tuple[str, ...],
    loop: str,
    as_json: bool,
) -> None:
    """Run the benchmark scenarios; worker processes are started like `nautilus-tasks worker`.

    CPU time per task (worker processes, from the kernel) and per enqueue (this
    process) are the figures to compare on a shared machine; rates and latencies
    move with whatever else runs.
    """
    import orjson
    from rich.console import Console

    from .measure import Options
    from .report import table
    from .runner import DEFAULT, SCENARIOS, run_bench

    for name, value in (("-n", n), ("--latency-n", latency_n), ("--rpc-n", rpc_n),
                        ("--fanout-n", fanout_n), ("--soak-n", soak_n)):  # fmt: skip
        if value < 1:
            raise click.BadParameter("must be at least 1", param_hint=name)
    if rate <= 0 or backlog < 0 or processes < 1 or concurrency < 1:
        raise click.UsageError("--rate, --processes and --concurrency must be positive")
    chosen = SCENARIOS if "all" in selected else (selected or DEFAULT)
    options = Options(
        n=n, latency_n=latency_n, rate=rate, rpc_n=rpc_n, backlog=backlog, fanout_n=fanout_n,
        soak_n=soak_n, processes=processes, concurrency=concurrency, env=_env(env),
        worker_args=("--loop", loop, *worker_args), loop=loop,
    )  # fmt: skip
    try:
        data = run(run_bench(url, chosen, options, Console(stderr=True)), loop)
    except NautilusTasksError as exc:
        raise click.ClickException(str(exc)) from exc
    except (asyncio.CancelledError, KeyboardInterrupt):  # Ctrl-C; workers and server stopped
        raise click.Abort() from None
    if as_json:
        click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
    else:
        Console().print(table(data))
