"""Dead letters: list, show, replay and purge what an engine could not process.

Every engine has a dead-letter stream. A message lands there with its reason
(``failed``, ``invalid``, ``unknown_task``, ``expired``, ``poison``, ``malformed``), its
last error and the original stream entry, untouched::

    async with await Client.connect() as client:
        dead = DeadLetters(client)
        for letter in await dead.list("risk", reason="failed"):
            print(letter.id, letter.task, letter.error_type, letter.error)
        await dead.replay("risk", task="check_limit")   # after the fix is deployed
        await dead.purge("risk", older_than=7 * 86400)

Replay puts a message back in the tier stream it came from with ``attempt`` reset to 0;
its message id and correlation id stay the same, so idempotent handlers still recognise
it. A malformed entry is replayed with its original fields verbatim. Each entry is
replayed atomically: two replays racing for one entry add it once.
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from .errors import ConfigurationError, MalformedMessage
from .message import decode

if TYPE_CHECKING:
    from .broker.redis.dead import DeadEntry
    from .client import Client

log = logging.getLogger("nautilus_tasks.dlq")

ORIG = "orig:"


def _text(value: bytes | None) -> str:
    return "" if value is None else value.decode("utf-8", "replace")


def _int(value: bytes | None) -> int | None:
    try:
        return None if not value else int(value)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead letter. Times are epoch milliseconds."""

    id: str
    """The dead entry's id in the engine's dead-letter stream."""
    engine: str
    reason: str
    """``failed``, ``invalid``, ``unknown_task``, ``expired``, ``poison`` or ``malformed``."""
    error_type: str
    error: str
    traceback: str
    attempts: int
    """Runs of the message, retries included (0 if unknown)."""
    deliveries: int
    """Deliveries of the last attempt's stream entry (from the consumer group)."""
    dead_at: int
    origin: str
    """The tier it was read from: critical, high, normal or low."""
    origin_id: str
    """Its entry id in that tier stream."""
    consumer: str
    message_id: str
    task: str
    envelope: dict[str, Any] | None
    """The original envelope as JSON, if it was a JSON object (it may still be invalid)."""
    fields: dict[str, bytes] = field(repr=False)
    """Every field of the dead entry, as stored."""

    @property
    def original(self) -> dict[str, bytes]:
        """The original stream entry's fields, verbatim."""
        return {k[len(ORIG) :]: v for k, v in self.fields.items() if k.startswith(ORIG)}

    @classmethod
    def from_entry(cls, engine: str, dead_id: str, raw: dict[bytes, bytes]) -> DeadLetter:
        """Parse a stored dead entry, filling what the stored meta lacks from the envelope."""
        fields = {k.decode("utf-8", "replace"): v for k, v in raw.items()}
        envelope = _envelope(fields.get(ORIG + "envelope"))
        valid = _valid_attempt(raw)
        attempts = _int(fields.get("attempts"))
        dead_at = _int(fields.get("dead_at"))
        return cls(
            id=dead_id,
            engine=engine,
            reason=_text(fields.get("reason")),
            error_type=_text(fields.get("error_type")),
            error=_text(fields.get("error")),
            traceback=_text(fields.get("traceback")),
            attempts=attempts if attempts is not None else (0 if valid is None else valid + 1),
            deliveries=_int(fields.get("deliveries")) or 0,
            dead_at=dead_at if dead_at is not None else int(dead_id.split("-", 1)[0]),
            origin=_text(fields.get("origin")),
            origin_id=_text(fields.get("origin_id")),
            consumer=_text(fields.get("consumer")),
            message_id=_text(fields.get("message_id")) or _str_of(envelope, "id"),
            task=_text(fields.get("task")) or _str_of(envelope, "name"),
            envelope=envelope,
            fields=fields,
        )


def _envelope(raw: bytes | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def _valid_attempt(raw: dict[bytes, bytes]) -> int | None:
    orig = {k[len(ORIG) :]: v for k, v in raw.items() if k.startswith(ORIG.encode())}
    try:
        return decode(orig).attempt
    except MalformedMessage:
        return None


def _str_of(envelope: dict[str, Any] | None, name: str) -> str:
    value = None if envelope is None else envelope.get(name)
    return value if isinstance(value, str) else ""


def _letters(entries: Sequence[DeadEntry]) -> builtins.list[DeadLetter]:
    return [DeadLetter.from_entry(e.engine, e.id, e.fields) for e in entries]


class DeadLetters:
    """The dead letters on the bus of ``client``."""

    def __init__(self, client: Client) -> None:
        self.client = client

    async def list(
        self,
        engine: str,
        reason: str | None = None,
        task: str | None = None,
        limit: int = 100,
        *,
        newest_first: bool = True,
    ) -> builtins.list[DeadLetter]:
        """Up to ``limit`` dead letters of ``engine``, newest first unless told otherwise,
        filtered by reason and by task name (the name inside the engine)."""
        from .broker.redis import dead

        entries = await dead.list_dead(
            self.client.broker,
            engine,
            reason=reason,
            task=task,
            limit=limit,
            newest_first=newest_first,
        )
        return _letters(entries)

    async def get(self, dead_id: str, engine: str | None = None) -> DeadLetter | None:
        """One dead letter by its id, in ``engine`` or, when None, in any engine on the bus."""
        from .broker.redis import dead

        entry = await dead.get_dead(self.client.broker, dead_id, engine)
        return (
            None if entry is None else DeadLetter.from_entry(entry.engine, entry.id, entry.fields)
        )

    async def replay(
        self,
        engine: str,
        ids: Sequence[str] | None = None,
        all: bool = False,
        task: str | None = None,
        on_replayed: Callable[[DeadLetter], None] | None = None,
    ) -> int:
        """Put dead letters back in their tier streams with attempt 0: the ones in ``ids``,
        ``all`` of them, or those of ``task`` (exactly one of the three). Returns how many
        were replayed; an id that is no longer there counts nothing. ``on_replayed`` is
        told each dead letter put back (the audit records them)."""
        from .broker.redis import dead

        chosen = sum((bool(ids), all, task is not None))
        if chosen != 1:
            raise ConfigurationError("replay takes ids, all=True or task=, exactly one of them")
        broker = self.client.broker

        def told(dead_id: str, fields: dict[bytes, bytes]) -> None:
            if on_replayed is not None:
                on_replayed(DeadLetter.from_entry(engine, dead_id, fields))

        if ids:
            count = await dead.replay_dead(broker, engine, ids, told)
        else:
            count = await dead.replay_matching(broker, engine, task=task, on_replayed=told)
        log.info("replayed %d dead letters of %s", count, engine)
        return count

    async def purge(
        self, engine: str, ids: Sequence[str] | None = None, older_than: float | None = None
    ) -> int:
        """Delete dead letters for good: the ones in ``ids``, or those that died more than
        ``older_than`` seconds ago by the server's clock (exactly one). Returns how many."""
        from .broker.redis import dead

        broker = self.client.broker
        if ids and older_than is None:
            return await dead.purge_dead(broker, engine, ids)
        if not ids and older_than is not None:
            if older_than < 0:
                raise ConfigurationError(f"older_than must be >= 0, not {older_than}")
            return await dead.purge_older(broker, engine, int(older_than * 1000))
        raise ConfigurationError("purge takes ids or older_than=, exactly one of them")
