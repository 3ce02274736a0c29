"""The worker's decode builds the Envelope without a pydantic pass when every value is one
the model keeps unchanged (``message._trusted``); anything else goes through the model.
These pin the two paths to the same result."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from nautilus_tasks.errors import MalformedMessage
from nautilus_tasks.message import _CHECKS, Envelope, Kind, _trusted, decode

HAND_CHECKED = {"v", "id", "kind", "name", "priority", "body"}

FULL: dict[str, Any] = {
    "v": 1, "id": "m1", "kind": "reply", "name": "risk.var", "priority": "critical",
    "body": {"args": [1, [2, {"x": None}]], "kwargs": {"k": "v"}}, "enqueued_at": 1733000000000,
    "ttl": 5, "correlation_id": "c", "reply_to": "client-1", "callback_topic": "a.b",
    "source": "s", "attempt": 0, "trace_id": "t", "eta": 0, "result_ttl": 1,
    "schedule": "every-minute", "fire_time": -5, "durable_result": False,
}  # fmt: skip

TRUSTED = [
    {"v": 1, "id": "x", "name": "n"},
    {"v": 1, "id": "x" * 128, "name": "n" * 512, "kind": "event", "body": [1, 2]},
    {"v": 1, "id": "x", "name": "n", "body": None, "enqueued_at": None, "attempt": 7},
    {"v": 1, "id": "é", "name": "ü", "priority": "low", "body": "text", "durable_result": True},
    FULL,
]

REFUSED = [
    {"v": 1, "id": "", "name": "n"},
    {"v": 1, "id": "x" * 129, "name": "n"},
    {"v": 1, "id": "x", "name": "n" * 513},
    {"v": 1, "id": 5, "name": "n"},
    {"v": 1, "id": "x"},
    {"v": 1, "id": "x", "name": "n", "kind": "job"},
    {"v": 1, "id": "x", "name": "n", "kind": None},
    {"v": 1, "id": "x", "name": "n", "priority": "urgent"},
    {"v": 1, "id": "x", "name": "n", "priority": None},
    {"v": 1, "id": "x", "name": "n", "attempt": -1},
    {"v": 1, "id": "x", "name": "n", "attempt": None},
    {"v": 1, "id": "x", "name": "n", "attempt": True},
    {"v": 1, "id": "x", "name": "n", "attempt": 1.0},
    {"v": 1, "id": "x", "name": "n", "ttl": 0},
    {"v": 1, "id": "x", "name": "n", "result_ttl": -3},
    {"v": 1, "id": "x", "name": "n", "enqueued_at": "5"},
    {"v": 1, "id": "x", "name": "n", "enqueued_at": 5.5},
    {"v": 1, "id": "x", "name": "n", "reply_to": 3},
    {"v": 1, "id": "x", "name": "n", "durable_result": 1},
    {"v": 1, "id": "x", "name": "n", "unknown": 1},
]


def test_the_fast_path_covers_exactly_the_envelopes_fields() -> None:
    assert set(_CHECKS) | HAND_CHECKED == set(Envelope.model_fields)
    assert not set(_CHECKS) & HAND_CHECKED


@pytest.mark.parametrize("data", TRUSTED)
def test_trusted_envelopes_equal_the_models(data: dict[str, Any]) -> None:
    fast = _trusted(data)
    model = Envelope.model_validate(data)
    assert fast is not None
    assert fast == model
    assert list(fast.__dict__.items()) == list(model.__dict__.items())
    assert fast.model_fields_set == model.model_fields_set
    assert repr(fast) == repr(model)
    assert fast.model_dump(exclude_unset=True) == model.model_dump(exclude_unset=True)
    assert isinstance(fast.kind, Kind)
    assert decode({b"envelope": orjson.dumps(data)}) == model
    with pytest.raises(Exception, match="frozen"):
        fast.id = "changed"  # type: ignore[misc]


@pytest.mark.parametrize("data", REFUSED)
def test_other_values_go_through_the_model(data: dict[str, Any]) -> None:
    assert _trusted(data) is None
    raw = {b"envelope": orjson.dumps(data)}
    try:
        expected: Envelope | None = Envelope.model_validate(data)
    except ValueError:
        expected = None
    if expected is None:
        with pytest.raises(MalformedMessage, match="invalid envelope"):
            decode(raw)
    else:  # the model accepts it, converting or dropping what the fast path would not
        assert decode(raw) == expected
