"""Request/response: one reply reader per client resolves futures by correlation id."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from typing import Any

from .aio import cancel_all
from .broker.base import Broker
from .errors import BusError, MalformedMessage, RequestTimeout, TaskFailed
from .message import Kind, decode

log = logging.getLogger("nautilus_tasks.requests")

REPLY_TTL_MS = 60_000
"""A reply stream lives this long after its client last refreshed it."""


def client_id() -> str:
    """A unique id for one client (the name of its reply stream)."""
    return f"{os.getpid()}-{os.urandom(6).hex()}"


class ReplyReader:
    """Reads this client's reply stream with a blocking XREAD and resolves futures.

    A reply whose request already timed out (or was answered: a duplicate after a
    redelivery) finds no future and is dropped, counted as ``late``.
    """

    def __init__(self, broker: Broker, client: str, block_ms: int = 1000) -> None:
        self.broker = broker
        self.client_id = client
        self.block_ms = block_ms
        self.late = 0
        self._futures: dict[str, asyncio.Future[Any]] = {}
        self._task: asyncio.Task[None] | None = None
        self._last_touch = 0.0
        self._closing = False

    def expect(self, correlation_id: str) -> asyncio.Future[Any]:
        """A future for the reply to ``correlation_id``; starts the reader if needed."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"nt-replies-{self.client_id}")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._futures[correlation_id] = future
        return future

    def forget(self, correlation_id: str) -> None:
        self._futures.pop(correlation_id, None)

    async def wait(self, correlation_id: str, future: asyncio.Future[Any], timeout: float) -> Any:
        """The reply body, or RequestTimeout (a later reply is then dropped)."""
        try:
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            raise RequestTimeout(f"no reply to {correlation_id} within {timeout}s") from None
        finally:
            self.forget(correlation_id)

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            await cancel_all([self._task])
        for future in self._futures.values():
            if not future.done():
                future.cancel()
        self._futures.clear()

    async def _run(self) -> None:
        after, failures = "0-0", 0  # our own stream: anything in it is ours
        while not self._closing:  # a flag too: redis-py can swallow a cancellation
            try:
                got = await self.broker.read_replies(self.client_id, after, self.block_ms)
                if got:
                    after = got[-1][0]
                    self._resolve(got)
                await self._housekeep([i for i, _ in got])
                failures = 0
            except BusError as exc:
                failures += 1
                delay = random.uniform(0, min(5.0, 0.05 * 2**failures))
                log.warning("reading replies failed (%s); retrying in %.2fs", exc, delay)
                await asyncio.sleep(delay)

    async def _housekeep(self, ids: list[str]) -> None:
        """Delete what was read; refresh the stream's TTL every third of it."""
        now = time.monotonic()
        if ids or now - self._last_touch > REPLY_TTL_MS / 3000:
            await self.broker.delete_replies(self.client_id, ids, REPLY_TTL_MS)
            self._last_touch = now

    def _resolve(self, entries: list[tuple[str, dict[bytes, bytes]]]) -> None:
        for entry_id, fields in entries:
            try:
                envelope = decode(fields)
            except MalformedMessage as exc:
                log.error("malformed reply %s dropped: %s", entry_id, exc)
                continue
            future = self._futures.pop(envelope.correlation_id or "", None)
            if envelope.kind is not Kind.REPLY or future is None or future.done():
                self.late += 1
                log.debug("late or duplicate reply to %s dropped", envelope.correlation_id)
                continue
            future.set_result(envelope.body)


def outcome(task: str, body: Any) -> Any:
    """The result inside a reply body, or TaskFailed with the remote details."""
    if not isinstance(body, dict) or "ok" not in body:
        raise TaskFailed(task, "MalformedReply", f"unexpected reply body {body!r:.200}")
    if body["ok"]:
        return body.get("result")
    raise TaskFailed(
        task,
        str(body.get("error_type", "")),
        str(body.get("error", "")),
        str(body.get("traceback", "")),
    )
