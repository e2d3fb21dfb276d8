"""The wire types of the live stream between the appliance and ``fleetbox tui``.

The only fleetbox module both sides import: it imports nothing but the standard library, so the
terminal UI never loads the core. The stream is a WebSocket at ``GET /api/queue/stream`` on the
admin application (the unix control socket, or TCP with the read key); one JSON object per text
frame:

- server -> client, once on connect: :class:`Hello` (a full :class:`Tick` and up to 15 minutes
  of per-second history, so sparklines are full at once);
- server -> client, every interval: :class:`Tick` (a slow client only ever gets the latest);
- server -> client, when anyone changes something: :class:`Event` (from the audit log, so the
  CLI, the HTTP API and other appliance processes on the same database show up too);
- client -> server: :class:`Subscribe` to change the interval.
"""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict

PROTOCOL_VERSION = 1

#: the tick intervals a client may ask for
INTERVALS_MS = (1000, 2000, 5000, 10000)

#: seconds of per-second history sent with hello
HISTORY_SECONDS = 900

GraphMode = Literal["simulated", "live", "off"]
TierName = Literal["high", "medium", "low"]


class ApplianceInfo(TypedDict):
    name: str
    version: str
    workerId: str
    startedAt: float
    graphMode: GraphMode
    readOnly: bool


class Workers(TypedDict):
    #: this queue's jobs running in this process
    busy: int
    #: the size of the queue's tier pool
    size: int


class LimiterState(TypedDict):
    resource: str
    ratePerSecond: float | None
    available: float | None
    pausedUntil: float | None
    waits: int
    throttled: int


class QueueRow(TypedDict):
    name: str
    tier: TierName
    paused: bool
    ready: int
    scheduled: int
    running: int
    retrying: int
    deadUnreviewed: int
    donePerMinute: float
    failureRate: float
    avgMs: float | None
    p95Ms: float | None
    oldestWaitingSeconds: float | None
    workers: Workers
    limiter: LimiterState | None


class DatabaseState(TypedDict):
    ok: bool
    error: str | None


class Tick(TypedDict):
    type: Literal["tick"]
    seq: int
    t: float
    statsAgeMs: float
    database: DatabaseState
    deadUnreviewed: int
    alertsOpen: int
    queues: list[QueueRow]


class QueueHistory(TypedDict):
    t0: float
    stepSeconds: int
    done: list[int]
    failed: list[int]
    avgMs: list[float | None]


class Hello(TypedDict):
    type: Literal["hello"]
    protocol: int
    appliance: ApplianceInfo
    snapshot: Tick
    history: dict[str, QueueHistory]


class Event(TypedDict):
    type: Literal["event"]
    #: queue_paused, queue_resumed, queue_cleared, job_retried, dead_reviewed, dead_discarded,
    #: dead_retried, config_reloaded, dead_added, ...
    kind: str
    queue: str | None
    t: float
    jobIds: NotRequired[list[int]]
    by: NotRequired[str]
    count: NotRequired[int]
    detail: NotRequired[dict[str, object]]


class Subscribe(TypedDict):
    type: Literal["subscribe"]
    intervalMs: int
