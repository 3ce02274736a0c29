"""Worker processes of the bench, started the way a user starts them, and what the
kernel says about them: CPU time (user + system, every thread) and resident memory."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from ..errors import NautilusTasksError

log = logging.getLogger("nautilus_tasks.bench")

APP = "nautilus_tasks.bench.app"
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (/proc; None elsewhere)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


class WorkerProcess:
    """``python -m nautilus_tasks worker nautilus_tasks.bench.app:<engine>``.

    The child inherits this process's environment (so ``NT_POSTGRES_DSN`` and the
    like reach it), plus ``env``.
    """

    def __init__(
        self,
        engine_attr: str,
        url: str,
        prefix: str,
        *,
        concurrency: int,
        env: Mapping[str, str],
        log_path: Path,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.engine_attr = engine_attr
        self.log_path = log_path
        self.argv = [
            sys.executable, "-m", "nautilus_tasks", "--log-level", "WARNING", "worker",
            f"{APP}:{engine_attr}", "--redis", url, "--prefix", prefix,
            "-c", str(concurrency), "--grace", "10", *extra_args,
        ]  # fmt: skip
        self.env = {**os.environ, **env}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise NautilusTasksError("bench worker process not started")
        return self.proc.pid

    def start(self) -> None:
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C of the bench does not hit it twice
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cpu_seconds(self) -> float | None:
        """User + system CPU time so far (the process's rusage, read from /proc)."""
        return cpu_seconds(self.pid)

    def rss_mb(self) -> float | None:
        """Resident set size now, in MiB."""
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            return None
        return None

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait for the graceful exit; SIGKILL after ``timeout``."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("bench worker %d did not stop in %.0fs; killing it", proc.pid, timeout)
                proc.kill()
                proc.wait()
        return proc.returncode

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def total_cpu(procs: list[WorkerProcess]) -> float | None:
    """Summed CPU seconds of ``procs``, None when the platform has no /proc."""
    values = [p.cpu_seconds() for p in procs]
    if any(v is None for v in values):
        return None
    return sum(v for v in values if v is not None)
