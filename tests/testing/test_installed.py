"""Acceptance: the plugin works when installed, in a user project outside this repository.

A project in a temporary directory (its own pyproject.toml, an engine module and a test
file) gets a fresh venv, into which pip installs ``nautilus-tasks[testing]`` from this
checkout; then its own pytest runs, in pytest-asyncio's strict mode and in auto mode.
pytest finds the plugin through the installed ``pytest11`` entry point: this repository's
conftest and sources are not on that venv's path (the user test checks it).

To stay fast and offline, the fresh venv reuses the dependencies already installed here: a
``.pth`` file points at a directory of links to this venv's packages, leaving out the
editable nautilus-tasks; pip then finds every requirement satisfied (``--no-index``) and
builds and installs only nautilus-tasks itself (``--no-build-isolation``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

pytestmark = pytest.mark.installed

REPO = Path(__file__).resolve().parents[2]

PYPROJECT = """\
[project]
name = "orders-service"
version = "0.1.0"
requires-python = ">=3.11"
dependencies = ["nautilus-tasks[testing]"]

[tool.pytest.ini_options]
pythonpath = ["."]
"""

ENGINE = '''\
from nautilus_tasks import Engine, Priority

orders = Engine("orders")


@orders.task(priority=Priority.HIGH)
async def total(qty: int, price: float) -> float:
    return qty * price


@orders.task(retries=0)
async def refuse(reason: str) -> None:
    raise ValueError(reason)
'''

TESTS = '''\
import os

import pytest

from orders_engine import orders, refuse, total

pytestmark = pytest.mark.nt_engines(orders)


def test_the_plugin_is_the_installed_one(request):
    plugin = request.config.pluginmanager.get_plugin("nautilus_tasks")  # the entry point
    assert plugin is not None
    assert plugin.__file__.startswith(os.environ["NT_USER_VENV"]), plugin.__file__


@pytest.mark.asyncio
async def test_a_task_runs_on_the_in_memory_bus(nt_bus):
    await total.send(3, 2.5)
    await nt_bus.drain()
    assert nt_bus.results(total) == [7.5]
    assert await total.request(2, 2.0, timeout=5) == 4.0


@pytest.mark.asyncio
async def test_a_handler_error_surfaces(nt_bus):
    await refuse.send("out of stock")
    with pytest.raises(ValueError, match="out of stock"):
        await nt_bus.drain()


@pytest.mark.asyncio
async def test_on_both_backends(nt_any_bus):
    await total.send(1, 1.0)
    await nt_any_bus.drain()
    assert nt_any_bus.results(total) == [1.0]


def test_a_plain_def_test(nt_sync_bus):
    assert nt_sync_bus.request(total, 5, 2.0, timeout=5) == 10.0
'''


def _links_to_dependencies(target: Path) -> Path:
    """A directory of links to this venv's packages, without nautilus-tasks itself."""
    target.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        name = entry.name.lower()
        if "nautilus_tasks" in name or name.startswith("__editable__") or name.endswith(".pth"):
            continue
        (target / entry.name).symlink_to(entry)
    return target


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{args} failed ({done.returncode}):\n{output}"
    return output


def test_a_user_project_installs_the_package_and_its_pytest_passes(tmp_path: Path) -> None:
    source = tmp_path / "checkout"
    source.mkdir()
    shutil.copy(REPO / "pyproject.toml", source)
    shutil.copy(REPO / "README.md", source)
    shutil.copytree(
        REPO / "nautilus_tasks",
        source / "nautilus_tasks",
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
    )
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PYTHON"))}
    env["NT_USER_VENV"] = str(venv)
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, env)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    deps = _links_to_dependencies(tmp_path / "deps")
    (Path(purelib) / "_reused_dependencies.pth").write_text(f"{deps}\n")
    _run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
         "--no-index", "--no-build-isolation", "--no-cache-dir", f"{source}[testing]"],
        tmp_path, env,
    )  # fmt: skip

    project = tmp_path / "orders-service"
    (project / "tests").mkdir(parents=True)
    (project / "pyproject.toml").write_text(PYPROJECT)
    (project / "orders_engine.py").write_text(ENGINE)
    (project / "tests" / "test_orders.py").write_text(TESTS)
    for mode in ("strict", "auto"):
        output = _run(
            [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider",
             "-o", f"asyncio_mode={mode}", "-o", "asyncio_default_fixture_loop_scope=function"],
            project, env,
        )  # fmt: skip
        summary = output.strip().splitlines()[-1]
        assert re.match(r"6 passed(,| in )", summary), output  # exactly 6, nothing else
