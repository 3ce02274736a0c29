"""The plugin's own behaviour: it loads without the testing extra, and says what is missing."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path


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
