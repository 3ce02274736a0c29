"""Percentiles of the accept times ``bench/trace/sitecustomize.py`` wrote, per worker
process in the order they started (the critical scenario starts the idle worker first)."""

from __future__ import annotations

import sys
from pathlib import Path


def main(directory: Path) -> None:
    files = sorted(directory.glob("accept.*.txt"), key=lambda p: p.stat().st_mtime)
    for path in files:
        values = sorted(float(line) for line in path.read_text().split())
        if not values:
            continue

        def q(p: float, v: list[float] = values) -> float:
            return v[min(len(v) - 1, int(len(v) * p))]

        print(
            f"{path.name}: {len(values)} critical deliveries, send to accept ms:"
            f" p50 {q(0.5):.3f} p90 {q(0.9):.3f} p99 {q(0.99):.3f} max {values[-1]:.3f}"
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
