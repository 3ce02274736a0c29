"""nautilus-tasks: an asyncio-first task and event framework on Redis Streams."""

import logging

from .buffer import BufferConfig
from .buses import Buses
from .client import Client
from .config import BusConfig, DeadRetention, WorkerConfig
from .context import MessageContext, current_message
from .engine import Engine
from .errors import (
    BacklogFull,
    BusError,
    BusFull,
    BusUnavailable,
    ConfigurationError,
    EmbeddedServerError,
    InvalidArguments,
    MalformedMessage,
    MessageError,
    MessageTooLarge,
    NautilusTasksError,
    NotBound,
    RequestTimeout,
    Retry,
    TaskFailed,
    UnknownTask,
)
from .message import Envelope, Kind
from .priority import Priority
from .task import MessageHandle, SendOptions, Task

__all__ = [
    "BacklogFull",
    "BufferConfig",
    "BusConfig",
    "BusError",
    "BusFull",
    "BusUnavailable",
    "Buses",
    "Client",
    "ConfigurationError",
    "DeadRetention",
    "EmbeddedServerError",
    "Engine",
    "Envelope",
    "InvalidArguments",
    "Kind",
    "MalformedMessage",
    "MessageContext",
    "MessageError",
    "MessageHandle",
    "MessageTooLarge",
    "NautilusTasksError",
    "NotBound",
    "Priority",
    "RequestTimeout",
    "Retry",
    "SendOptions",
    "Task",
    "TaskFailed",
    "UnknownTask",
    "WorkerConfig",
    "current_message",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
