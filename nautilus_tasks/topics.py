"""Topic patterns for events: dotted topics matched by glob-like patterns.

A topic is dotted segments, ``risk.breach.detected``. In a pattern:

* ``*`` matches exactly one segment: ``risk.*`` matches ``risk.breach`` but not
  ``risk`` or ``risk.breach.detected``;
* ``#`` (or ``**``) matches zero or more segments: ``risk.#`` matches ``risk``,
  ``risk.breach`` and ``risk.breach.detected``; ``#.detected`` matches ``detected``
  and ``a.b.detected``;
* any other segment matches itself exactly (case-sensitive). Wildcards stand for
  whole segments only: ``ri*`` is an error, not a prefix match.

Matching is compiled once per pattern and cached per topic.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping

from .errors import ConfigurationError

_SEGMENT = re.compile(r"^[A-Za-z0-9_\-]+$")
MULTI = ("#", "**")


def check_topic(topic: str) -> str:
    """A valid concrete topic (no wildcards), or ConfigurationError."""
    if not topic or any(not _SEGMENT.match(s) for s in topic.split(".")):
        raise ConfigurationError(
            f"invalid topic {topic!r}: dotted segments of letters, digits, '_' or '-'"
        )
    return topic


def check_pattern(pattern: str) -> str:
    """A valid pattern, or ConfigurationError."""
    segments = pattern.split(".") if pattern else []
    bad = [s for s in segments if s not in ("*", *MULTI) and not _SEGMENT.match(s)]
    if not segments or bad:
        raise ConfigurationError(f"invalid topic pattern {pattern!r} (bad segments: {bad})")
    return pattern


@functools.lru_cache(maxsize=4096)
def compile_pattern(pattern: str) -> re.Pattern[str]:
    """The regular expression of a pattern, matching whole topics."""
    check_pattern(pattern)
    out = ""
    for segment in pattern.split("."):
        if segment in MULTI:
            out += r"(?:\.[^.]+)*"  # zero or more segments, each with its leading dot
        elif segment == "*":
            out += r"\.[^.]+"
        else:
            out += r"\." + re.escape(segment)
    return re.compile("^" + out + "$")


def matches(pattern: str, topic: str) -> bool:
    """Whether ``topic`` matches ``pattern``."""
    return compile_pattern(pattern).match("." + topic) is not None


class TopicMatcher:
    """Patterns -> subscribers, with a per-topic cache of the answer."""

    def __init__(self, subscriptions: Mapping[str, Iterable[str]] | None = None) -> None:
        self._subs: dict[str, frozenset[str]] = {
            check_pattern(p): frozenset(v) for p, v in (subscriptions or {}).items()
        }
        self._compiled = [(compile_pattern(p), subs) for p, subs in self._subs.items()]
        self._cache: dict[str, frozenset[str]] = {}

    @property
    def subscriptions(self) -> dict[str, frozenset[str]]:
        return dict(self._subs)

    def match(self, topic: str) -> frozenset[str]:
        """Every subscriber of a pattern that ``topic`` matches."""
        found = self._cache.get(topic)
        if found is None:
            dotted = "." + topic
            hits: set[str] = set()
            for regex, subs in self._compiled:
                if regex.match(dotted):
                    hits |= subs
            found = frozenset(hits)
            if len(self._cache) > 65536:
                self._cache.clear()
            self._cache[topic] = found
        return found
