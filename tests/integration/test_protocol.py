"""The wire protocol, from the outside: messages written by hand, as docs/protocol.md shows them.

Nothing on the sending side here uses the project's code: every message is a JSON string
literal, written by hand and stored with a plain XADD (or ZADD) through redis-py, exactly as
a producer in another language would. Only the receiving side is a nautilus-tasks worker.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from pydantic import BaseModel

from nautilus_tasks import Client, Engine, Priority
from tests.helpers import running_worker, wait_for

pytestmark = pytest.mark.integration

# The worked example of docs/protocol.md ("A worked example"), character for character.
DOC_EXAMPLE = (
    '{"v":1,"id":"doc-0001","kind":"task","name":"check_trade","priority":"high",'
    '"body":{"args":[{"symbol":"AAPL","qty":10,"price":187.5}],"kwargs":{"limit":5000.0}},'
    '"source":"redis-cli","attempt":0}'
)


class Trade(BaseModel):
    symbol: str
    qty: float
    price: float


def riskdoc_engine(seen: list[tuple[object, ...]]) -> Engine:
    """The receiving side of the doc's example: engine ``riskdoc``, task ``check_trade``."""
    riskdoc = Engine("riskdoc")

    @riskdoc.task(priority="high")
    def check_trade(trade: Trade, limit: float) -> bool:
        seen.append(("check_trade", trade, limit))
        return trade.qty * trade.price <= limit

    @riskdoc.task
    async def ping() -> None:
        seen.append(("ping",))

    @riskdoc.task
    async def add(a: int, b: int = 0) -> int:
        seen.append(("add", a, b))
        return a + b

    @riskdoc.task(retries=0)
    async def explode() -> None:
        raise ValueError("boom")

    return riskdoc


async def _xlen_is(raw: aioredis.Redis, key: str, n: int) -> bool:
    return int(await raw.xlen(key)) == n


async def _entries(raw: aioredis.Redis, key: str) -> list[dict[bytes, bytes]]:
    """The fields of every entry of a stream, oldest first."""
    rows: Any = await raw.xrange(key)
    return [dict(fields) for _, fields in rows]


async def _report(raw: aioredis.Redis, key: str, consumer: str) -> dict[str, Any] | None:
    """A worker's JSON report in the stats hash, if it wrote one."""
    reply: Any = raw.hget(key, consumer)  # typed as sync-or-async by redis-py
    data = await reply
    return None if data is None else dict(orjson.loads(data))


async def _redis_now_ms(raw: aioredis.Redis) -> int:
    seconds, micros = await raw.time()
    return int(seconds) * 1000 + int(micros) // 1000


def test_the_literal_here_is_the_one_in_the_doc() -> None:
    doc = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
    assert f"envelope '{DOC_EXAMPLE}'" in doc.read_text("utf-8")


async def test_key_names_built_by_hand_match_the_schema(client: Client, prefix: str) -> None:
    keys = client.broker.keys("riskdoc")
    assert f"{prefix}:{{riskdoc}}:q:high" == keys.stream(Priority.HIGH)
    assert [f"{prefix}:{{riskdoc}}:q:{tier}" for tier in ("critical", "high", "normal", "low")] == [
        keys.stream(p) for p in (Priority.CRITICAL, Priority.HIGH, Priority.NORMAL, Priority.LOW)
    ]
    assert keys.delayed == f"{prefix}:{{riskdoc}}:delayed"
    assert keys.dead == f"{prefix}:{{riskdoc}}:dead"
    assert keys.workers == f"{prefix}:{{riskdoc}}:workers"
    assert keys.stats == f"{prefix}:{{riskdoc}}:stats"
    assert keys.group == "riskdoc"


async def test_raw_xadd_from_the_doc_is_executed(
    client: Client, raw: aioredis.Redis, prefix: str
) -> None:
    seen: list[tuple[object, ...]] = []
    engine = riskdoc_engine(seen)
    stream = f"{prefix}:{{riskdoc}}:q:high"
    # Sent before any worker of the engine ever ran: XADD creates the stream, and the
    # worker creates the group from id 0, so the message is not skipped.
    entry_id = await raw.xadd(stream, {"envelope": DOC_EXAMPLE})
    assert entry_id
    async with running_worker(engine, client) as worker:
        await wait_for(lambda: len(seen) == 1)
        await wait_for(lambda: _xlen_is(raw, stream, 0))  # acked and deleted
        assert worker.stats.counts["succeeded"] == 1
    (name, trade, limit) = seen[0]
    assert name == "check_trade"
    assert isinstance(trade, Trade)
    assert trade == Trade(symbol="AAPL", qty=10.0, price=187.5)
    assert isinstance(trade.qty, float)
    assert isinstance(limit, float)
    assert limit == 5000.0
    assert await raw.xlen(f"{prefix}:{{riskdoc}}:dead") == 0
    pending = await raw.xpending(stream, "riskdoc")
    assert pending["pending"] == 0


