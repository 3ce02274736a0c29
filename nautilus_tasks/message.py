"""The message envelope, wire format version 1.

A message is one stream entry with a single field, ``envelope``, whose value is
a UTF-8 JSON object. ``docs/protocol.md`` documents every field; this module is
the reference implementation. Encoding and decoding use orjson.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import time
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import MalformedMessage, MessageTooLarge
from .priority import Priority

WIRE_VERSION: Literal[1] = 1
ENVELOPE_FIELD = b"envelope"
MAX_DEPTH = 64
"""Deepest JSON nesting a worker accepts in a body (orjson itself stops at 1024)."""


class Kind(enum.StrEnum):
    """What a message is: a task to run, an event on a topic, or a reply to a request."""

    TASK = "task"
    EVENT = "event"
    REPLY = "reply"


PriorityLabel = Literal["critical", "high", "normal", "low"]


class Envelope(BaseModel):
    """One message on the bus.

    ``body`` holds ``{"args": [...], "kwargs": {...}}`` for a task, the payload for
    an event, and the outcome for a reply. Times are integer milliseconds since
    the Unix epoch; ``ttl`` is a duration in milliseconds.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    v: Literal[1] = WIRE_VERSION
    id: str = Field(min_length=1, max_length=128)
    kind: Kind = Kind.TASK
    name: str = Field(min_length=1, max_length=512)
    priority: PriorityLabel = "normal"
    body: Any = None
    enqueued_at: int | None = None
    ttl: int | None = Field(default=None, gt=0)
    correlation_id: str | None = None
    reply_to: str | None = None
    callback_topic: str | None = None
    source: str | None = None
    attempt: int = Field(default=0, ge=0)
    trace_id: str | None = None
    eta: int | None = None
    result_ttl: int | None = Field(default=None, gt=0)
    schedule: str | None = None
    """The periodic schedule that sent this task (see ``Engine.periodic``)."""
    fire_time: int | None = None
    """The nominal fire time of that schedule's tick, epoch ms (not when it was sent)."""
    durable_result: bool | None = None

    @property
    def tier(self) -> Priority:
        """The priority as an enum."""
        return Priority[self.priority.upper()]

    def expires_at(self) -> int | None:
        """Epoch milliseconds after which the message must not start, if it has a TTL."""
        if self.ttl is None or self.enqueued_at is None:
            return None
        return max(self.enqueued_at, self.eta or 0) + self.ttl


def new_id() -> str:
    """A new message id: 32 hex digits, time-ordered in its first 12."""
    return f"{time.time_ns() // 1_000_000:012x}{os.urandom(10).hex()}"


def now_ms() -> int:
    """Wall-clock epoch milliseconds of this process."""
    return time.time_ns() // 1_000_000


def _default(obj: Any) -> Any:
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    raise TypeError(f"cannot encode {type(obj).__name__} in a message body")


def dumps(value: Any) -> bytes:
    """orjson with support for pydantic models, used for every body."""
    return orjson.dumps(value, default=_default, option=orjson.OPT_NON_STR_KEYS)


def _python_default(obj: Any) -> Any:
    """``_default``, but a pydantic model in a body becomes its python-mode dump, as
    ``Envelope.model_dump(mode="python")`` would make it."""
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="python")
    return _default(obj)


def encode(envelope: Envelope, max_bytes: int | None = None) -> bytes:
    """Encode an envelope to the JSON bytes stored in the ``envelope`` field.

    The same bytes as ``orjson.dumps(envelope.model_dump(exclude_none=True))``, built
    from the (already validated) field values without a pydantic serializer pass."""
    data = {k: v for k, v in envelope.__dict__.items() if v is not None}
    data["kind"] = envelope.kind.value
    return _dump(data, max_bytes)


def _dump(data: dict[str, Any], max_bytes: int | None) -> bytes:
    raw = orjson.dumps(data, default=_python_default, option=orjson.OPT_NON_STR_KEYS)
    if max_bytes is not None and len(raw) > max_bytes:
        raise MessageTooLarge(
            f"message {data['id']} for {data['name']!r} is {len(raw)} bytes,"
            f" over the limit of {max_bytes}"
        )
    return raw


def task_payload(
    message_id: str,
    name: str,
    priority: Priority,
    body: dict[str, Any],
    enqueued_at: int,
    *,
    ttl_ms: int | None = None,
    source: str | None = None,
    max_bytes: int | None = None,
) -> bytes | None:
    """``encode(Envelope(...))`` of a task message with no per-send options, without
    building the model: the same bytes (a test pins it). None when a value is one the
    model would reject or convert: then build the Envelope, which says why."""
    if not (0 < len(message_id) <= 128 and 0 < len(name) <= 512):
        return None
    if (ttl_ms is not None and (type(ttl_ms) is not int or ttl_ms <= 0)) or (
        source is not None and type(source) is not str
    ):
        return None
    data = {
        "v": WIRE_VERSION, "id": message_id, "kind": Kind.TASK.value, "name": name,
        "priority": priority.label, "body": body, "enqueued_at": enqueued_at,
    }  # fmt: skip
    if ttl_ms is not None:
        data["ttl"] = ttl_ms
    if source is not None:
        data["source"] = source
    data["attempt"] = 0
    return _dump(data, max_bytes)


def _depth(value: Any, limit: int) -> int:
    stack: list[tuple[Any, int]] = [(value, 1)]
    deepest = 0
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


def _brackets(raw: bytes | str) -> int:
    """Opening brackets in ``raw``: at least the nesting depth of anything in it."""
    if isinstance(raw, str):
        return raw.count("[") + raw.count("{")
    return raw.count(b"[") + raw.count(b"{")


def decode(fields: dict[bytes, bytes]) -> Envelope:
    """Decode the fields of one stream entry, or raise MalformedMessage saying why."""
    raw = fields.get(ENVELOPE_FIELD)
    if raw is None:
        names = sorted(k.decode("utf-8", "replace") for k in fields)
        raise MalformedMessage(f"no 'envelope' field (fields: {names})")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedMessage(f"envelope is not valid UTF-8 JSON: {exc}") from None
    if not isinstance(data, dict):
        raise MalformedMessage(f"envelope is a JSON {type(data).__name__}, not an object")
    version = data.get("v")
    if type(version) is not int or version != WIRE_VERSION:
        raise MalformedMessage(f"unsupported wire format version {version!r} (this is v1)")
    # a body nested deeper than MAX_DEPTH needs MAX_DEPTH opening brackets: count them
    # (in C) before walking the body (in Python)
    if _brackets(raw) >= MAX_DEPTH and _depth(data.get("body"), MAX_DEPTH) > MAX_DEPTH:
        raise MalformedMessage(f"body is nested deeper than {MAX_DEPTH} levels")
    try:
        return Envelope.model_validate(data)
    except ValidationError as exc:
        raise MalformedMessage(f"invalid envelope: {_brief(exc)}") from None


def _brief(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def task_body(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The body of a task message."""
    return {"args": list(args), "kwargs": kwargs}
