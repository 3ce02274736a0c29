"""What a running handler can learn about the message it is handling."""

from __future__ import annotations

import contextvars
from typing import NamedTuple

from .message import Envelope
from .priority import Priority


class MessageContext(NamedTuple):
    """The message being handled. ``message_id`` is stable across retries and
    redeliveries: key idempotent side effects on it. Immutable (a named tuple: the
    worker makes one per message)."""

    envelope: Envelope
    engine: str
    entry_id: str
    tier: Priority
    deliveries: int

    @property
    def message_id(self) -> str:
        return self.envelope.id

    @property
    def attempt(self) -> int:
        """0 on the first run, +1 for each retry."""
        return self.envelope.attempt


_current: contextvars.ContextVar[MessageContext | None] = contextvars.ContextVar(
    "nautilus_tasks_current_message", default=None
)


def current_message() -> MessageContext | None:
    """The message the calling handler is running for; None outside a worker."""
    return _current.get()


def set_current(context: MessageContext | None) -> contextvars.Token[MessageContext | None]:
    """Used by the worker around each handler call."""
    return _current.set(context)


def reset_current(token: contextvars.Token[MessageContext | None]) -> None:
    _current.reset(token)