async def test_minimal_envelopes_with_only_required_fields_run(
    client: Client, raw: aioredis.Redis, prefix: str
) -> None:
    seen: list[tuple[object, ...]] = []
    engine = riskdoc_engine(seen)
    normal = f"{prefix}:{{riskdoc}}:q:normal"
    # v, id and name are all that is required; body may be left out for a task without
    # required parameters, and "kwargs" (or "args") may be left out of a body.
    await raw.xadd(normal, {"envelope": '{"v":1,"id":"m-1","name":"ping"}'})
    await raw.xadd(normal, {"envelope": '{"v":1,"id":"m-2","name":"add","body":{"args":[2]}}'})
    await raw.xadd(
        normal, {"envelope": '{"v":1,"id":"m-3","name":"add","body":{"kwargs":{"a":"4","b":5}}}'}
    )
    async with running_worker(engine, client):
        await wait_for(lambda: len(seen) == 3)
        await wait_for(lambda: _xlen_is(raw, normal, 0))
    assert sorted(seen, key=repr) == sorted([("ping",), ("add", 2, 0), ("add", 4, 5)], key=repr)
    assert await raw.xlen(f"{prefix}:{{riskdoc}}:dead") == 0


async def test_unknown_extra_fields_are_ignored(
    client: Client, raw: aioredis.Redis, prefix: str
) -> None:
    seen: list[tuple[object, ...]] = []
    engine = riskdoc_engine(seen)
    low = f"{prefix}:{{riskdoc}}:q:low"
    await raw.xadd(
        low,
        {
            "envelope": '{"v":1,"id":"x-1","name":"add","priority":"low",'
            '"body":{"args":[1],"kwargs":{"b":2},"note":"body extras are ignored too"},'
            '"producer_version":"go-1.4.2","headers":{"tenant":"acme"},"retry_policy":null}',
            "origin": "a second stream field, also ignored",
        },
    )
    async with running_worker(engine, client):
        await wait_for(lambda: len(seen) == 1)
        await wait_for(lambda: _xlen_is(raw, low, 0))
    assert seen == [("add", 1, 2)]
    assert await raw.xlen(f"{prefix}:{{riskdoc}}:dead") == 0


async def test_ttl_counts_from_enqueued_at(
    client: Client, raw: aioredis.Redis, prefix: str
) -> None:
    seen: list[tuple[object, ...]] = []
    engine = riskdoc_engine(seen)
    critical = f"{prefix}:{{riskdoc}}:q:critical"
    dead = f"{prefix}:{{riskdoc}}:dead"
    now = time.time_ns() // 1_000_000
    fresh = (
        '{"v":1,"id":"t-fresh","name":"add","priority":"critical","body":{"args":[7]},'
        f'"enqueued_at":{now},"ttl":60000}}'
    )
    stale = (
        '{"v":1,"id":"t-stale","name":"add","priority":"critical","body":{"args":[8]},'
        f'"enqueued_at":{now - 120_000},"ttl":60000}}'
    )
    await raw.xadd(critical, {"envelope": fresh})
    await raw.xadd(critical, {"envelope": stale})
    async with running_worker(engine, client):
        await wait_for(lambda: _xlen_is(raw, dead, 1))
        await wait_for(lambda: len(seen) == 1)
    assert seen == [("add", 7, 0)]
    [fields] = await _entries(raw, dead)
    assert fields[b"reason"] == b"expired"
    assert fields[b"message_id"] == b"t-stale"
    assert fields[b"orig:envelope"] == stale.encode()


