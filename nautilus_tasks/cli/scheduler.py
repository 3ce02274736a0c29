"""``nautilus-tasks scheduler`` (run the periodic schedules) and ``schedules`` (list them)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import click
from rich.console import Console
from rich.table import Table

from ..broker.base import ScheduleState
from ..client import Client
from ..engine import Engine
from ..errors import NautilusTasksError
from ..periodic import Schedule
from .common import bus_config, bus_options, load_engines, run
from .worker import _buses


def _engines_with_schedules(app: str) -> list[Engine]:
    engines = [e for e in load_engines(app) if e.schedules]
    if not engines:
        raise click.ClickException(f"{app}: no periodic schedule declared")
    return engines


@click.command("scheduler")
@click.argument("app")
@click.option("--bus", "extra_buses", multiple=True, metavar="NAME=URL", help="Another bus.")
@bus_options
def scheduler_command(
    app: str, extra_buses: tuple[str, ...], redis_url: str | None, prefix: str
) -> None:
    """Enqueue the periodic tasks of APP (module, or module:engine) until SIGTERM.

    Run as many as you like: each tick is enqueued once whatever their number.
    """
    engines = _engines_with_schedules(app)
    buses = _buses(bus_config(redis_url, prefix), extra_buses, ())
    try:
        from ..scheduler import run_scheduler
    except ImportError as exc:
        raise click.ClickException(
            f"the scheduler needs APScheduler 3: pip install 'nautilus-tasks[scheduler]' ({exc})"
        ) from exc
    root = logging.getLogger().getEffectiveLevel()
    logging.getLogger("apscheduler").setLevel(max(root, logging.WARNING))
    try:
        run_scheduler(engines, buses)
    except NautilusTasksError as exc:
        raise click.ClickException(str(exc)) from exc


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return _format(datetime.fromtimestamp(ms / 1000, UTC))


def _format(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _next_fire(schedule: Schedule) -> str:
    try:
        from ..scheduler import ticks
    except ImportError:
        return "(needs apscheduler)"

    moment = ticks.next_after(ticks.make_trigger(schedule), datetime.now(UTC))
    return "-" if moment is None else _format(moment)


async def _states(
    app: str, extra_buses: tuple[str, ...], redis_url: str | None, prefix: str
) -> list[tuple[Schedule, ScheduleState]]:
    engines = _engines_with_schedules(app)
    buses = _buses(bus_config(redis_url, prefix), extra_buses, ())
    rows = []
    async with await Client.connect(buses, source="cli") as client:
        for engine in engines:
            states = await client.link_of(engine).broker.schedule_states(engine.name)
            for schedule in engine.schedules.values():
                rows.append((schedule, states.get(schedule.id, ScheduleState())))
    return rows


@click.command("schedules")
@click.argument("app")
@click.option("--bus", "extra_buses", multiple=True, metavar="NAME=URL", help="Another bus.")
@bus_options
def schedules_command(
    app: str, extra_buses: tuple[str, ...], redis_url: str | None, prefix: str
) -> None:
    """List the schedules of APP: next fire time and last enqueue (times in UTC)."""
    rows = run(_states(app, extra_buses, redis_url, prefix))
    table = Table(title=f"schedules of {app} (UTC)")
    for column in ("schedule", "task", "when", "misfire", "next fire", "last tick"):
        table.add_column(column, no_wrap=True)
    for column in ("last enqueue", "message"):
        table.add_column(column, no_wrap=True)
    for column in ("enqueued", "refused"):
        table.add_column(column, justify="right", no_wrap=True)
    for schedule, state in rows:
        table.add_row(
            schedule.id,
            schedule.task.qualified_name,
            schedule.describe(),
            schedule.misfire,
            _next_fire(schedule),
            _when(state.fire_ms),
            _when(state.enqueued_at_ms),
            state.message_id or "-",
            str(state.enqueued),
            str(state.refused),
        )
    Console(width=240).print(table)
