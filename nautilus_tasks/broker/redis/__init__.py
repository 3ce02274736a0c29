"""The Redis Streams broker: the only package that imports redis or knows a key name."""

from .broker import RedisBroker
from .keys import Keys

__all__ = ["Keys", "RedisBroker"]
