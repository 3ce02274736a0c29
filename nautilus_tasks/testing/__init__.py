"""Testing engines without a server: an in-memory bus on fakeredis, and a pytest plugin.

``TestBus`` connects engines to a fakeredis server (the ``testing`` extra) and runs the
real broker code, the real Lua scripts and the real worker executor in the test's own
process; ``SyncTestBus`` is its face for plain ``def`` tests. The pytest plugin
(``nautilus_tasks.testing.plugin``, registered as a ``pytest11`` entry point) provides the
fixtures ``nt_bus``, ``nt_server``, ``nt_any_bus`` and ``nt_sync_bus``. See docs/testing.md.

The names are imported on first use, so the plugin loads even without fakeredis.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .bus import TestBus
    from .recording import HandlerError, Outcome, PublishedEvent, SentMessage
    from .sync import SyncTestBus

_EXPORTS = {
    "TestBus": ".bus",
    "SyncTestBus": ".sync",
    "HandlerError": ".recording",
    "Outcome": ".recording",
    "PublishedEvent": ".recording",
    "SentMessage": ".recording",
}

__all__ = [
    "HandlerError",
    "Outcome",
    "PublishedEvent",
    "SentMessage",
    "SyncTestBus",
    "TestBus",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)
