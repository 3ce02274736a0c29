"""The v1 envelope: encoding, decoding, and every way an entry can be malformed."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import uuid

import pytest
from pydantic import BaseModel

from nautilus_tasks import Envelope, MalformedMessage, MessageTooLarge, Priority
from nautilus_tasks.message import decode, dumps, encode, new_id, task_body, task_payload
from nautilus_tasks.metrics import Histogram, bucket_of, bucket_upper

DEEP = b"[" * 70 + b"]" * 70


class Quote(BaseModel):
    bid: float
    ask: float


def test_roundtrip_with_models_in_the_body() -> None:
    env = Envelope(
        id=new_id(),
        name="q",
        priority="high",
        body=task_body((Quote(bid=1, ask=2),), {"x": {1, 2}}),
        enqueued_at=1000,
        ttl=500,
    )
    back = decode({b"envelope": encode(env)})
    assert back.body == {"args": [{"bid": 1.0, "ask": 2.0}], "kwargs": {"x": [1, 2]}}
    assert back.tier is Priority.HIGH
    assert back.expires_at() == 1500
    assert back.attempt == 0


def test_ids_are_unique_and_time_ordered() -> None:
    ids = [new_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(len(i) == 32 for i in ids)


def test_too_large_is_refused_before_sending() -> None:
    env = Envelope(id="a", name="t", body="x" * 2000)
    with pytest.raises(MessageTooLarge, match="over the limit"):
        encode(env, max_bytes=1000)


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({b"other": b"1"}, "no 'envelope' field"),
        ({b"envelope": b"{nope"}, "not valid UTF-8 JSON"),
        ({b"envelope": b"\xff\xfe"}, "not valid UTF-8 JSON"),
        ({b"envelope": b"[1]"}, "not an object"),
        ({b"envelope": b'{"v":2,"id":"a","name":"t"}'}, "version 2"),
        ({b"envelope": b'{"v":true,"id":"a","name":"t"}'}, "version True"),
        ({b"envelope": b'{"v":1,"name":"t"}'}, "id: Field required"),
        ({b"envelope": b'{"v":1,"id":"a","name":"t","priority":"urgent"}'}, "priority"),
        ({b"envelope": b'{"v":1,"id":"a","name":"t","body":' + DEEP + b"}"}, "nested"),
    ],
)  # fmt: skip
def test_malformed_entries_say_why(fields: dict[bytes, bytes], match: str) -> None:
    with pytest.raises(MalformedMessage, match=match):
        decode(fields)


def test_histogram_quantiles_merge() -> None:
    a, b = Histogram(), Histogram()
    for ms in range(1, 101):
        a.observe(float(ms))
    b.observe(1000.0)
    merged = Histogram.merged([a, Histogram.from_json(b.to_json())])
    assert merged.count == 101
    p50 = merged.quantile(0.5)
    assert p50 is not None and 50 <= p50 <= 56  # 10% buckets
    p100 = merged.quantile(1.0)
    assert p100 is not None and 1000 <= p100 <= 1100
    assert Histogram().quantile(0.5) is None
    assert bucket_upper(bucket_of(3.3)) >= 3.3


def _nested(levels: int) -> object:
    body: object = 1
    for _ in range(levels):
        body = [body]
    return body


def test_depth_limit_is_exact_around_the_bracket_precheck() -> None:
    at_limit = Envelope(id="a", name="t", body=_nested(63))  # 63 lists + the leaf: depth 64
    assert decode({b"envelope": encode(at_limit)}).body == _nested(63)
    over = Envelope(id="a", name="t", body=_nested(64))
    with pytest.raises(MalformedMessage, match="nested"):
        decode({b"envelope": encode(over)})
    many_brackets = Envelope(id="a", name="t", body=[[1]] * 100 + ["[[[{{{"] * 30)
    assert decode({b"envelope": encode(many_brackets)}).body == many_brackets.body


class Tick(BaseModel):
    at: datetime.datetime
    tags: set[str]


@dataclasses.dataclass
class Pair:
    tick: Tick
    legs: tuple[int, ...]


@pytest.mark.parametrize(
    "body",
    [
        None,
        {"args": [1, "x"], "kwargs": {}},
        Tick(at=datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC), tags={"a"}),
        {"k": Pair(Tick(at=datetime.datetime(2024, 1, 1), tags=set()), (1, 2))},
        {1: {2, 3}},
        [enum.Enum("Side", "BUY SELL").BUY, uuid.UUID(int=5)],  # type: ignore[attr-defined]
    ],
)
def test_encode_gives_the_bytes_of_the_pydantic_dump(body: object) -> None:
    env = Envelope(id=new_id(), name="t", body=body, enqueued_at=5, ttl=9, source="s")
    dumped = env.model_dump(exclude_none=True, mode="python") | {"kind": env.kind.value}
    assert encode(env) == dumps(dumped)


@pytest.mark.parametrize(
    ("body", "ttl_ms", "source"),
    [
        (task_body((), {}), None, None),
        (task_body((Quote(bid=1, ask=2), {3, 4}), {"when": datetime.date(2024, 5, 1)}), 1500, "s"),
    ],
)
def test_task_payload_gives_the_bytes_of_the_envelope(
    body: dict[str, object], ttl_ms: int | None, source: str | None
) -> None:
    env = Envelope(
        id="m1", name="t", priority="low", body=body, enqueued_at=7, ttl=ttl_ms, source=source
    )
    fast = task_payload("m1", "t", Priority.LOW, body, 7, ttl_ms=ttl_ms, source=source)
    assert fast == encode(env)


def test_task_payload_leaves_what_the_model_must_judge_to_the_model() -> None:
    body = task_body((), {})
    assert task_payload("", "t", Priority.LOW, body, 7) is None
    assert task_payload("m", "t" * 513, Priority.LOW, body, 7) is None
    assert task_payload("m", "t", Priority.LOW, body, 7, ttl_ms=0) is None
    with pytest.raises(MessageTooLarge):
        task_payload("m", "t", Priority.LOW, task_body(("x" * 400,), {}), 7, max_bytes=300)
