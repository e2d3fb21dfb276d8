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
- server -> client: :class:`ErrorFrame` when a client message is refused;
- client -> server: :class:`Subscribe` to change the interval.

Connecting: ``aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=socket))`` then
``session.ws_connect("http://fleetbox" + STREAM_PATH)`` (no key on the control socket; send
``OPERATOR_HEADER`` with mutating REST calls). Over TCP the read key goes in ``KEY_HEADER``.

Annotations here are postponed (the project's rule), so on Python 3.11 ``__required_keys__``
counts the ``NotRequired`` keys as required: a validator should read
``typing.get_type_hints(T, include_extras=True)`` and treat ``NotRequired[...]`` as optional.
"""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict

PROTOCOL_VERSION = 1

#: the tick intervals a client may ask for
INTERVALS_MS = (1000, 2000, 5000, 10000)

#: seconds of per-second history sent with hello
HISTORY_SECONDS = 900

#: the WebSocket's path on the admin application
STREAM_PATH = "/api/queue/stream"
#: the file name of the control socket in ``appliance.data_dir`` (unless ``admin.socket_path`` is set)
SOCKET_NAME = "admin.sock"
#: who acts, for the audit log: a mutating request over the control socket sends this header
#: (without it the actor is ``socket:<uid>`` of the connecting process)
OPERATOR_HEADER = "X-Fleetbox-Operator"
#: the admin key header (needed on TCP only; the control socket's file permissions are its access control)
KEY_HEADER = "x-admin-key"

#: ``Event.kind`` values. Operator actions come from the audit log (so the CLI, the HTTP API and
#: other appliances on the same database show up too); an action this version does not know is
#: sent with its audit name, dots turned into underscores.
EVENT_KINDS = (
    "queue_paused",
    "queue_resumed",
    "queue_cleared",
    "job_enqueued",
    "job_retried",
    "dead_reviewed",
    "dead_discarded",
    "dead_retried",
    "thresholds_changed",
    "config_reloaded",
    #: new dead letters (``queue``, ``count``), not an operator action
    "dead_added",
    #: this subscriber did not read fast enough and ``count`` events were dropped: reload lists
    "events_missed",
)

GraphMode = Literal["simulated", "live", "off"]
TierName = Literal["high", "medium", "low"]

#: The spec's queues and their tiers, as every appliance serves them: the worker's registry and
#: the terminal UI's demo both read this one list.
SPEC_QUEUES: tuple[tuple[str, TierName], ...] = (
    ("teams-outbound", "high"),
    ("outlook-outbound", "high"),
    ("notifications", "high"),
    ("teams-inbound", "medium"),
    ("outlook-inbound", "medium"),
    ("webhooks", "medium"),
    ("attachments", "low"),
    ("sync", "low"),
)


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
    #: requests (or transfers) allowed at once, where the limit is one of concurrency
    concurrency: NotRequired[int]
    #: what the rate and concurrency apply to: "appliance", "mailbox", ...
    per: NotRequired[str]
    #: requests (or transfers) holding a slot now: the busiest key where ``per`` is a key
    inUse: NotRequired[int]
    #: Outlook: requests at once across all mailboxes (Graph: 4 per app), beside ``concurrency``
    appConcurrency: NotRequired[int]
    #: Outlook: bytes uploaded per ``uploadPeriodSeconds`` into one mailbox (Graph: 150 MB per 5 min)
    uploadBytes: NotRequired[int]
    uploadPeriodSeconds: NotRequired[float]


class QueueRow(TypedDict):
    name: str
    tier: TierName
    paused: bool
    waiting: int
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
    #: live appliances that can run this queue (absent: the stream does not know); a queue with
    #: waiting jobs and 0 consumers waits for an appliance that has its handler
    consumers: NotRequired[int]


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
    #: the appliance is stopping: it claims nothing new and finishes its jobs (absent: no)
    draining: NotRequired[bool]


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
    #: one of :data:`EVENT_KINDS` (or a newer action's audit name)
    kind: str
    queue: str | None
    t: float
    #: the jobs concerned (for dead-letter events: the jobs the dead letters hold; at most
    #: :data:`MAX_EVENT_IDS`, ``count`` says how many there were)
    jobIds: NotRequired[list[int]]
    #: the actor (operator actions)
    by: NotRequired[str]
    #: how many objects the event covers (several audit rows of one action are one event)
    count: NotRequired[int]
    #: the action's details (dead-letter events: ``deadLetterIds``; queue_cleared: ``cleared``)
    detail: NotRequired[dict[str, object]]


#: the most ids one event lists
MAX_EVENT_IDS = 100


class ErrorFrame(TypedDict):
    """server -> client: a client message was refused (nothing changed); the stream goes on."""

    type: Literal["error"]
    #: the offending field of the client's message (``intervalMs``, ``type``, ``body``)
    field: str | None
    message: str


class Subscribe(TypedDict):
    type: Literal["subscribe"]
    intervalMs: int


class ErrorClassCount(TypedDict):
    """One error class of :class:`QueueErrors`."""

    errorClass: str
    count: int
    #: the latest failed attempt of this class, ISO 8601 UTC (as every time in the REST API)
    lastAt: str
    lastMessage: str | None


class QueueErrors(TypedDict):
    """``GET /api/queue/{queue}/errors?minutes=60``: recent failed attempts by error class, most first."""

    queue: str
    minutes: int
    errors: list[ErrorClassCount]
