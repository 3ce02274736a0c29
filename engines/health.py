"""The health engine: a periodic ping of the platform, enqueued by the scheduler.

``ping`` runs every minute (``@health.periodic``): any of the ``nautilus-tasks scheduler``
processes enqueues each tick exactly once, and a ``health`` worker runs it. The ping reports
the tick it answers (its nominal fire time, from the message) and how late it ran; a real
platform would check its dependencies here and publish an alert when one is down.

Run it with ``nautilus-tasks scheduler engines.health`` and
``nautilus-tasks worker engines.health:health``; ``nautilus-tasks schedules engines.health``
lists the schedule.
"""

from __future__ import annotations

import logging
import time

from pydantic import BaseModel

from nautilus_tasks import Engine, Priority, current_message

log = logging.getLogger("engines.health")

health = Engine("health")


class Pong(BaseModel):
    """The answer to one ping."""

    service: str
    fire_time: int | None
    """The nominal fire time of the tick (epoch ms), when sent by the scheduler."""
    lag_ms: int | None
    """How long after its nominal fire time the ping ran."""


@health.periodic(cron="* * * * *", tz="UTC", kwargs={"service": "platform"}, misfire="skip")
@health.task(priority=Priority.HIGH, timeout=5.0, ttl=55.0, retries=0)
async def ping(service: str) -> Pong:
    """Answer a health ping; a ping older than its minute expires unrun (``ttl``)."""
    message = current_message()
    fire_time = message.envelope.fire_time if message is not None else None
    lag = None if fire_time is None else int(time.time() * 1000) - fire_time
    log.info("ping of %s: tick %s, %s ms late", service, fire_time, lag)
    return Pong(service=service, fire_time=fire_time, lag_ms=lag)
