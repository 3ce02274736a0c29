"""AutoPipeline: the Redis commands of concurrent coroutines, sent in one round trip.

Every command issued through the handle is queued when it is *called* (the returned future
is already in the queue before it is awaited). On the next turn of the event loop the queue
is sent as one non-transactional pipeline on one connection of the bus's pool, and each
caller's future gets its own reply. Commands issued while a batch is in flight wait for it
and go out together in the next batch, so batches grow with the load and a lone caller pays
one loop turn of added latency. One batch is in flight at a time, so the commands of one
caller reach the server in the order they were called.

Errors: an error reply (WRONGTYPE...) fails only its own command's future, with the
framework's mapping (BusError; BusFull for out of memory). A connection error or timeout
fails every command of the batch with BusUnavailable (the commands may or may not have run);
the next batch takes a fresh connection. A caller cancelled before its batch is sent is left
out of it; one cancelled later does not disturb the others.

Keys are sent as given: no prefix is applied (these are the user's own keys, not the
framework's schema; never write under the bus's prefix, ``nt`` by default). Transactions,
blocking commands and commands that change the connection's state are refused
(ConfigurationError): they would stall or corrupt the shared batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import redis.asyncio as aioredis
from redis import exceptions as rexc

from ...errors import BusError, BusUnavailable, ConfigurationError
from .errors import bus_error

if TYPE_CHECKING:
    from .broker import RedisBroker

log = logging.getLogger("nautilus_tasks.broker.autopipe")

T = TypeVar("T")
Key = str | bytes
Value = str | bytes | int | float

DEFAULT_MAX_BATCH = 1000
REFUSED = frozenset(
    {
        "BLPOP", "BRPOP", "BRPOPLPUSH", "BLMOVE", "BLMPOP", "BZPOPMIN", "BZPOPMAX", "BZMPOP",
        "WAIT", "WAITAOF", "MULTI", "EXEC", "DISCARD", "WATCH", "UNWATCH", "SELECT",
        "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE",
        "SUNSUBSCRIBE", "MONITOR", "QUIT", "RESET", "HELLO", "AUTH", "CLIENT",
    }
)  # fmt: skip
_BLOCK_ARG = frozenset({"XREAD", "XREADGROUP"})
_ENCODABLE = frozenset({str, bytes, int, float})


def _identity(reply: Any) -> Any:
    return reply


def _to_int(reply: Any) -> int:
    return int(reply)


def _str(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def check_command(args: tuple[Any, ...]) -> str:
    """The upper-case command name; ConfigurationError for a command that cannot be batched."""
    if not args:
        raise ConfigurationError("execute() needs a command name")
    name = _str(args[0]).upper()
    if name in REFUSED:
        raise ConfigurationError(
            f"{name} cannot go through the auto-pipeline (a blocking, transaction or"
            " connection-state command would stall or corrupt the shared batch): use a"
            " dedicated redis-py client for it"
        )
    if name in _BLOCK_ARG and any(_str(a).upper() == "BLOCK" for a in args[1:]):
        raise ConfigurationError(f"{name} ... BLOCK cannot go through the auto-pipeline")
    for arg in args:  # checked here, so that one bad argument cannot fail a whole batch
        if type(arg) not in _ENCODABLE and not isinstance(arg, (str, bytes, memoryview)):
            raise ConfigurationError(
                f"{name}: argument {arg!r} of type {type(arg).__name__} is not"
                " str, bytes, int or float"
            )
    return name


@dataclass(slots=True)
class _Pending:
    args: tuple[Any, ...]
    future: asyncio.Future[Any]
    convert: Callable[[Any], Any]


class AutoPipeline:
    """Batches the commands of concurrent coroutines into one pipelined round trip.

    Get it with ``engine.redis`` (inside handlers, or after ``client.bind(engine)``) or
    ``client.redis(bus)``. ``batches`` and ``commands`` count the round trips and the
    commands sent (``commands / batches`` is the mean batch size).
    """

    def __init__(
        self, redis: aioredis.Redis, *, name: str = "default", max_batch: int = DEFAULT_MAX_BATCH
    ) -> None:
        if max_batch < 1:
            raise ConfigurationError(f"max_batch must be >= 1, not {max_batch}")
        self._redis = redis
        self.name = name
        self.max_batch = max_batch
        self.batches = 0
        """Round trips made (pipelines sent)."""
        self.commands = 0
        """Commands sent (cancelled ones left out)."""
        self._queue: deque[_Pending] = deque()
        self._runner: asyncio.Task[None] | None = None
        self._closed = False

    @classmethod
    def of(
        cls, broker: RedisBroker, *, name: str = "default", max_batch: int = DEFAULT_MAX_BATCH
    ) -> AutoPipeline:
        """A handle on ``broker``'s connection pool (no I/O until a command is issued)."""
        return cls(broker._redis, name=name, max_batch=max_batch)

    def __repr__(self) -> str:
        return f"AutoPipeline({self.name!r}, batches={self.batches}, commands={self.commands})"

    @property
    def pending(self) -> int:
        """Commands queued and not yet sent."""
        return len(self._queue)

    def execute(self, *args: Any) -> asyncio.Future[Any]:
        """Queue one command (``execute("HSET", "h", "f", 1)``); await its reply, as
        redis-py parses it (bytes for strings: responses are not decoded)."""
        return self._submit(args, _identity)

    def _submit(self, args: tuple[Any, ...], convert: Callable[[Any], T]) -> asyncio.Future[T]:
        check_command(args)
        if self._closed:
            raise BusUnavailable(f"auto-pipeline of bus {self.name!r}: the client is closed")
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise ConfigurationError(
                "the auto-pipeline is for coroutines on the client's event loop (not threads)"
            ) from None
        future: asyncio.Future[T] = loop.create_future()
        self._queue.append(_Pending(args, future, convert))
        if self._runner is None:
            # created now, its first step runs on the next loop turn: after every coroutine
            # already ready in this one has queued its commands.
            self._runner = loop.create_task(self._run(), name=f"nt-autopipe-{self.name}")
        return future

    async def _run(self) -> None:
        try:
            while self._queue:
                batch: list[_Pending] = []
                while self._queue and len(batch) < self.max_batch:
                    item = self._queue.popleft()
                    if not item.future.done():  # cancelled before sending: left out
                        batch.append(item)
                if batch:
                    await self._send(batch)
        except BaseException as exc:  # cancelled (loop closing): fail what is left
            self._fail(list(self._queue), BusUnavailable(f"auto-pipeline stopped: {exc!r}"))
            self._queue.clear()
            raise
        finally:
            self._runner = None

    async def _send(self, batch: list[_Pending]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for item in batch:
            pipe.execute_command(*item.args)
        self.batches += 1
        self.commands += len(batch)
        what = f"auto-pipeline of bus {self.name!r} ({len(batch)} commands)"
        try:
            replies = await pipe.execute(raise_on_error=False)
        except (rexc.RedisError, OSError) as exc:
            error = bus_error(what, exc)
            log.debug("batch failed: %s", error)
            self._fail(batch, error)
            return
        except BaseException as exc:  # cancelled with the loop, or a bug: nobody waits forever
            self._fail(batch, BusUnavailable(f"{what}: not completed: {exc!r}"))
            raise
        for item, reply in zip(batch, replies, strict=True):
            if item.future.done():
                continue
            if isinstance(reply, Exception):
                item.future.set_exception(bus_error(_str(item.args[0]).upper(), reply))
                continue
            try:
                item.future.set_result(item.convert(reply))
            except Exception as exc:  # an unexpected reply type for a typed helper
                item.future.set_exception(BusError(f"{_str(item.args[0])}: bad reply: {exc}"))

    @staticmethod
    def _fail(batch: list[_Pending], error: BusError) -> None:
        for item in batch:
            if not item.future.done():
                copy = type(error)(str(error))
                copy.__cause__ = error.__cause__
                item.future.set_exception(copy)

    async def aclose(self) -> None:
        """Send what is queued, then refuse new commands (the client's close calls this)."""
        self._closed = True
        runner = self._runner
        if runner is not None:
            await asyncio.wait([runner])

    # The typed helpers: each queues one command and returns its future.

    def get(self, key: Key) -> asyncio.Future[bytes | None]:
        return self._submit(("GET", key), _identity)

    def set(
        self,
        key: Key,
        value: Value,
        *,
        ex: float | None = None,
        px: int | None = None,
        nx: bool = False,
        xx: bool = False,
    ) -> asyncio.Future[bool]:
        """SET; ``ex`` seconds or ``px`` ms of expiry; ``nx``/``xx``. True if it was set."""
        args: list[Any] = ["SET", key, value]
        if ex is not None and px is not None:
            raise ConfigurationError("set(): give ex or px, not both")
        if ex is not None:
            args += ["PX", max(1, int(ex * 1000))]
        elif px is not None:
            args += ["PX", px]
        if nx:
            args.append("NX")
        if xx:
            args.append("XX")
        return self._submit(tuple(args), bool)

    def incr(self, key: Key) -> asyncio.Future[int]:
        return self._submit(("INCR", key), _to_int)

    def incrby(self, key: Key, amount: int) -> asyncio.Future[int]:
        return self._submit(("INCRBY", key, amount), _to_int)

    def hincrby(self, key: Key, field: Key, amount: int = 1) -> asyncio.Future[int]:
        return self._submit(("HINCRBY", key, field, amount), _to_int)

    def hset(self, key: Key, mapping: dict[Key, Value]) -> asyncio.Future[int]:
        """HSET of every field of ``mapping``; the number of fields added."""
        if not mapping:
            raise ConfigurationError("hset() needs at least one field")
        args: list[Any] = ["HSET", key]
        for field, value in mapping.items():
            args += [field, value]
        return self._submit(tuple(args), _to_int)

    def hget(self, key: Key, field: Key) -> asyncio.Future[bytes | None]:
        return self._submit(("HGET", key, field), _identity)

    def expire(self, key: Key, seconds: int) -> asyncio.Future[bool]:
        return self._submit(("EXPIRE", key, seconds), bool)

    def delete(self, *keys: Key) -> asyncio.Future[int]:
        return self._submit(("DEL", *keys), _to_int)

    def xadd(
        self, stream: Key, fields: dict[Key, Value], *, maxlen: int | None = None
    ) -> asyncio.Future[bytes]:
        """XADD with an auto id (``MAXLEN ~ maxlen`` when given); the new entry's id."""
        args: list[Any] = ["XADD", stream]
        if maxlen is not None:
            args += ["MAXLEN", "~", maxlen]
        args.append("*")
        for field, value in fields.items():
            args += [field, value]
        return self._submit(tuple(args), _identity)
