"""The exceptions of nautilus-tasks.

Everything the framework raises derives from one root::

    NautilusTasksError
    ├── ConfigurationError            bad settings, a bad engine or task declaration
    │   ├── EmbeddedServerError       the embedded Valkey could not start or stop
    │   └── NotBound                  a task was sent through an engine with no client bound
    ├── MessageError                  a message that cannot be built or understood
    │   ├── MalformedMessage          a stream entry that is not a valid v1 envelope
    │   ├── MessageTooLarge           an encoded message over ``max_message_bytes``
    │   └── InvalidArguments          arguments that do not match the handler's type hints
    ├── UnknownTask                   no task of that name in the engine
    ├── TaskFailed                    a requested task failed remotely (type, message, traceback)
    ├── RequestTimeout                no reply within the request's timeout
    ├── Retry                         raised by a handler to ask for another attempt
    ├── DrainTimeout                  a test bus's drain() did not finish in time (testing)
    ├── StoreError                    PostgreSQL (audit, durable results) failed or is missing
    └── BusError                      the bus (Redis) failed
        ├── BusUnavailable            the bus did not answer; the write may not have happened
        ├── BusFull                   the server is out of memory (maxmemory, noeviction)
        └── BacklogFull               the engine's inbox is longer than its max_backlog

Handlers may raise anything; those exceptions are the user's, not part of this tree.
"""

from __future__ import annotations


class NautilusTasksError(Exception):
    """Root of every exception raised by nautilus-tasks."""


class ConfigurationError(NautilusTasksError):
    """Invalid settings, or an invalid engine or task declaration."""


class EmbeddedServerError(ConfigurationError):
    """The embedded Valkey server could not be started or stopped."""


class NotBound(ConfigurationError):
    """A task was sent through an engine that has no client bound to it."""


class MessageError(NautilusTasksError):
    """A message that cannot be built or understood."""


class MalformedMessage(MessageError):
    """A stream entry that is not a valid envelope of a supported wire format."""


class MessageTooLarge(MessageError):
    """An encoded message is larger than the configured ``max_message_bytes``."""


class InvalidArguments(MessageError):
    """Task arguments or an event payload do not match the handler's type hints."""

    def __init__(self, task: str, detail: str) -> None:
        super().__init__(f"invalid arguments for task {task!r}: {detail}")
        self.task = task
        self.detail = detail


class UnknownTask(NautilusTasksError):
    """No task of that name is declared in the engine."""


class TaskFailed(NautilusTasksError):
    """The remote handler of a request (or stored result) failed for good."""

    def __init__(self, task: str, error_type: str, message: str, traceback: str = "") -> None:
        super().__init__(f"task {task} failed: {error_type}: {message}")
        self.task = task
        self.error_type = error_type
        self.message = message
        self.traceback = traceback


class RequestTimeout(NautilusTasksError, TimeoutError):
    """No reply (or stored result) arrived in time; a reply arriving later is dropped."""


class Retry(NautilusTasksError):
    """Raise inside a handler to run it again later: ``raise Retry(delay=5.0)``.

    It counts against the task's ``retries``; without ``delay`` the task's backoff applies.
    """

    def __init__(self, delay: float | None = None, reason: str = "") -> None:
        super().__init__(reason or f"retry requested (delay {delay})")
        self.delay = delay


class DrainTimeout(NautilusTasksError, TimeoutError):
    """``TestBus.drain()`` (``nautilus_tasks.testing``) was still busy at its timeout."""


class BusError(NautilusTasksError):
    """The bus (a Redis-compatible server) returned an error."""


class BusUnavailable(BusError):
    """The bus could not be reached or did not answer in time.

    A send that raises this was not acknowledged: it may or may not have been stored
    (a timeout can strike after the server wrote it). A send that returns was stored.
    """


class BusFull(BusError):
    """The server refused a write because it is out of memory; nothing was stored."""


class BacklogFull(BusError):
    """The engine's inbox holds more than its ``max_backlog``; nothing was stored."""


class StoreError(NautilusTasksError):
    """The PostgreSQL store (audit, durable results) could not be read or written."""
