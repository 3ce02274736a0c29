"""``nautilus-tasks server``: the embedded Valkey in the foreground."""

from __future__ import annotations

import signal
import tempfile
import threading
from pathlib import Path

import click

from ..embedded import EmbeddedServer, free_port
from ..errors import EmbeddedServerError


@click.command("server")
@click.option("--port", type=int, default=None, help="Port (default: a free one).")
@click.option(
    "--dir",
    "data_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Data directory (default: a new temporary one).",
)
@click.option("--appendonly/--no-appendonly", default=True, show_default=True)
def server_command(port: int | None, data_dir: Path | None, appendonly: bool) -> None:
    """Run an embedded Valkey until Ctrl-C, printing its URL."""
    directory = data_dir or Path(tempfile.mkdtemp(prefix="nautilus-valkey-"))
    directory.mkdir(parents=True, exist_ok=True)
    server = EmbeddedServer(directory, port or free_port(), appendonly=appendonly)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    try:
        url = server.start()
    except EmbeddedServerError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(url, nl=True)
    click.echo(f"data in {directory}; Ctrl-C to stop", err=True)
    try:
        done.wait()
    finally:
        server.stop()
