"""One venv per system under ``bench/peers/.venvs/<name>``, installed from PyPI with pins."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from .systems import System

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
VENVS = HERE / ".venvs"
_VERSIONS = (
    "import importlib.metadata as m, json, sys\n"
    "out = {}\n"
    "for name in sys.argv[1:]:\n"
    "    try:\n"
    "        out[name] = m.version(name)\n"
    "    except m.PackageNotFoundError:\n"
    "        out[name] = None\n"
    "print(json.dumps(out))\n"
)


def venv_dir(system: System) -> Path:
    return VENVS / (system.venv or system.name)


def bin_path(system: System, script: str) -> Path:
    return venv_dir(system) / "bin" / script


def requirements(system: System) -> list[str]:
    """The pip arguments for the system (the checkout replaces ``{repo}``)."""
    args: list[str] = []
    for req in system.requirements:
        args += req.format(repo=REPO).split(" ", 1)
    return args


def is_ready(system: System) -> bool:
    """Whether the venv exists with exactly the current requirements installed."""
    marker = venv_dir(system) / ".installed"
    return marker.exists() and marker.read_text().strip() == " ".join(requirements(system))


def ensure(system: System, *, force: bool = False, log: Callable[[str], None] = print) -> None:
    """Create the venv and install the pinned requirements, unless already done."""
    if is_ready(system) and not force:
        return
    path = venv_dir(system)
    log(f"setting up {path} ...")
    if not (path / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    pip = [str(path / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    for extra in (["--upgrade", "pip"], requirements(system)):
        done = subprocess.run([*pip, *extra], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"pip install {' '.join(extra)} failed:\n{done.stderr[-3000:]}")
    (path / ".installed").write_text(" ".join(requirements(system)) + "\n")


def versions(system: System) -> dict[str, str | None]:
    """The installed versions of the system's recorded packages and of its Python."""
    python = str(bin_path(system, "python"))
    out = subprocess.run(
        [python, "-c", _VERSIONS, *system.packages],
        capture_output=True,
        text=True,
        check=True,
    )
    found: dict[str, str | None] = json.loads(out.stdout)
    return found
