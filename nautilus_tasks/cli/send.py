"""``nautilus-tasks send``: enqueue a task from the shell."""

from __future__ import annotations

from typing import Any

import click
import orjson

from ..client import Client
from ..config import BusConfig
from ..priority import Priority
from ..task import SendOptions
from .common import bus_config, bus_options, run


def _json(value: str, what: str, kind: type) -> Any:
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint=what) from None
    if not isinstance(parsed, kind):
        raise click.BadParameter(f"must be a JSON {kind.__name__}", param_hint=what)
    return parsed


@click.command("send")
@click.argument("task")
@click.option("--args", "args_json", default="[]", help="Positional arguments, a JSON array.")
@click.option("--kwargs", "kwargs_json", default="{}", help="Keyword arguments, a JSON object.")
@click.option(
    "--priority",
    type=click.Choice([p.label for p in Priority]),
    default="normal",
    show_default=True,
)
@click.option("--countdown", type=float, default=None, help="Run after this many seconds.")
@bus_options
def send_command(
    task: str,
    args_json: str,
    kwargs_json: str,
    priority: str,
    countdown: float | None,
    redis_url: str | None,
    prefix: str,
) -> None:
    """Enqueue TASK (ENGINE.TASK) and print its message id."""
    engine, dot, name = task.partition(".")
    if not dot or not name:
        raise click.BadParameter("give ENGINE.TASK, e.g. risk.validate_trade", param_hint="TASK")
    args = _json(args_json, "--args", list)
    kwargs = _json(kwargs_json, "--kwargs", dict)
    options = SendOptions(priority=Priority.parse(priority), countdown=countdown)
    config = bus_config(redis_url, prefix)

    async def go(config: BusConfig) -> str:
        async with await Client.connect(config, source="cli") as client:
            return await client.send_by_name(engine, name, args, kwargs, options)

    click.echo(run(go(config)))
