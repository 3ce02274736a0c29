"""The Redis Streams broker: the only package that imports redis or knows a key name."""

from .autopipe import AutoPipeline
from .broker import RedisBroker
from .keys import Keys

__all__ = ["AutoPipeline", "Keys", "RedisBroker"]
