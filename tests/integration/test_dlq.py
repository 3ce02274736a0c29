"""Dead-letter management against a real server: the Python API and ``nautilus-tasks dlq``."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from nautilus_tasks import BusConfig, Client, ConfigurationError, Engine, Envelope, Task
from nautilus_tasks.cli.dlq import parse_duration
from nautilus_tasks.dlq import DeadLetter, DeadLetters
from nautilus_tasks.message import encode, new_id
from tests.helpers import running_worker, wait_for
from tests.procs import ROOT

pytestmark = pytest.mark.integration

ENGINE = "ledger"


async def cli(redis_url: str, prefix: str, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "NT_REDIS_URL": redis_url, "NT_PREFIX": prefix}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "nautilus_tasks", *args,
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


def _engine() -> Engine:
    engine = Engine(ENGINE)

    @engine.task(retries=0)
    async def fails(n: int) -> None:
        raise ValueError(f"fails {n}")

    @engine.task(retries=0)
    async def crashes(n: int) -> None:
        raise KeyError(n)

    return engine


def _task(engine: Engine, name: str) -> Task[Any, Any]:
    return engine.tasks[name]


async def _dead_len(client: Client) -> int:
    return int(await client.broker._redis.xlen(client.broker.keys(ENGINE).dead))


async def _kill_all(client: Client, engine: Engine, expected: int) -> None:
    """Run a worker until ``expected`` dead letters are there, then stop it."""
    async with running_worker(engine, client):
        await wait_for(lambda: _at_least(client, expected))
    assert await _dead_len(client) == expected


async def _at_least(client: Client, n: int) -> bool:
    return await _dead_len(client) >= n


async def _populate(client: Client, raw: aioredis.Redis) -> Engine:
    """Six dead letters: failed x3 (fails 1, fails 2, crashes 3), invalid, unknown_task,
    malformed."""
    engine = _engine()
    client.bind(engine)
    fails, crashes = _task(engine, "fails"), _task(engine, "crashes")
    await fails.send(1)
    await fails.send(2)
    await crashes.send(3)
    await fails.send("not-a-number")
    await client.send_by_name(ENGINE, "nope", [1])
    await raw.xadd(client.broker.keys(ENGINE).streams[2], {"junk": b"\xff\x00raw"})
    await _kill_all(client, engine, 6)
    return engine


def _by_reason(letters: list[DeadLetter]) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in letters:
        out[d.reason] = out.get(d.reason, 0) + 1
    return out


async def test_list_filters_by_reason_and_task_in_either_order(
    client: Client, raw: aioredis.Redis
) -> None:
    await _populate(client, raw)
    dlq = DeadLetters(client)
    everything = await dlq.list(ENGINE)
    assert _by_reason(everything) == {"failed": 3, "invalid": 1, "unknown_task": 1, "malformed": 1}
    ids = [d.id for d in everything]
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))), reverse=True)
    assert [d.id for d in await dlq.list(ENGINE, newest_first=False)] == ids[::-1]
    assert [d.id for d in await dlq.list(ENGINE, limit=2)] == ids[:2]
    failed = await dlq.list(ENGINE, reason="failed")
    assert sorted((d.task, d.error_type, d.error) for d in failed) == [
        ("crashes", "KeyError", "3"), ("fails", "ValueError", "fails 1"),
        ("fails", "ValueError", "fails 2"),
    ]  # fmt: skip
    assert {d.reason for d in await dlq.list(ENGINE, task="fails")} == {"failed", "invalid"}
    assert len(await dlq.list(ENGINE, reason="failed", task="fails")) == 2
    assert await dlq.list(ENGINE, reason="poison") == []
    assert await dlq.list("elsewhere") == []
    [unknown] = await dlq.list(ENGINE, reason="unknown_task")
    assert unknown.task == "nope" and unknown.envelope is not None
    [bad] = await dlq.list(ENGINE, reason="malformed")
    assert (bad.envelope, bad.message_id, bad.task) == (None, "", "")
    assert bad.original == {"junk": b"\xff\x00raw"}
    for d in everything:
        assert d.engine == ENGINE and d.attempts == 1 and d.deliveries == 1
        assert d.origin == "normal" and d.origin_id and d.consumer and d.dead_at > 0


async def test_get_searches_one_engine_or_all(client: Client, raw: aioredis.Redis) -> None:
    await _populate(client, raw)
    dlq = DeadLetters(client)
    [first] = await dlq.list(ENGINE, reason="failed", task="crashes")
    found = await dlq.get(first.id)
    assert found is not None and found.id == first.id and found.engine == ENGINE
    assert "KeyError" in found.traceback and found.fields["reason"] == b"failed"
    assert await dlq.get(first.id, engine=ENGINE) == found
    assert await dlq.get(first.id, engine="elsewhere") is None
    assert await dlq.get("1-0") is None
    with pytest.raises(ConfigurationError):
        await dlq.get("not-an-id")


async def test_replay_keeps_message_and_correlation_id_and_resets_attempt(
    client: Client, raw: aioredis.Redis
) -> None:
    engine = _engine()
    client.bind(engine)
    original = Envelope(
        id=new_id(), name="fails", priority="high", body={"args": [7], "kwargs": {}},
        correlation_id="corr-7", trace_id="trace-7", attempt=2,
    )  # fmt: skip
    keys = client.broker.keys(ENGINE)
    await raw.xadd(keys.streams[1], {"envelope": encode(original)})
    await _kill_all(client, engine, 1)
    dlq = DeadLetters(client)
    [dead] = await dlq.list(ENGINE)
    assert (dead.origin, dead.attempts, dead.message_id) == ("high", 3, original.id)
    assert await dlq.replay(ENGINE, ids=[dead.id]) == 1
    assert await dlq.replay(ENGINE, ids=[dead.id]) == 0  # gone: nothing doubles
    assert await _dead_len(client) == 0
    [(_, fields)] = await raw.xrange(keys.streams[1])
    replayed = orjson.loads(fields[b"envelope"])
    assert (replayed["id"], replayed["correlation_id"]) == (original.id, "corr-7")
    assert replayed.get("attempt", 0) == 0
    assert replayed["body"] == {"args": [7], "kwargs": {}} and replayed["trace_id"] == "trace-7"
    assert set(fields) == {b"envelope"}


async def test_replay_of_a_malformed_entry_is_verbatim(client: Client, raw: aioredis.Redis) -> None:
    engine = _engine()
    client.bind(engine)
    keys = client.broker.keys(ENGINE)
    junk = {b"envelope": b"\xff not json", b"extra": b"\x00\x01"}
    await raw.xadd(keys.streams[3], junk)
    await _kill_all(client, engine, 1)
    dlq = DeadLetters(client)
    [dead] = await dlq.list(ENGINE, reason="malformed")
    assert dead.origin == "low" and dead.envelope is None
    assert await dlq.replay(ENGINE, all=True) == 1
    [(_, fields)] = await raw.xrange(keys.streams[3])
    assert fields == junk


async def test_concurrent_replays_never_duplicate(
    client: Client, raw: aioredis.Redis, bus: BusConfig
) -> None:
    engine = _engine()
    client.bind(engine)
    fails = _task(engine, "fails")
    await client.send_many(fails, [((n,), {}) for n in range(40)])
    await _kill_all(client, engine, 40)
    dlq = DeadLetters(client)
    ids = [d.id for d in await dlq.list(ENGINE)]
    async with await Client.connect(bus) as other, await Client.connect(bus) as third:
        rivals = [DeadLetters(other), DeadLetters(third)]
        counts = await asyncio.gather(
            dlq.replay(ENGINE, ids=ids[:1]),
            rivals[0].replay(ENGINE, ids=ids[:1]),
            rivals[1].replay(ENGINE, all=True),
            dlq.replay(ENGINE, task="fails"),
            rivals[0].replay(ENGINE, ids=ids[::-1]),
        )
    assert sum(counts) == 40, counts
    keys = client.broker.keys(ENGINE)
    entries = await raw.xrange(keys.streams[2])
    messages = [orjson.loads(f[b"envelope"])["id"] for _, f in entries]
    assert len(messages) == len(set(messages)) == 40
    assert await _dead_len(client) == 0


async def _bury(raw: aioredis.Redis, key: str, at_ms: int, n: int) -> str:
    """A dead entry written at ``at_ms`` (an explicit id), as dead.lua writes one."""
    fields = {"reason": "failed", "task": "fails", "dead_at": str(at_ms), "attempts": "1",
              "origin": "normal", "orig:envelope": encode(Envelope(id=new_id(), name="fails",
              body={"args": [n], "kwargs": {}}))}  # fmt: skip
    return (await raw.xadd(key, fields, id=f"{at_ms}-{n}")).decode()


async def test_purge_by_id_and_by_age(
    client: Client, raw: aioredis.Redis, redis_url: str, prefix: str
) -> None:
    key = client.broker.keys(ENGINE).dead
    seconds, micros = await raw.time()
    now = seconds * 1000 + micros // 1000
    hour = 3600 * 1000
    old = [await _bury(raw, key, now - 3 * hour, 1), await _bury(raw, key, now - 90 * 60_000, 2)]
    recent = [await _bury(raw, key, now - 10_000, 3), await _bury(raw, key, now - 5_000, 4)]
    dlq = DeadLetters(client)
    assert await dlq.purge(ENGINE, older_than=2 * 3600) == 1
    assert await dlq.get(old[0], ENGINE) is None and await dlq.get(old[1], ENGINE) is not None
    code, out, err = await cli(redis_url, prefix, "dlq", "purge", ENGINE, "--older-than", "1h")
    assert (code, out.strip()) == (0, "purged 1"), err
    assert await dlq.purge(ENGINE, older_than=3600) == 0
    assert [d.id for d in await dlq.list(ENGINE)] == recent[::-1]
    assert await dlq.purge(ENGINE, ids=[recent[0], "1-0"]) == 1
    code, out, err = await cli(redis_url, prefix, "dlq", "purge", ENGINE, recent[1])
    assert (code, out.strip()) == (0, "purged 1"), err
    assert await _dead_len(client) == 0
    with pytest.raises(ConfigurationError):
        await dlq.purge(ENGINE)
    with pytest.raises(ConfigurationError):
        await dlq.purge(ENGINE, ids=["1-0"], older_than=5)
    with pytest.raises(ConfigurationError):
        await dlq.replay(ENGINE, ids=["1-0"], all=True)


def test_durations() -> None:
    assert [parse_duration(d) for d in ("30s", "15m", "2h", "7d", "90", "1.5h")] == [
        30, 900, 7200, 7 * 86400, 90, 5400
    ]  # fmt: skip
    for bad in ("", "h", "5x", "-3s"):
        with pytest.raises(ValueError):
            parse_duration(bad)


async def test_cli_list_show_replay(
    client: Client, raw: aioredis.Redis, redis_url: str, prefix: str
) -> None:
    await _populate(client, raw)
    code, out, err = await cli(
        redis_url, prefix, "dlq", "list", ENGINE, "--reason", "failed", "--task", "fails", "--json"
    )
    assert code == 0, err
    rows = orjson.loads(out)
    assert sorted(r["error"] for r in rows) == ["fails 1", "fails 2"]
    assert all(r["attempts"] == 1 and r["envelope"]["name"] == "fails" for r in rows)
    code, out, err = await cli(redis_url, prefix, "dlq", "list", ENGINE, "--limit", "10")
    assert code == 0, err
    assert "malformed" in out and "unknown_task" in out and "ValueError" in out
    code, out, err = await cli(redis_url, prefix, "dlq", "show", rows[0]["id"])
    assert code == 0, err
    assert "Traceback" in out and "ValueError" in out and rows[0]["message_id"] in out
    code, out, err = await cli(redis_url, prefix, "dlq", "show", rows[0]["id"], "--json")
    assert code == 0, err
    shown = orjson.loads(out)
    assert shown["id"] == rows[0]["id"] and "ValueError: fails" in shown["traceback"]
    code, _, err = await cli(redis_url, prefix, "dlq", "show", "1-0", "--engine", ENGINE)
    assert code == 1 and "no dead letter 1-0" in err
    code, _, err = await cli(redis_url, prefix, "dlq", "replay", ENGINE)
    assert code == 2 and "exactly one" in err
    code, _, err = await cli(redis_url, prefix, "dlq", "replay", ENGINE, "1-0", "--all")
    assert code == 2
    code, out, err = await cli(redis_url, prefix, "dlq", "replay", ENGINE, "--task", "crashes")
    assert (code, out.strip()) == (0, "replayed 1"), err
    code, out, err = await cli(redis_url, prefix, "dlq", "replay", ENGINE, rows[0]["id"])
    assert (code, out.strip()) == (0, "replayed 1"), err
    code, out, err = await cli(redis_url, prefix, "dlq", "replay", ENGINE, "--all")
    assert (code, out.strip()) == (0, "replayed 4"), err
    assert await _dead_len(client) == 0
    code, _, err = await cli(redis_url, prefix, "dlq", "purge", ENGINE, "--older-than", "soon")
    assert code == 2 and "duration" in err
