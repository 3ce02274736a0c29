"""The plugin's own behaviour: it loads without the testing extra, says what is missing, runs
a test on both backends (or those chosen), and gives ``nt_server`` tests their own prefix on
one server per session, cleaned up when each bus closes.

The pytester runs are in-process: pytest loads the plugin there through its installed
``pytest11`` entry point, as it does for a user (the runs add no ``-p``).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from nautilus_tasks.embedded import EmbeddedServer

pytest_plugins = ["pytester"]

ASYNC_AUTO = ("-o", "asyncio_mode=auto", "-o", "asyncio_default_fixture_loop_scope=function")

ENGINE = """
import pytest
import redis.asyncio as aioredis

from nautilus_tasks import Engine

echo = Engine("echo")
pytestmark = pytest.mark.nt_engines(echo)


@echo.task
async def shout(text: str) -> str:
    return text.upper()


async def keys(url, prefix):
    conn = aioredis.Redis.from_url(url)
    try:
        return [k async for k in conn.scan_iter(match=f"{prefix}:*")]
    finally:
        await conn.aclose()
"""

BOTH = ENGINE + """

async def test_on_each(nt_any_bus, nt_backend):
    assert nt_any_bus.backend == nt_backend
    assert await shout.request("hi", timeout=10) == "HI"


@pytest.mark.nt_backends("server")
async def test_on_the_server_only(nt_any_bus):
    assert nt_any_bus.backend == "server"
"""


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_the_plugin_loads_without_fakeredis(tmp_path: Path) -> None:
    """pytest loads the entry point wherever nautilus-tasks is installed, extra or not."""
    done = _python(
        """
        import asyncio, sys
        sys.modules["fakeredis"] = None  # as if the testing extra were not installed
        import nautilus_tasks.testing.plugin
        from nautilus_tasks import ConfigurationError, Engine
        from nautilus_tasks.testing import TestBus

        async def main():
            try:
                async with TestBus(Engine("x")):
                    pass
            except ConfigurationError as exc:
                print("refused:", exc)

        asyncio.run(main())
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "refused: the in-memory test bus needs fakeredis" in done.stdout
    assert "nautilus-tasks[testing]" in done.stdout


def test_a_test_without_engines_is_told_how_to_give_them(tmp_path: Path) -> None:
    (tmp_path / "test_user.py").write_text(
        "def test_it(nt_sync_bus):\n    pass\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout
    assert "@pytest.mark.nt_engines(...)" in done.stdout


def test_the_docs_example_is_the_tested_one() -> None:
    """docs/testing.md's complete example is tests/testing/test_risk_example.py, verbatim
    (after that file's docstring), so the example in the docs is known to pass."""
    root = Path(__file__).resolve().parents[2]
    docs = (root / "docs" / "testing.md").read_text()
    section = docs.split("## A complete example", 1)[1]
    example = section.split("```python\n", 1)[1].split("```", 1)[0]
    tested = (Path(__file__).parent / "test_risk_example.py").read_text()
    body = tested.split('"""', 2)[2].lstrip("\n")
    assert example == body


@pytest.fixture
def run_on_both(
    pytester: pytest.Pytester, nt_server_url: str, monkeypatch: pytest.MonkeyPatch
) -> Any:
    """Run BOTH with these options; its [server] cases use this session's server."""
    monkeypatch.setenv("NT_TEST_REDIS_URL", nt_server_url)
    pytester.makepyfile(test_both=BOTH)

    def run(*options: str) -> tuple[pytest.RunResult, dict[str, str]]:
        result = pytester.runpytest(*ASYNC_AUTO, "-v", *options)
        outcomes: dict[str, str] = {}
        for line in result.outlines:
            if line.startswith("test_both.py::"):
                node, outcome = line.split()[:2]
                outcomes[node.removeprefix("test_both.py::")] = outcome
        return result, outcomes

    return run


def test_a_test_runs_on_both_backends_by_default(run_on_both: Any) -> None:
    result, outcomes = run_on_both()
    result.assert_outcomes(passed=3)
    assert outcomes == {
        "test_on_each[memory]": "PASSED",
        "test_on_each[server]": "PASSED",
        "test_on_the_server_only[server]": "PASSED",  # the marker narrows to one backend
    }


def test_the_option_narrows_the_run_and_wins_over_a_marker(run_on_both: Any) -> None:
    result, outcomes = run_on_both("--nt-backends=memory", "-rs")
    result.assert_outcomes(passed=1, skipped=2)
    assert outcomes == {
        "test_on_each[memory]": "PASSED",
        "test_on_each[server]": "SKIPPED",
        "test_on_the_server_only[server]": "SKIPPED",
    }
    result.stdout.fnmatch_lines(["SKIPPED * not in --nt-backends=memory"])


@pytest.mark.parametrize("option", ["--nt-backends=bogus", "--nt-backends=memory,disk"])
def test_an_unknown_backend_is_a_usage_error(run_on_both: Any, option: str) -> None:
    result, _ = run_on_both(option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --nt-backends=*: unknown nautilus-tasks backends*"])


def test_an_unknown_backend_in_a_marker_fails_its_collection(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        ENGINE + """
@pytest.mark.nt_backends("servr")
async def test_it(nt_any_bus):
    pass
"""
    )
    result = pytester.runpytest(*ASYNC_AUTO)
    result.assert_outcomes(errors=1)
    assert "::test_it: nt_backends marker: unknown nautilus-tasks backends ['servr']" in str(
        result.stdout
    )


SERVER = ENGINE + """
seen = []


async def test_a(nt_server, nt_server_url, nt_prefix):
    assert nt_server.backend == "server"
    assert (nt_server.url, nt_server.prefix) == (nt_server_url, nt_prefix)
    await shout.send("x")
    assert await keys(nt_server_url, nt_prefix)  # the message is stored under the prefix
    seen.append((nt_server.url, nt_server.prefix))


test_b = test_a


async def test_after_both(nt_server_url):
    (url_a, prefix_a), (url_b, prefix_b) = seen
    assert url_a == url_b == nt_server_url  # one server for the session
    assert prefix_a != prefix_b  # a prefix for each test
    assert await keys(nt_server_url, prefix_a) == []  # deleted when each bus closed
    assert await keys(nt_server_url, prefix_b) == []
"""


def test_nt_server_gives_each_test_a_prefix_on_one_server_per_session(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NT_TEST_REDIS_URL", raising=False)  # the embedded server
    started: list[str] = []
    start = EmbeddedServer.start

    def counted(self: EmbeddedServer) -> None:
        start(self)
        started.append(self.url)

    monkeypatch.setattr(EmbeddedServer, "start", counted)
    pytester.makepyfile(test_server=SERVER)
    result = pytester.runpytest(*ASYNC_AUTO)
    result.assert_outcomes(passed=3)
    assert len(started) == 1  # one embedded Valkey for the three tests
