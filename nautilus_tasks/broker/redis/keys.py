"""THE key schema. Every key the framework touches is named here and nowhere else.

``P`` is the bus prefix (``nt`` by default, ``BusConfig.prefix``); ``E`` is an
engine name. All of one engine's keys share the hash tag ``{E}``, so each
engine's Lua scripts stay on one Redis Cluster slot.

====================================  =======  =============================================
key                                   type     what
====================================  =======  =============================================
``P:{E}:q:critical``                  stream   engine E's inbox, critical tier; group ``E``
``P:{E}:q:high``                      stream   ... high tier
``P:{E}:q:normal``                    stream   ... normal tier
``P:{E}:q:low``                       stream   ... low tier
``P:{E}:delayed``                     zset     messages due later; member ``<tier>|<envelope>``,
                                               score = due time, epoch ms by Redis TIME
``P:{E}:dead``                        stream   dead letters: reason, error, and the original
                                               entry's fields under ``orig:<field>``
``P:{E}:workers``                     zset     consumers of E, score = last heartbeat (ms)
``P:{E}:stats``                       hash     consumer name -> JSON counters and latency
                                               histogram, written by each worker
``P:{E}:result:<message id>``         string   a stored outcome (reply envelope), with a TTL
``P:{E}:schedules``                   hash     periodic schedules of E's tasks: per schedule id
                                               S, ``S|fire`` = nominal fire time (epoch ms) of
                                               the latest tick taken, ``S|at`` = Redis time of
                                               the latest enqueue, ``S|message`` = its message
                                               id, ``S|enqueued`` / ``S|refused`` / ``S|full``
                                               = counters (see ``lua/tick.lua``)
``P:{E}:tick:<S>:<fire ms>``          string   dedup key of one tick of schedule S, set NX
                                               with an expiry by the scheduler that enqueues it
``P:reply:<client id>``               stream   one requesting process's replies; the live
                                               client refreshes its TTL and deletes what it
                                               read, so a dead caller's stream expires
``P:{subs}``                          hash     field ``<engine> <pattern>`` -> "1": the event
                                               subscriptions of every engine
``P:{subs}:version``                  string   counter, raised whenever ``P:{subs}`` changes
====================================  =======  =============================================

The consumer group of every inbox stream is named after the engine, ``E``.
Most scripts touch one engine's keys only (one Cluster slot); ``finish.lua`` also writes a
reply stream and other engines' inboxes (callbacks), and ``register.lua`` the registry.
Each stream entry has one field, ``envelope`` (see ``docs/protocol.md``).
"""

from __future__ import annotations

from ...priority import TIERS, Priority


class Keys:
    """Key names of one engine on one bus."""

    __slots__ = (
        "dead",
        "delayed",
        "engine",
        "group",
        "prefix",
        "schedules",
        "stats",
        "streams",
        "workers",
    )

    def __init__(self, prefix: str, engine: str) -> None:
        self.prefix = prefix
        self.engine = engine
        base = f"{prefix}:{{{engine}}}"
        self.streams: tuple[str, ...] = tuple(f"{base}:q:{p.label}" for p in TIERS)
        self.delayed = f"{base}:delayed"
        self.dead = f"{base}:dead"
        self.workers = f"{base}:workers"
        self.stats = f"{base}:stats"
        self.schedules = f"{base}:schedules"
        self.group = engine

    def stream(self, priority: Priority) -> str:
        """The inbox stream of one tier."""
        return self.streams[priority]

    def result(self, message_id: str) -> str:
        """Where the outcome of message ``message_id`` is stored."""
        return f"{self.prefix}:{{{self.engine}}}:result:{message_id}"

    def tick(self, schedule: str, fire_ms: int) -> str:
        """The dedup key of one tick of a periodic schedule."""
        return f"{self.prefix}:{{{self.engine}}}:tick:{schedule}:{fire_ms}"


def reply_stream(prefix: str, client_id: str) -> str:
    """The reply stream of one requesting client."""
    return f"{prefix}:reply:{client_id}"


def subs_keys(prefix: str) -> tuple[str, str]:
    """The subscription registry and its version counter (one hash slot)."""
    return f"{prefix}:{{subs}}", f"{prefix}:{{subs}}:version"


def inbox_pattern(prefix: str) -> str:
    """A SCAN pattern matching every inbox stream on the bus."""
    return f"{prefix}:{{*}}:q:*"


def engine_of(prefix: str, key: str) -> str | None:
    """The engine name in an inbox key, or None if ``key`` is not one."""
    head = f"{prefix}:{{"
    if not key.startswith(head):
        return None
    rest = key[len(head) :]
    engine, sep, tail = rest.partition("}:q:")
    return engine if sep and tail in {p.label for p in TIERS} else None
