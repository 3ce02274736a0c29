"""nautilus-tasks: an asyncio-first task and event framework on Redis Streams."""

import logging

from .client import Client
from .config import BusConfig, WorkerConfig
from .engine import Engine
from .errors import (
    BusError,
    BusUnavailable,
    ConfigurationError,
    EmbeddedServerError,
    InvalidArguments,
    MalformedMessage,
    MessageError,
    MessageTooLarge,
    NautilusTasksError,
    NotBound,
    UnknownTask,
)
from .message import Envelope, Kind
from .priority import Priority
from .task import SendOptions, Task

__all__ = [
    "BusConfig",
    "BusError",
    "BusUnavailable",
    "Client",
    "ConfigurationError",
    "EmbeddedServerError",
    "Engine",
    "Envelope",
    "InvalidArguments",
    "Kind",
    "MalformedMessage",
    "MessageError",
    "MessageTooLarge",
    "NautilusTasksError",
    "NotBound",
    "Priority",
    "SendOptions",
    "Task",
    "UnknownTask",
    "WorkerConfig",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
