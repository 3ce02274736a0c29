"""Several worker processes: start them, restart a crashed one, forward signals."""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
import time
from collections.abc import Sequence

log = logging.getLogger("nautilus_tasks.supervisor")

RESTART_DELAY = 1.0


def supervise(argv: Sequence[str], processes: int, grace: float) -> int:
    """Run ``processes`` copies of ``argv`` until SIGTERM/SIGINT; returns an exit status.

    Children run in their own sessions, so a terminal's Ctrl-C or a process manager's
    signal to the group reaches only the supervisor, which forwards one SIGTERM (a
    graceful drain); a second signal is forwarded again, and children exit at once.
    A child that exits on its own while not stopping is restarted after a short delay.
    """
    stopping = threading.Event()
    children: list[subprocess.Popen[bytes]] = []

    def forward(signum: int, _frame: object) -> None:
        stopping.set()
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for _ in range(processes):
        children.append(subprocess.Popen(list(argv), start_new_session=True))
    log.info("supervisor: started %d worker processes %s", processes, [c.pid for c in children])
    while not stopping.is_set():
        for i, child in enumerate(children):
            code = child.poll()
            if code is not None and not stopping.is_set():
                log.error("worker process %d exited with %d; restarting", child.pid, code)
                stopping.wait(RESTART_DELAY)
                if not stopping.is_set():
                    children[i] = subprocess.Popen(list(argv), start_new_session=True)
        stopping.wait(0.2)
    deadline = time.monotonic() + grace + max(5.0, grace) + 10  # a child's worst case
    status = 0
    for child in children:
        try:
            code = child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.error("worker process %d did not stop in time; killing it", child.pid)
            child.kill()
            code = child.wait()
        status = status or (0 if code in (0, -signal.SIGTERM) else 1)
    return status
