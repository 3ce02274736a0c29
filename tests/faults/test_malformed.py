"""Bad stream entries, written with raw XADDs, are dead-lettered by a real worker process.

Acceptance test 6 of the reliability issue (``tests/integration/test_bad_input.py``
covers each variant in-process; this is the process-level run). Each malformed
variant goes to ``P:{E}:dead`` with its reason and its raw fields under ``orig:*``,
while 1,000 good tasks interleaved with them all run, and the worker keeps going.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson
import pytest
import redis.asyncio as aioredis

from nautilus_tasks import Client, Priority
from tests.apps.recorder import record, recorder
from tests.helpers import wait_for
from tests.ledger import Ledger
from tests.procs import start_worker, stop_workers

pytestmark = pytest.mark.integration

GOOD = 1000
DEEP = "[" * 80 + "]" * 80
ARGS = '"body":{"args":[1],"kwargs":{}}'

Fields = dict[str, str | bytes]

VARIANTS: list[tuple[str, Fields, bytes]] = [
    ("no envelope field", {"other": "x"}, b"malformed"),
    ("envelope without id and name", {"envelope": '{"v":1}'}, b"malformed"),
    ("invalid JSON", {"envelope": "{not json"}, b"malformed"),
    ("non-UTF-8 bytes", {"envelope": b"\xff\xfe\x00bad"}, b"malformed"),
    ("non-UTF-8 in a JSON string", {"envelope": b'{"v":1,"id":"a","name":"rec\xffrd"}'},
     b"malformed"),
    ("JSON that is not an object", {"envelope": "[1,2,3]"}, b"malformed"),
    ("wrong format version", {"envelope": '{"v":2,"id":"a","name":"record",' + ARGS + "}"},
     b"malformed"),
    ("no format version", {"envelope": '{"id":"a","name":"record",' + ARGS + "}"}, b"malformed"),
    ("deep nesting", {"envelope": '{"v":1,"id":"a","name":"record","body":' + DEEP + "}"},
     b"malformed"),
    ("a reply in an engine inbox", {"envelope": '{"v":1,"id":"a","kind":"reply","name":"t.x"}'},
     b"malformed"),
    ("unknown task name", {"envelope": '{"v":1,"id":"a","name":"no_such_task",' + ARGS + "}"},
     b"unknown_task"),
]  # fmt: skip


def _raw(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


async def test_malformed_entries_are_dead_lettered_while_good_tasks_all_run(
    client: Client, raw: aioredis.Redis, redis_url: str, prefix: str, tmp_path: Path
) -> None:
    client.bind(recorder)
    keys = client.broker.keys("recorder")
    ledger = Ledger(raw, prefix)
    log = tmp_path / "worker.log"
    proc = start_worker("tests.apps.recorder:recorder", redis_url, prefix, "-c", "50", log=log)
    # keyed by (tier, entry id): two tiers' streams can hand out the same auto id in one ms
    bad: dict[tuple[bytes, str], tuple[str, Fields, bytes]] = {}
    try:
        # interleave: a chunk of good tasks, one bad entry (in each tier in turn), and so on,
        # while the worker is already consuming
        chunk = GOOD // len(VARIANTS) + 1
        for i, (name, fields, reason) in enumerate(VARIANTS):
            start, stop = i * chunk, min(GOOD, (i + 1) * chunk)
            await client.send_many(record, [((n,), {}) for n in range(start, stop)])
            ledger.sent.update(range(start, stop))
            tier = list(Priority)[i % len(Priority)]
            entry_id = await raw.xadd(keys.stream(tier), fields)  # type: ignore[arg-type]
            bad[(tier.label.encode(), entry_id.decode())] = (name, fields, reason)
        assert ledger.sent == set(range(GOOD))

        async def dead_letters() -> int:
            return int(await raw.xlen(keys.dead))

        await wait_for(ledger.all_ran, 60)
        await wait_for(lambda: _at_least(dead_letters, len(VARIANTS)), 30)

        async def counted() -> bool:  # the worker writes its counters every second
            counts = await _counts(raw, keys.stats)
            names = ("succeeded", "dead_malformed", "dead_unknown_task")
            return sum(counts.get(n, 0) for n in names) >= GOOD + len(VARIANTS)

        await wait_for(counted, 30)
        assert proc.poll() is None, "the worker kept going: " + log.read_text()
        assert stop_workers([proc]) == [0], log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    report = await ledger.check()
    assert report.missing == set(), "every good task ran"
    assert report.unknown == set(), "nothing ran that was never sent"
    assert report.duplicates == 0, "no crash, no lease loss: nothing runs twice"

    dead = await raw.xrange(keys.dead)
    assert len(dead) == len(VARIANTS)
    for _, entry in dead:
        origin = (entry[b"origin"], entry[b"origin_id"].decode())
        assert origin in bad, entry  # the tier it came from and its id there
        name, fields, reason = bad.pop(origin)
        assert entry[b"reason"] == reason, name
        assert entry[b"error"], name
        assert entry[b"deliveries"] == b"1", name
        originals = {k[len(b"orig:") :]: v for k, v in entry.items() if k.startswith(b"orig:")}
        assert originals == {k.encode(): _raw(v) for k, v in fields.items()}, name
    assert bad == {}, "each bad entry was dead-lettered exactly once"

    for stream in keys.streams:
        assert await raw.xlen(stream) == 0, "nothing left behind, nothing silently dropped"
    info = await client.broker.inspect("recorder")
    assert sum(t.pending for t in info.tiers) == 0
    counts = await _counts(raw, keys.stats)
    assert counts.get("dead_malformed") == len(VARIANTS) - 1
    assert counts.get("dead_unknown_task") == 1
    assert counts.get("succeeded") == GOOD


async def _at_least(count: Callable[[], Awaitable[int]], n: int) -> bool:
    return await count() >= n


async def _counts(raw: aioredis.Redis, stats_key: str) -> dict[str, int]:
    """The counters of every worker of the engine, added up."""
    total: dict[str, int] = {}
    for data in (await raw.hgetall(stats_key)).values():
        for name, value in orjson.loads(data)["counts"].items():
            total[name] = total.get(name, 0) + int(value)
    return total
