"""Retry policy: who is retried, and the full-jitter backoff bounds."""

from __future__ import annotations

import pytest

from nautilus_tasks import ConfigurationError, Engine
from nautilus_tasks.task import TaskOptions


def test_backoff_is_full_jitter_under_an_exponential_cap() -> None:
    options = TaskOptions(name="t", backoff_base=0.5, backoff_max=4.0)
    for attempt, cap in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (10, 4.0), (500, 4.0)]:
        delays = [options.retry_delay(attempt) for _ in range(200)]
        assert all(0 <= d <= cap for d in delays)
        assert max(delays) > cap / 2  # spread over the whole range, not a constant


def test_should_retry_follows_retries_and_exception_filters() -> None:
    options = TaskOptions(
        name="t", retries=2, retry_on=(OSError,), dont_retry_on=(ConnectionError,)
    )
    assert options.should_retry(OSError(), 0)
    assert options.should_retry(OSError(), 1)
    assert not options.should_retry(OSError(), 2)  # 1 + retries runs in all
    assert not options.should_retry(ValueError(), 0)  # not in retry_on
    assert not options.should_retry(ConnectionError(), 0)  # dont_retry_on wins
    assert not TaskOptions(name="t", retries=0).should_retry(RuntimeError(), 0)


def test_unknown_or_bad_task_options_are_errors() -> None:
    engine = Engine("e")
    with pytest.raises(ConfigurationError, match="unknown task options"):
        engine.task(retrys=3)
    with pytest.raises(ConfigurationError, match="on_expire"):
        engine.task(on_expire="ignore")(lambda: None)
    with pytest.raises(ConfigurationError, match="retries"):
        engine.task(retries=-1)(lambda: None)
    with pytest.raises(ConfigurationError, match="max_backlog"):
        Engine("f", max_backlog=0)
