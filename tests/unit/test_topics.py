"""Topic pattern matching: the edge cases of * and #."""

from __future__ import annotations

import pytest

from nautilus_tasks import ConfigurationError
from nautilus_tasks.topics import TopicMatcher, check_topic, matches

CASES = [
    ("risk.*", "risk.breach", True),
    ("risk.*", "risk", False),
    ("risk.*", "risk.breach.detected", False),
    ("risk.#", "risk", True),
    ("risk.#", "risk.breach", True),
    ("risk.#", "risk.breach.detected", True),
    ("risk.#", "riskx.breach", False),
    ("risk.breach.#", "risk.breach", True),
    ("risk.breach.#", "risk.breach.detected.now", True),
    ("risk.breach.#", "risk.breaches", False),
    ("#.detected", "detected", True),
    ("#.detected", "risk.breach.detected", True),
    ("#.detected", "risk.detected.late", False),
    ("#", "anything.at.all", True),
    ("#", "x", True),
    ("*", "x", True),
    ("*", "x.y", False),
    ("*.*", "x.y", True),
    ("a.*.c", "a.b.c", True),
    ("a.*.c", "a.c", False),
    ("a.#.c", "a.c", True),
    ("a.#.c", "a.b.b.c", True),
    ("a.**.c", "a.b.b.c", True),
    ("Risk.x", "risk.x", False),  # case-sensitive
    ("market.data.*", "market.data.AAPL", True),
    ("#.#", "a", True),
    ("a.b", "a.b", True),
    ("a.b", "a.b.c", False),
]


@pytest.mark.parametrize(("pattern", "topic", "expected"), CASES)
def test_matches(pattern: str, topic: str, expected: bool) -> None:
    assert matches(pattern, topic) is expected
    assert (TopicMatcher({pattern: ["e"]}).match(topic) == {"e"}) is expected


def test_matcher_unions_subscribers_and_caches() -> None:
    matcher = TopicMatcher({"risk.*": ["a"], "risk.breach.#": ["b"], "#.detected": ["c", "a"]})
    assert matcher.match("risk.breach") == {"a", "b"}
    assert matcher.match("risk.breach.detected") == {"b", "c", "a"}
    assert matcher.match("market.tick") == frozenset()
    assert matcher.match("risk.breach") is matcher.match("risk.breach")  # cached


@pytest.mark.parametrize("bad", ["", "a..b", ".a", "a.", "a b", "a.b*", "ri*"])
def test_bad_patterns_and_topics_are_errors(bad: str) -> None:
    with pytest.raises(ConfigurationError):
        TopicMatcher({bad: ["e"]})
    with pytest.raises(ConfigurationError):
        check_topic(bad)


def test_topics_may_not_hold_wildcards() -> None:
    with pytest.raises(ConfigurationError):
        check_topic("risk.*")
