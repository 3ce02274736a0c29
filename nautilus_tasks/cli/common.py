"""Helpers shared by the commands: app loading, bus options, running coroutines."""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import click

from ..config import BusConfig
from ..engine import Engine
from ..errors import NautilusTasksError

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def bus_options(fn: F) -> F:
    """``--redis`` and ``--prefix``, defaulting to NT_REDIS_URL / the embedded server."""
    fn = click.option(
        "--prefix",
        envvar="NT_PREFIX",
        default="nt",
        show_default=True,
        help="Key prefix on the bus [env NT_PREFIX].",
    )(fn)
    fn = click.option(
        "--redis",
        "redis_url",
        envvar="NT_REDIS_URL",
        default=None,
        help="Bus URL [env NT_REDIS_URL]; without it an embedded Valkey is started or reused.",
    )(fn)
    return fn


def bus_config(redis_url: str | None, prefix: str) -> BusConfig:
    """Resolve the bus: an explicit URL, or the per-user embedded server."""
    from ..embedded import resolve_url

    try:
        return BusConfig.from_url(resolve_url(redis_url), prefix=prefix)
    except NautilusTasksError as exc:
        raise click.ClickException(str(exc)) from exc


def load_engine(spec: str) -> Engine:
    """Import ``module:attribute`` (the current directory is importable, as with Celery)."""
    module_name, _, attr = spec.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise click.ClickException(f"cannot import {module_name!r}: {exc}") from exc
    if not attr:
        engines = [v for v in vars(module).values() if isinstance(v, Engine)]
        if len(engines) != 1:
            raise click.ClickException(f"{module_name} holds {len(engines)} engines; name one")
        return engines[0]
    engine = getattr(module, attr, None)
    if not isinstance(engine, Engine):
        raise click.ClickException(f"{spec} is not an Engine")
    return engine


def load_engines(spec: str) -> list[Engine]:
    """``module:engine`` (that engine), or ``module`` (every engine it holds, at least one)."""
    if ":" in spec:
        return [load_engine(spec)]
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(spec)
    except ImportError as exc:
        raise click.ClickException(f"cannot import {spec!r}: {exc}") from exc
    engines = [v for v in vars(module).values() if isinstance(v, Engine)]
    if not engines:
        raise click.ClickException(f"{spec} holds no Engine")
    return engines


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine; framework errors become a clean CLI error."""
    try:
        return asyncio.run(coro)
    except NautilusTasksError as exc:
        raise click.ClickException(str(exc)) from exc
