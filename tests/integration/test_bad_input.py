"""Bad input never stops a worker and is never dropped: it is dead-lettered with its reason."""

from __future__ import annotations

import logging

import pytest
import redis.asyncio as aioredis

from nautilus_tasks import Client, Engine
from tests.helpers import running_worker, wait_for

pytestmark = pytest.mark.integration

DEEP = "[" * 80 + "]" * 80
EMPTY = '{"args":[],"kwargs":{}}'


def _engine(done: list[float]) -> Engine:
    engine = Engine("risk")

    @engine.task
    async def check_limit(symbol: str, limit: float) -> None:
        done.append(limit)

    return engine


async def _dead(raw: aioredis.Redis, client: Client) -> list[dict[bytes, bytes]]:
    return [fields for _, fields in await raw.xrange(client.broker.keys("risk").dead)]


async def test_invalid_argument_is_logged_naming_task_and_field(
    client: Client, raw: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    done: list[float] = []
    engine = _engine(done)
    client.bind(engine)
    task = engine.tasks["check_limit"]
    await task.send("AAPL", "not-a-number")  # type: ignore[arg-type]
    await task.send("AAPL", 5.0)
    with caplog.at_level(logging.ERROR, logger="nautilus_tasks"):
        async with running_worker(engine, client):
            await wait_for(lambda: done == [5.0])  # the worker kept going
            await wait_for(lambda: _dead_count(raw, client, 1))
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("risk.check_limit" in m and "limit" in m and "number" in m for m in errors), errors
    [dead] = await _dead(raw, client)
    assert dead[b"reason"] == b"invalid"
    assert b"limit" in dead[b"error"]
    assert dead[b"task"] == b"check_limit"
    assert b"not-a-number" in dead[b"orig:envelope"]
    for stream in client.broker.keys("risk").streams:
        assert await raw.xlen(stream) == 0


async def _dead_count(raw: aioredis.Redis, client: Client, n: int) -> bool:
    return int(await raw.xlen(client.broker.keys("risk").dead)) >= n


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"other": "x"}, b"malformed"),
        ({"envelope": "{not json"}, b"malformed"),
        ({"envelope": b"\xff\xfe\x00bad"}, b"malformed"),
        ({"envelope": '{"v":2,"id":"a","name":"check_limit"}'}, b"malformed"),
        ({"envelope": '{"v":1,"id":"a","name":"check_limit","body":' + DEEP + "}"}, b"malformed"),
        ({"envelope": '{"v":1,"id":"a","name":"no_such_task"}'}, b"unknown_task"),
        ({"envelope": '{"v":1,"id":"a","name":"check_limit","body":' + EMPTY + "}"}, b"invalid"),
        ({"envelope": '{"v":1,"id":"a","name":"check_limit","ttl":1,"enqueued_at":1000,'
          '"body":{"args":["X",1],"kwargs":{}}}'}, b"expired"),
    ],
)  # fmt: skip
async def test_bad_entries_are_dead_lettered_with_reason(
    client: Client, raw: aioredis.Redis, fields: dict[str, str | bytes], reason: bytes
) -> None:
    done: list[float] = []
    engine = _engine(done)
    client.bind(engine)
    await raw.xadd(client.broker.keys("risk").streams[2], fields)  # type: ignore[arg-type]
    await engine.tasks["check_limit"].send("AAPL", 1.0)
    async with running_worker(engine, client):
        await wait_for(lambda: done == [1.0])
        await wait_for(lambda: _dead_count(raw, client, 1))
    [dead] = await _dead(raw, client)
    assert dead[b"reason"] == reason
    for name, value in fields.items():
        raw_value = value.encode() if isinstance(value, str) else value
        assert dead[b"orig:" + name.encode()] == raw_value  # the raw fields are preserved
