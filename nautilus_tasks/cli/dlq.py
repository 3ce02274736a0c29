"""``nautilus-tasks dlq``: list, show, replay and purge dead letters."""

from __future__ import annotations

import re
import socket
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import click
import orjson
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..client import Client
from ..config import BusConfig
from ..dlq import DeadLetter, DeadLetters
from .common import bus_config, bus_options, run

T = TypeVar("T")

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")


def parse_duration(text: str) -> float:
    """Seconds in ``30s``, ``15m``, ``2h``, ``7d``, ``1w`` or a bare number of seconds."""
    match = _DURATION.match(text.lower())
    if match is None:
        raise ValueError(f"{text!r} is not a duration like 30s, 15m, 2h or 7d")
    return float(match[1]) * _UNITS[match[2] or "s"]


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from exc


async def _with(config: BusConfig, call: Callable[[DeadLetters], Awaitable[T]]) -> T:
    async with await Client.connect(config) as client:
        return await call(DeadLetters(client))


def _when(ms: int, year: bool = True) -> str:
    fmt = "%Y-%m-%d %H:%M:%S" if year else "%m-%d %H:%M:%S"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime(fmt)


def as_dict(letter: DeadLetter, traceback: bool = True) -> dict[str, Any]:
    """A JSON-ready view of one dead letter (byte values decoded, invalid UTF-8 escaped)."""
    data: dict[str, Any] = {
        "id": letter.id,
        "engine": letter.engine,
        "reason": letter.reason,
        "task": letter.task,
        "message_id": letter.message_id,
        "error_type": letter.error_type,
        "error": letter.error,
        "attempts": letter.attempts,
        "deliveries": letter.deliveries,
        "dead_at": letter.dead_at,
        "origin": letter.origin,
        "origin_id": letter.origin_id,
        "consumer": letter.consumer,
        "envelope": letter.envelope,
        "original": {k: v.decode("utf-8", "backslashreplace") for k, v in letter.original.items()},
    }
    if traceback:
        data["traceback"] = letter.traceback
    return data


def _table(engine: str, letters: list[DeadLetter], width: int) -> Table:
    """One line per dead letter, the error cut to what fits in ``width`` columns."""
    rows = [
        (
            d.id,
            _when(d.dead_at, year=False),
            d.reason,
            d.task or "-",
            str(d.attempts),
            (f"{d.error_type}: {d.error}" if d.error_type else d.error or "-").splitlines()[0],
        )
        for d in letters
    ]
    heads = ("id", "died (UTC)", "reason", "task", "runs", "error")
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(heads)]
    room = max(8, width - sum(widths[:-1]) - 2 * (len(heads) - 1) - 1)
    table = Table(
        title=f"dead letters of {engine}",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        padding=(0, 1, 0, 0),
    )
    for head in heads:
        table.add_column(
            head,
            justify="right" if head == "runs" else "left",
            no_wrap=True,
            overflow="ellipsis",
            max_width=room if head == "error" else None,
        )
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))
    return table


def _echo_json(value: Any) -> None:
    click.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


@click.group("dlq")
def dlq_group() -> None:
    """Dead letters: messages an engine could not process, kept with their reason."""


@dlq_group.command("list")
@click.argument("engine")
@click.option("--reason", default=None, help="Only this reason (failed, invalid, poison...).")
@click.option("--task", default=None, help="Only this task (its name inside ENGINE).")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--oldest-first", is_flag=True, help="Oldest first instead of newest first.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@bus_options
def list_command(
    engine: str,
    reason: str | None,
    task: str | None,
    limit: int,
    oldest_first: bool,
    as_json: bool,
    redis_url: str | None,
    prefix: str,
) -> None:
    """List the dead letters of ENGINE, newest first."""
    letters = run(
        _with(
            bus_config(redis_url, prefix),
            lambda dl: dl.list(engine, reason, task, limit, newest_first=not oldest_first),
        )
    )
    if as_json:
        _echo_json([as_dict(d, traceback=False) for d in letters])
        return
    if not letters:
        click.echo(f"no dead letters in {engine}" + (" match" if reason or task else ""))
        return
    console = Console()
    console.print(_table(engine, letters, console.width))


