"""``nautilus-tasks db migrate|prune``, ``history`` and ``stats``: the PostgreSQL store."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

import click
import orjson
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..store.config import DEFAULT_SCHEMA, ENV_DSN, ENV_SCHEMA, check_schema
from .common import run
from .dlq import parse_duration

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

EVENTS = (
    "received", "started", "succeeded", "failed", "retried", "dead_lettered", "replayed",
    "expired",
)  # fmt: skip


def pg_options(fn: F) -> F:
    """``--dsn`` and ``--schema``, from NT_POSTGRES_DSN / NT_POSTGRES_SCHEMA."""
    fn = click.option(
        "--schema",
        envvar=ENV_SCHEMA,
        default=DEFAULT_SCHEMA,
        show_default=True,
        help=f"Schema of the audit tables [env {ENV_SCHEMA}].",
    )(fn)
    fn = click.option(
        "--dsn", envvar=ENV_DSN, default=None, help=f"PostgreSQL DSN [env {ENV_DSN}]."
    )(fn)
    return fn


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from exc


def _with(dsn: str | None, schema: str, call: Callable[[Any], Awaitable[T]]) -> T:
    from ..errors import NautilusTasksError
    from ..store.connection import connect

    if not dsn:
        raise click.UsageError(f"give --dsn or set {ENV_DSN}")
    try:
        check_schema(schema)
    except NautilusTasksError as exc:
        raise click.BadParameter(str(exc), param_hint="--schema") from exc

    async def once() -> T:
        try:
            conn = await connect(dsn)
        except (OSError, TimeoutError) as exc:
            raise click.ClickException(f"cannot connect to PostgreSQL: {exc}") from exc
        try:
            return await call(conn)
        finally:
            await conn.close()

    try:
        return run(once())
    except click.ClickException:
        raise
    except Exception as exc:
        if type(exc).__module__.startswith("asyncpg"):
            raise click.ClickException(f"PostgreSQL: {type(exc).__name__}: {exc}") from exc
        raise


@click.group("db")
def db_group() -> None:
    """Create and prune the PostgreSQL audit and result tables."""


@db_group.command("migrate")
@pg_options
def migrate_command(dsn: str | None, schema: str) -> None:
    """Create or upgrade the schema (idempotent)."""
    from ..store import schema as ddl

    async def call(conn: Any) -> tuple[list[int], int, bool]:
        applied = await ddl.migrate(conn, schema)
        return applied, await ddl.version(conn, schema), await ddl.is_hypertable(conn, schema)

    applied, version, hyper = _with(dsn, schema, call)
    kind = "hypertable" if hyper else "plain table"
    if applied:
        click.echo(f"schema {schema} migrated to version {version} (audit: {kind})")
    else:
        click.echo(f"schema {schema} is up to date at version {version} (audit: {kind})")


@db_group.command("prune")
@click.option("--older-than", required=True, callback=_duration, help="Age, like 30d or 12h.")
@pg_options
def prune_command(older_than: float, dsn: str | None, schema: str) -> None:
    """Delete audit rows and durable results older than --older-than."""
    from ..store import schema as ddl

    audit, results = _with(dsn, schema, lambda c: ddl.prune(c, schema, older_than))
    click.echo(f"pruned {audit} audit rows and {results} results")


def _ms(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


@click.command("history")
@click.option("--task", default=None, help="Task name, or ENGINE.TASK.")
@click.option("--status", type=click.Choice(EVENTS), default=None, help="Only this event.")
@click.option(
    "--since", default="1d", show_default=True, callback=_duration, help="Window, like 1h, 7d."
)
@click.option("--message", "message_id", default=None, help="One message id (any age).")
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@pg_options
def history_command(
    task: str | None,
    status: str | None,
    since: float | None,
    message_id: str | None,
    limit: int,
    as_json: bool,
    dsn: str | None,
    schema: str,
) -> None:
    """Lifecycle events from the audit, newest first."""
    from ..store.queries import history

    if (
        message_id is not None
        and click.get_current_context().get_parameter_source("since")
        is click.core.ParameterSource.DEFAULT
    ):
        since = None  # a message's whole lifecycle, however old

    rows = _with(
        dsn,
        schema,
        lambda c: history(
            c, schema, task=task, status=status, since=since, message_id=message_id, limit=limit
        ),
    )
    if as_json:
        for row in rows:
            click.echo(orjson.dumps(row).decode())
        return
    table = Table(box=box.SIMPLE)
    for column in ("time (UTC)", "event", "task", "message", "attempt", "worker", "ms", "error"):
        table.add_column(column, overflow="fold")
    for r in rows:
        error = f"{r['error_type']}: {r['error']}" if r["error_type"] else (r["reason"] or "")
        table.add_row(
            _ms(r["event_at"]), r["event"], f"{r['engine']}.{r['task']}", r["message_id"],
            str(r["attempt"]), r["worker"] or "-", _num(r["duration_ms"]), escape(error),
        )  # fmt: skip
    Console(width=200).print(table)
    click.echo(f"{len(rows)} events")


@click.command("stats")
@click.option("--since", default="1h", callback=_duration, show_default=True, help="Window.")
@click.option("--engine", default=None, help="Only this engine.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per task.")
@pg_options
def stats_command(
    since: float, engine: str | None, as_json: bool, dsn: str | None, schema: str
) -> None:
    """Per task over the window: runs, failures, failure rate, duration p50/p95/p99 (ms)."""
    from ..store.queries import stats

    rows = _with(dsn, schema, lambda c: stats(c, schema, since=since, engine=engine))
    if as_json:
        for s in rows:
            click.echo(orjson.dumps(s).decode())
        return
    table = Table(box=box.SIMPLE)
    for column in ("task", "runs", "failed", "failure %", "dead", "p50 ms", "p95 ms", "p99 ms"):
        table.add_column(column, justify="left" if column == "task" else "right")
    for s in rows:
        table.add_row(
            f"{s.engine}.{s.task}", str(s.runs), str(s.failed), f"{100 * s.failure_rate:.2f}",
            str(s.dead_lettered), _num(s.p50), _num(s.p95), _num(s.p99),
        )  # fmt: skip
    Console(width=200).print(table)
