"""A guard that makes every socket connection raise: the in-memory bus must open none."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest


class SocketOpened(AssertionError):
    """Something tried to open a network connection while sockets were forbidden."""


def _refuse(*args: Any, **kwargs: Any) -> Any:
    raise SocketOpened(f"a socket connection was attempted: {args[1:]!r} {kwargs!r}")


async def _refuse_async(*args: Any, **kwargs: Any) -> Any:
    _refuse(*args, **kwargs)


def forbid_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make connecting a socket raise SocketOpened, through every path asyncio and redis-py use."""
    monkeypatch.setattr(socket.socket, "connect", _refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", _refuse)
    monkeypatch.setattr(socket, "create_connection", _refuse)
    monkeypatch.setattr(asyncio, "open_connection", _refuse_async)
    monkeypatch.setattr(asyncio, "open_unix_connection", _refuse_async)
    loop_class = asyncio.get_event_loop_policy().new_event_loop().__class__
    for cls in {asyncio.BaseEventLoop, loop_class}:
        monkeypatch.setattr(cls, "create_connection", _refuse_async)
        monkeypatch.setattr(cls, "create_unix_connection", _refuse_async)
        monkeypatch.setattr(cls, "sock_connect", _refuse_async)
