"""The in-memory server: fakeredis with a clock that tests can move, and our scripts' flags.

Two adjustments to fakeredis, both in the connection's fake socket, so the real
``broker/redis`` code and the real Lua scripts run unchanged:

* ``TIME`` adds the clock's offset. Every due time (countdowns, ETAs, retry backoffs) is
  judged by Redis TIME inside the scripts, so moving the offset with ``advance()`` makes
  them due without waiting. Only TIME moves: stream auto-ids, XPENDING idle times and key
  expiry keep fakeredis's real clock (docs/testing.md, difference 4).
* A script's first line ``#!lua flags=...`` (Redis 7 script flags) becomes a Lua comment
  before fakeredis compiles it: fakeredis does not parse the flags. The only flag our
  scripts use, ``allow-oom``, has no meaning on fakeredis, which has no memory limit.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from fakeredis import FakeAsyncRedis, FakeServer
from fakeredis._socket import AsyncFakeSocket
from fakeredis.aioredis import FakeAsyncRedisConnection


class Clock:
    """How far tests have moved the in-memory servers' time, in microseconds."""

    def __init__(self) -> None:
        self.offset_us = 0

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"time only moves forward, not by {seconds}s")
        self.offset_us += round(seconds * 1_000_000)


class ClockedServer(FakeServer):
    """A fakeredis server whose TIME runs ``clock.offset_us`` ahead of the wall clock."""

    def __init__(self, clock: Clock, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.clock = clock


class _ClockedSocket(AsyncFakeSocket):
    _server: ClockedServer

    def time(self) -> list[bytes]:
        seconds, micros = super().time()
        total = int(seconds) * 1_000_000 + int(micros) + self._server.clock.offset_us
        return [str(total // 1_000_000).encode(), str(total % 1_000_000).encode()]

    def eval(self, script: bytes, numkeys: int, *keys_and_args: bytes) -> Any:
        if script.startswith(b"#!"):
            script = b"--" + script  # the flags line as a comment: line numbers stay put
        return super().eval(script, numkeys, *keys_and_args)


class _ClockedConnection(FakeAsyncRedisConnection):
    async def _connect(self) -> None:
        await super()._connect()
        # fakeredis builds its socket here; give it the clocked behaviour (same layout)
        self._sock.__class__ = _ClockedSocket


def fake_redis(server: ClockedServer) -> aioredis.Redis:
    """A redis-py asyncio client on ``server``, in this process: no socket is opened."""
    client: aioredis.Redis = FakeAsyncRedis(
        server=server, connection_class=_ClockedConnection, decode_responses=False
    )
    return client
