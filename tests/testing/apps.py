"""Engines for the test-bus suites: a shop that prices, charges and publishes orders, and
an audit engine that subscribes to the shop's events with a glob pattern.

``calls`` records, in order, which handler started for which argument; the suites reset
it before each test.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from pydantic import BaseModel

from nautilus_tasks import Engine, Priority, Retry, current_message

shop = Engine("shop")
audit = Engine("audit")

calls: list[tuple[str, Any]] = []


class Order(BaseModel):
    id: str
    qty: int
    price: float


class Receipt(BaseModel):
    order_id: str
    total: float


@shop.task
async def price(order: Order) -> Receipt:
    calls.append(("price", order.id))
    return Receipt(order_id=order.id, total=order.qty * order.price)


@shop.task
async def place(order: Order) -> Receipt:
    """Price the order and publish it on shop.order.placed."""
    calls.append(("place", order.id))
    receipt = Receipt(order_id=order.id, total=order.qty * order.price)
    await shop.publish("shop.order.placed", receipt)
    return receipt


@shop.task(priority=Priority.LOW)
async def restock(n: int) -> int:
    calls.append(("restock", n))
    return n


@shop.task(priority=Priority.CRITICAL)
async def halt(reason: str) -> str:
    calls.append(("halt", reason))
    return reason


@shop.task(retries=3)
async def charge(order_id: str) -> str:
    """Fails its first run and asks to be retried in 30 s."""
    context = current_message()
    attempt = 0 if context is None else context.attempt
    calls.append(("charge", attempt))
    if attempt == 0:
        raise Retry(delay=30.0, reason="card processor busy")
    return f"charged {order_id}"


@shop.task(retries=1, backoff_base=60.0, backoff_max=30.0)
async def settle(order_id: str) -> str:
    """Fails its first run with an ordinary exception: retried after the task's backoff."""
    context = current_message()
    attempt = 0 if context is None else context.attempt
    calls.append(("settle", attempt))
    if attempt == 0:
        raise ValueError("ledger locked")
    return f"settled {order_id}"


@shop.task(retries=0)
async def explode(x: int) -> None:
    calls.append(("explode", x))
    raise RuntimeError(f"exploded on {x}")


@shop.task(retries=0)
def explode_sync(x: int) -> None:
    """A sync handler: it runs in a worker thread."""
    calls.append(("explode_sync", x))
    raise LookupError(f"nothing at {x}")


@shop.task
async def remind(text: str) -> str:
    calls.append(("remind", text))
    return text


@shop.task
def stamp(text: str) -> str:
    """A sync handler that returns; ``calls`` gets the name of the thread it ran in."""
    calls.append(("stamp", threading.current_thread().name))
    return f"{text}@{int(time.time())}"


@audit.on("shop.order.*")
async def on_order(receipt: Receipt, topic: str) -> str:
    calls.append(("audit", topic))
    return receipt.order_id


@audit.task
async def verify(order: Order) -> float:
    """Asks the shop for the price while it runs: a request from inside a handler."""
    calls.append(("verify", order.id))
    receipt = await price.request(order, timeout=10)
    return receipt.total


@shop.task
async def crunch(steps: int) -> int:
    """A handler that gives the event loop back ``steps`` times before it returns."""
    for _ in range(steps):
        await asyncio.sleep(0)
    calls.append(("crunch", steps))
    return steps


@shop.task(retries=0)
async def hang() -> None:
    """Never finishes on its own."""
    calls.append(("hang", None))
    await asyncio.Event().wait()
