"""The ``nautilus-tasks`` command line."""

from __future__ import annotations

import logging

import click

from ..bench.command import bench_command
from .dlq import dlq_group
from .inspect import inspect_command
from .postgres import db_group, history_command, stats_command
from .scheduler import scheduler_command, schedules_command
from .send import send_command
from .server import server_command
from .worker import worker_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--log-level", default="INFO", show_default=True, help="Logging level.")
def cli(log_level: str) -> None:
    """nautilus-tasks: tasks and events between engines over Redis Streams."""
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s",
    )


cli.add_command(worker_command)
cli.add_command(send_command)
cli.add_command(inspect_command)
cli.add_command(server_command)
cli.add_command(dlq_group)
cli.add_command(scheduler_command)
cli.add_command(schedules_command)
cli.add_command(db_group)
cli.add_command(history_command)
cli.add_command(stats_command)
cli.add_command(bench_command)


def main() -> None:
    """Console-script entry point."""
    cli()
