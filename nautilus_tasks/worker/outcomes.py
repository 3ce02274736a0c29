"""What a finished message leaves behind: a reply, a stored result, a callback event."""

from __future__ import annotations

import logging
import re
import traceback
from typing import Any

from ..broker.base import Action, Publish, Reply, StoreResult
from ..errors import ConfigurationError
from ..events import Publisher
from ..message import Envelope, Kind, dumps, encode, new_id, now_ms
from ..requests import REPLY_TTL_MS

log = logging.getLogger("nautilus_tasks.worker")

TRACEBACK_LIMIT = 4000
_CLIENT_ID = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")


def format_traceback(exc: BaseException | None) -> str:
    if exc is None or exc.__traceback__ is None:
        return ""
    return "".join(traceback.format_exception(exc))[-TRACEBACK_LIMIT:]


def success(result: Any, wanted: bool = True) -> dict[str, Any]:
    """The body of a successful outcome. When someone asked for it, a result that is not
    JSON raises TypeError here, in the handler's terms, not later in a batch."""
    body = {"ok": True, "result": result}
    if wanted:
        dumps(body)
    return body


def failure(exc: BaseException) -> dict[str, Any]:
    return {
        "ok": False,
        "error_type": type(exc).__name__,
        "error": str(exc)[:2000],
        "traceback": format_traceback(exc),
    }


async def outcome_actions(
    engine: str, envelope: Envelope, body: dict[str, Any], publisher: Publisher | None
) -> list[Action]:
    """The reply, stored result and callback events that a message's outcome asks for."""
    actions: list[Action] = []
    if envelope.reply_to is None and envelope.result_ttl is None and not envelope.callback_topic:
        return actions
    reply = Envelope(
        id=new_id(), kind=Kind.REPLY, name=envelope.name, priority=envelope.priority,
        body=body, enqueued_at=now_ms(), correlation_id=envelope.correlation_id or envelope.id,
        source=engine,
    )  # fmt: skip
    raw = encode(reply)
    if envelope.reply_to is not None:
        if _CLIENT_ID.match(envelope.reply_to):
            actions.append(Reply(envelope.reply_to, raw, REPLY_TTL_MS))
        else:
            log.error("message %s: invalid reply_to %r, no reply", envelope.id, envelope.reply_to)
    if envelope.result_ttl is not None:
        actions.append(StoreResult(engine, envelope.id, raw, envelope.result_ttl))
    if envelope.callback_topic and publisher is not None:
        actions += await _callback(engine, envelope, body, publisher)
    return actions


async def _callback(
    engine: str, envelope: Envelope, body: dict[str, Any], publisher: Publisher
) -> list[Action]:
    topic = envelope.callback_topic or ""
    payload = {"task": f"{engine}.{envelope.name}", "message_id": envelope.id, **body}
    try:
        event = publisher.envelope(topic, payload, envelope.tier, correlation_id=envelope.id)
    except ConfigurationError as exc:
        log.error("message %s: bad callback topic: %s", envelope.id, exc)
        return []
    targets = await publisher.targets(topic)
    if not targets:
        log.debug("callback %r of message %s matched no subscriber", topic, envelope.id)
    raw = encode(event)
    return [Publish(target, envelope.tier, raw) for target in sorted(targets)]
