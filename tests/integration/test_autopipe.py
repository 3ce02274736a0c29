"""The auto-pipelined Redis handle (engine.redis / client.redis()) against a real server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from nautilus_tasks import BusConfig, Client, Engine, WorkerConfig
from nautilus_tasks.broker.redis.autopipe import AutoPipeline
from nautilus_tasks.errors import BusError, BusUnavailable, ConfigurationError, NotBound
from tests.faults.proxy import Proxy
from tests.helpers import running_worker, wait_for
from tests.procs import start_worker, stop_workers


async def test_concurrent_callers_get_their_own_replies(client: Client, prefix: str) -> None:
    handle = client.redis()
    assert client.redis("default") is handle  # one handle per bus

    async def caller(i: int) -> tuple[int, bytes | None]:
        total = await handle.incrby(f"{prefix}:n{i}", i)
        return total, await handle.get(f"{prefix}:n{i}")

    results = await asyncio.gather(*(caller(i) for i in range(200)))
    assert results == [(i, str(i).encode()) for i in range(200)]
    assert handle.commands == 400
    assert handle.batches <= 4  # two waves of 200 gathered callers, not 400 round trips


async def test_an_error_reply_fails_only_its_caller(
    client: Client, raw: aioredis.Redis, prefix: str
) -> None:
    handle = client.redis()
    await raw.set(f"{prefix}:text", "not a number")
    calls = [handle.incr(f"{prefix}:c{i}") for i in range(5)]
    calls.insert(2, handle.incr(f"{prefix}:text"))
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert results[:2] == [1, 1] and results[3:] == [1, 1, 1]
    assert isinstance(results[2], BusError) and not isinstance(results[2], BusUnavailable)
    assert "not an integer" in str(results[2])
    assert handle.batches == 1 and handle.commands == 6
    assert await handle.incr(f"{prefix}:c0") == 2  # the handle goes on


async def test_commands_of_one_caller_keep_their_order(
    client: Client, raw: aioredis.Redis, prefix: str
) -> None:
    handle = AutoPipeline.of(client.broker, max_batch=16)  # many batches for 300 commands
    first = handle.set(f"{prefix}:v", "1")
    second = handle.incr(f"{prefix}:v")
    third = handle.get(f"{prefix}:v")
    assert (await first, await second, await third) == (True, 2, b"2")
    pushes = [handle.execute("RPUSH", f"{prefix}:list", i) for i in range(300)]
    assert await asyncio.gather(*pushes) == list(range(1, 301))
    assert await raw.lrange(f"{prefix}:list", 0, -1) == [str(i).encode() for i in range(300)]
    assert handle.batches >= 300 // 16


async def test_typed_helpers(client: Client, raw: aioredis.Redis, prefix: str) -> None:
    r = client.redis()
    key, h, s = f"{prefix}:k", f"{prefix}:h", f"{prefix}:s"
    assert await r.set(key, b"x", ex=60) is True
    assert await r.set(key, "y", nx=True) is False
    assert 0 < await raw.pttl(key) <= 60_000
    assert await r.set(key, 5, px=50_000, xx=True) is True
    assert await r.hset(h, {"a": 1, "b": "two"}) == 2
    assert await r.hincrby(h, "a", 4) == 5
    assert await r.hget(h, "b") == b"two" and await r.hget(h, "zz") is None
    assert await r.expire(h, 100) is True
    entry = await r.xadd(s, {"f": "v"}, maxlen=10)
    assert (await raw.xrange(s))[0] == (entry, {b"f": b"v"})
    assert await r.delete(key, h, f"{prefix}:missing") == 2
    assert await r.execute("EXISTS", key) == 0
    with pytest.raises(ConfigurationError):
        r.set(key, 1, ex=1, px=1000)


@pytest.mark.parametrize(
    "args",
    [("BLPOP", "k", 0), ("xread", "BLOCK", 0, "STREAMS", "s", "$"), ("MULTI",), ("SUBSCRIBE", "c")],
)
async def test_blocking_and_transaction_commands_are_refused(
    client: Client, args: tuple[object, ...]
) -> None:
    with pytest.raises(ConfigurationError, match="auto-pipeline"):
        client.redis().execute(*args)
    assert client.redis().pending == 0


async def test_a_bad_argument_is_refused_at_the_call(client: Client, prefix: str) -> None:
    handle = client.redis()
    with pytest.raises(ConfigurationError, match="NoneType"):
        handle.execute("SET", f"{prefix}:k", None)
    with pytest.raises(ConfigurationError, match="bool"):
        handle.execute("SET", f"{prefix}:k", True)
    assert await handle.set(f"{prefix}:k", 1) is True


async def test_engine_handle_needs_a_bound_client(bus: BusConfig, raw: aioredis.Redis) -> None:
    engine = Engine("piped")  # declaring does no I/O
    with pytest.raises(NotBound, match=r"client.bind\(piped\)"):
        engine.redis  # noqa: B018
    client = await Client.connect(bus)
    client.bind(engine)
    handle = engine.redis
    assert handle is client.redis()
    assert await handle.incr(f"{bus.prefix}:bound") == 1
    await client.close()
    with pytest.raises(NotBound):
        engine.redis  # noqa: B018
    with pytest.raises(BusUnavailable, match="closed"):
        handle.incr(f"{bus.prefix}:bound")
    with pytest.raises(ConfigurationError, match="no bus 'other'"):
        client.redis("other")


async def test_close_sends_what_is_queued(bus: BusConfig, raw: aioredis.Redis) -> None:
    client = await Client.connect(bus)
    futures = [client.redis().incr(f"{bus.prefix}:late") for _ in range(10)]
    await client.close()
    assert [f.result() for f in futures] == list(range(1, 11))


async def test_a_caller_cancelled_before_the_send_is_left_out(client: Client, prefix: str) -> None:
    handle = client.redis()
    kept = handle.incr(f"{prefix}:a")
    dropped = handle.incr(f"{prefix}:b")
    dropped.cancel()
    assert await kept == 1
    assert handle.commands == 1
    assert await handle.get(f"{prefix}:b") is None


@pytest.fixture
async def proxied(redis_url: str, prefix: str) -> AsyncIterator[tuple[Proxy, Client]]:
    host, port = redis_url.removeprefix("redis://").split("/")[0].split(":")
    async with Proxy(host, int(port)) as proxy:
        bus = BusConfig.from_url(proxy.url, prefix=prefix, socket_timeout=5.0)
        client = await Client.connect(bus)
        try:
            yield proxy, client
        finally:
            proxy.resume()
            await client.close()


async def test_a_caller_cancelled_in_flight_does_not_break_the_batch(
    proxied: tuple[Proxy, Client], prefix: str
) -> None:
    proxy, client = proxied
    handle = client.redis()
    proxy.stall()
    callers = [asyncio.create_task(_incr(handle, f"{prefix}:x{i}")) for i in range(3)]
    await wait_for(lambda: handle.batches == 1)  # the batch is written, its replies wait
    callers[1].cancel()
    proxy.resume()
    assert await callers[0] == 1 and await callers[2] == 1
    with pytest.raises(asyncio.CancelledError):
        await callers[1]
    assert await handle.get(f"{prefix}:x1") == b"1"  # sent before the cancel: it ran
    assert handle.commands == 4


async def _incr(handle: AutoPipeline, key: str) -> int:
    return await handle.incr(key)


async def test_connection_loss_fails_the_batch_then_the_handle_recovers(
    proxied: tuple[Proxy, Client], prefix: str
) -> None:
    proxy, client = proxied
    handle = client.redis()
    assert await handle.incr(f"{prefix}:before") == 1
    proxy.stall()
    futures = [handle.incr(f"{prefix}:lost{i}") for i in range(5)]
    await wait_for(lambda: handle.batches == 2)
    assert proxy.cut() >= 1
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert all(isinstance(r, BusUnavailable) for r in results), results
    assert len({id(r) for r in results}) == 5  # each caller its own exception
    proxy.resume()
    assert await handle.incr(f"{prefix}:before") == 2  # a fresh connection


async def test_handlers_in_a_worker_share_round_trips(client: Client, prefix: str) -> None:
    engine = Engine("autopipe")
    counter = f"{prefix}:done"

    @engine.task
    async def bump() -> None:
        await engine.redis.incr(counter)

    client.bind(engine)
    n = 400
    await client.send_many(bump, [((), {})] * n)
    handle = engine.redis
    config = WorkerConfig(concurrency=100, grace=5)
    async with running_worker(engine, client, config):
        await wait_for(lambda: handle.commands >= n)
    assert int(await handle.get(counter) or 0) == n
    assert handle.commands == n + 1
    assert handle.batches <= n // 4, handle  # far fewer round trips than tasks


async def test_a_worker_process_binds_engine_redis(
    redis_url: str, raw: aioredis.Redis, client: Client, prefix: str
) -> None:
    from tests.apps.autopiped import autopiped, bump

    client.bind(autopiped)
    n = 300
    await client.send_many(bump, [((i,), {}) for i in range(n)])
    proc = start_worker("tests.apps.autopiped:autopiped", redis_url, prefix, "-c", "100")
    try:
        await wait_for(lambda: _count(raw, f"{prefix}:test:done", n), timeout=60)
    finally:
        assert stop_workers([proc]) == [0]
    batches = int(await raw.get(f"{prefix}:test:batches") or 0)
    assert 0 < batches <= n // 2, batches  # 2n commands in far fewer round trips


async def _count(raw: aioredis.Redis, key: str, n: int) -> bool:
    return int(await raw.get(key) or 0) >= n