@dlq_group.command("show")
@click.argument("dead_id", metavar="ID")
@click.option("--engine", default=None, help="The engine (default: search every engine).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@bus_options
def show_command(
    dead_id: str, engine: str | None, as_json: bool, redis_url: str | None, prefix: str
) -> None:
    """Show one dead letter: every field, the original envelope and the traceback."""
    letter = run(_with(bus_config(redis_url, prefix), lambda dl: dl.get(dead_id, engine)))
    if letter is None:
        where = f"engine {engine!r}" if engine else "any engine"
        raise click.ClickException(f"no dead letter {dead_id} in {where}")
    data = as_dict(letter)
    if as_json:
        _echo_json(data)
        return
    _print_letter(Console(), data)


def _print_letter(console: Console, data: dict[str, Any]) -> None:
    """The text view of ``show``: one field a line, then the envelope and the traceback."""
    tb = data.pop("traceback")
    envelope = data.pop("envelope")
    original = data.pop("original")
    data["dead_at"] = f"{data['dead_at']} ({_when(data['dead_at'])} UTC)"
    for key, value in data.items():
        console.print(f"[bold]{key}[/bold]: {escape(str(value))}", highlight=False)
    if envelope is not None:
        console.print("[bold]envelope[/bold]:")
        console.print_json(orjson.dumps(envelope).decode())
    others = {k: v for k, v in original.items() if envelope is None or k != "envelope"}
    if others:
        console.print("[bold]original fields[/bold]:")
        for key, value in others.items():
            console.print(f"  {escape(key)}: {escape(value)}", highlight=False)
    if tb:
        console.print("[bold]traceback[/bold]:")
        console.print(escape(tb), highlight=False)


@dlq_group.command("replay")
@click.argument("engine")
@click.argument("ids", nargs=-1, metavar="[ID]...")
@click.option("--all", "all_", is_flag=True, help="Replay every dead letter of ENGINE.")
@click.option("--task", default=None, help="Replay the dead letters of this task.")
@bus_options
def replay_command(
    engine: str,
    ids: tuple[str, ...],
    all_: bool,
    task: str | None,
    redis_url: str | None,
    prefix: str,
) -> None:
    """Put dead letters back in their tier streams, with attempts reset and the same
    message id: ID..., --all, or --task T. Prints how many were replayed."""
    if sum((bool(ids), all_, task is not None)) != 1:
        raise click.UsageError("give dead-letter IDs, --all or --task, exactly one of them")
    letters: list[DeadLetter] = []
    count = run(
        _with(
            bus_config(redis_url, prefix),
            lambda dl: dl.replay(
                engine, ids=list(ids) or None, all=all_, task=task, on_replayed=letters.append
            ),
        )
    )
    click.echo(f"replayed {count}")
    _audit_replays(engine, letters)


def _audit_replays(engine: str, letters: list[DeadLetter]) -> None:
    """With NT_POSTGRES_DSN set: a ``replayed`` audit event per replayed message."""
    from ..store import StoreConfig
    from ..store.queries import record_replays

    config = StoreConfig.from_env()
    if config is None or not letters:
        return
    items = [
        (dl.message_id, dl.task, str((dl.envelope or {}).get("priority") or "normal"))
        for dl in letters
    ]
    try:
        written = run(record_replays(config, engine, items, f"dlq-replay@{socket.gethostname()}"))
    except Exception as exc:  # the replay itself is done; say the audit lacks it
        click.echo(f"warning: replays not recorded in the audit: {exc}", err=True)
        return
    click.echo(f"recorded {written} replays in the audit")


@dlq_group.command("purge")
@click.argument("engine")
@click.argument("ids", nargs=-1, metavar="[ID]...")
@click.option("--older-than", default=None, callback=_duration, help="Age, like 30s, 15m, 2h, 7d.")
@bus_options
def purge_command(
    engine: str, ids: tuple[str, ...], older_than: float | None, redis_url: str | None, prefix: str
) -> None:
    """Delete dead letters for good: ID... or --older-than D. Prints how many."""
    if bool(ids) == (older_than is not None):
        raise click.UsageError("give dead-letter IDs or --older-than, exactly one of them")
    count = run(
        _with(
            bus_config(redis_url, prefix),
            lambda dl: dl.purge(engine, ids=list(ids) or None, older_than=older_than),
        )
    )
    click.echo(f"purged {count}")