async def test_rejected_messages_are_dead_lettered_with_their_reason(
    client: Client, raw: aioredis.Redis, prefix: str
) -> None:
    seen: list[tuple[object, ...]] = []
    engine = riskdoc_engine(seen)
    high = f"{prefix}:{{riskdoc}}:q:high"
    dead = f"{prefix}:{{riskdoc}}:dead"
    cases = {
        '{"v":1,"id":"d-1","name":"check_trade"': "malformed",  # not JSON
        '{"v":2,"id":"d-2","name":"ping"}': "malformed",  # another wire version
        '{"id":"d-3","name":"ping"}': "malformed",  # no "v"
        '{"v":1,"name":"ping"}': "malformed",  # no "id"
        '{"v":1,"id":"d-5","name":"ping","priority":"urgent"}': "malformed",
        '{"v":1,"id":"d-6","name":"ping","kind":"reply"}': "malformed",
        '{"v":1,"id":"d-7","name":"no_such_task"}': "unknown_task",
        '{"v":1,"id":"d-8","name":"check_trade","body":{"args":[{"symbol":"AAPL"}],'
        '"kwargs":{"limit":5000.0}}}': "invalid",
        '{"v":1,"id":"d-9","name":"add","body":{"args":[1],"kwargs":{"c":3}}}': "invalid",
        '{"v":1,"id":"d-10","name":"add","body":{"args":[1],"kwargs":null}}': "invalid",
        '{"v":1,"id":"d-12","name":"explode"}': "failed",
    }
    for envelope in cases:
        await raw.xadd(high, {"envelope": envelope})
    await raw.xadd(high, {"payload": '{"v":1,"id":"d-11","name":"ping"}'})  # no envelope field
    async with running_worker(engine, client) as worker:
        await wait_for(lambda: _xlen_is(raw, dead, len(cases) + 1))
        consumer = worker.consumer
    assert seen == []
    assert await raw.xlen(high) == 0
    entries = await _entries(raw, dead)
    by_envelope = {f[b"orig:envelope"].decode(): f for f in entries if b"orig:envelope" in f}
    assert {k: v[b"reason"].decode() for k, v in by_envelope.items()} == cases
    for fields in entries:
        assert fields[b"deliveries"] == b"1"
        assert fields[b"origin"] == b"high"
        assert fields[b"consumer"] == consumer.encode()
        assert int(fields[b"dead_at"]) > 0
        assert fields[b"origin_id"]
    (no_field,) = [f for f in entries if b"orig:envelope" not in f]
    assert no_field[b"reason"] == b"malformed"
    assert no_field[b"orig:payload"] == b'{"v":1,"id":"d-11","name":"ping"}'
    assert no_field[b"message_id"] == b""
    unknown = by_envelope['{"v":1,"id":"d-7","name":"no_such_task"}']
    assert unknown[b"message_id"] == b"d-7"
    assert unknown[b"task"] == b"no_such_task"
    assert unknown[b"attempts"] == b"1"
    failed = by_envelope['{"v":1,"id":"d-12","name":"explode"}']
    assert failed[b"error_type"] == b"ValueError"
    assert failed[b"error"] == b"boom"
    assert b"ValueError: boom" in failed[b"traceback"]
    invalid = by_envelope['{"v":1,"id":"d-9","name":"add","body":{"args":[1],"kwargs":{"c":3}}}']
    assert invalid[b"error_type"] == b"InvalidArguments"
    assert b"c: Extra inputs are not permitted" in invalid[b"error"]


async def test_a_delayed_member_written_by_hand_is_promoted_and_run(
    client: Client, raw: aioredis.Redis, prefix: str
) -> None:
    seen: list[tuple[object, ...]] = []
    engine = riskdoc_engine(seen)
    delayed = f"{prefix}:{{riskdoc}}:delayed"
    member = 'high|{"v":1,"id":"z-1","name":"add","priority":"high","body":{"args":[40,2]}}'
    due = await _redis_now_ms(raw) + 200  # due time by Redis TIME, in epoch ms
    await raw.zadd(delayed, {member: due})
    async with running_worker(engine, client):
        await wait_for(lambda: len(seen) == 1)
        await wait_for(lambda: _xlen_is(raw, f"{prefix}:{{riskdoc}}:q:high", 0))
    assert seen == [("add", 40, 2)]
    assert await raw.zcard(delayed) == 0


async def test_workers_zset_and_stats_hash(
    client: Client, raw: aioredis.Redis, prefix: str
) -> None:
    seen: list[tuple[object, ...]] = []
    engine = riskdoc_engine(seen)
    workers = f"{prefix}:{{riskdoc}}:workers"
    stats = f"{prefix}:{{riskdoc}}:stats"
    normal = f"{prefix}:{{riskdoc}}:q:normal"
    await raw.xadd(normal, {"envelope": '{"v":1,"id":"s-1","name":"ping"}'})
    async with running_worker(engine, client) as worker:
        await wait_for(lambda: len(seen) == 1)
        name = worker.consumer

        async def reported() -> bool:
            report = await _report(raw, stats, name)
            return report is not None and report["counts"].get("acked") == 1

        await wait_for(reported, timeout=10)
        assert await raw.zscore(workers, name) is not None
    report = await _report(raw, stats, name)
    assert report is not None
    assert report["counts"]["succeeded"] == 1
    assert isinstance(report["at"], int)
    assert isinstance(report["latency"], dict)


async def test_a_clean_stop_leaves_the_workers_zset(
    client: Client, raw: aioredis.Redis, prefix: str
) -> None:
    engine = riskdoc_engine([])
    async with running_worker(engine, client) as worker:
        name = worker.consumer
        workers = f"{prefix}:{{riskdoc}}:workers"

        async def listed() -> bool:
            return await raw.zscore(workers, name) is not None

        await wait_for(listed, timeout=10)
    assert await raw.zscore(workers, name) is None
