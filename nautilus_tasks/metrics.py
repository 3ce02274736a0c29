"""Counters and latency histograms that merge across workers."""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

_BASE_MS = 0.01
_GROWTH = 1.1
_LOG_GROWTH = math.log(_GROWTH)


def bucket_of(ms: float) -> int:
    """Bucket index of a latency: bucket i holds [0.01 * 1.1**(i-1), 0.01 * 1.1**i) ms."""
    if ms <= _BASE_MS:
        return 0
    return 1 + int(math.log(ms / _BASE_MS) / _LOG_GROWTH)


@functools.lru_cache(maxsize=4096)
def _bucket_of_ms(ms: int) -> int:
    """``bucket_of`` for whole milliseconds (the usual case: times are epoch ms), memoized."""
    return bucket_of(ms)


def bucket_upper(index: int) -> float:
    """The upper bound of a bucket, in milliseconds."""
    return _BASE_MS * _GROWTH**index


class Histogram:
    """A log-bucketed latency histogram (10% resolution) that adds up across processes."""

    __slots__ = ("buckets", "count")

    def __init__(self, buckets: Mapping[int, int] | None = None) -> None:
        self.buckets: Counter[int] = Counter(buckets or {})
        self.count = sum(self.buckets.values())

    def observe(self, ms: float) -> None:
        self.buckets[_bucket_of_ms(ms) if type(ms) is int else bucket_of(ms)] += 1
        self.count += 1

    def merge(self, other: Histogram) -> None:
        self.buckets.update(other.buckets)
        self.count += other.count

    def quantile(self, q: float) -> float | None:
        """The upper bound of the bucket holding quantile ``q``; None when empty."""
        if not self.count:
            return None
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= rank:
                return bucket_upper(index)
        return bucket_upper(max(self.buckets))

    def to_json(self) -> dict[str, int]:
        return {str(k): v for k, v in self.buckets.items()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Histogram:
        return cls({int(k): int(v) for k, v in data.items()})

    @classmethod
    def merged(cls, parts: Iterable[Histogram]) -> Histogram:
        out = cls()
        for part in parts:
            out.merge(part)
        return out


class WorkerStats:
    """What one worker counts: outcomes per kind, and end-to-end latency."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.latency = Histogram()

    def to_json(self, **extra: Any) -> dict[str, Any]:
        return {"counts": dict(self.counts), "latency": self.latency.to_json(), **extra}
