"""An appliance in memory, for the TUI's tests and ``fleetbox tui --demo``.

:class:`FakeClient` implements :class:`~fleetbox.tui.client.FleetboxClient`: its stream sends a
hello and then whatever the test pushes (or, in demo mode, a new tick every interval); its dead
letters, jobs and alerts are canned in the admin API's shapes; every action is recorded in
:attr:`FakeClient.calls` and changes the canned data as the appliance would.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from collections.abc import AsyncIterator
from typing import Any

from fleetbox.protocol import (
    HISTORY_SECONDS,
    PROTOCOL_VERSION,
    SPEC_QUEUES,
    ApplianceInfo,
    Event,
    Hello,
    QueueHistory,
    QueueRow,
    Tick,
    TierName,
)
from fleetbox.tui.client import BulkResult, ClientError, DeadFilter, DeadPage, Disconnected, Json, StreamMessage
from fleetbox.tui.fake_flows import FakeFlows

_ERRORS = [
    ("RateLimitError", "Graph answered 429 Too Many Requests; retry after 30 s"),
    ("NetworkError", "connection reset by peer while posting to graph.microsoft.com"),
    ("ValidationError", "payload field 'to' is not an email address: 'bob@'"),
    ("AuthenticationError", "token expired and the refresh was refused (AADSTS700082)"),
    ("PermanentError", "the channel 19:abc@thread.tacv2 no longer exists"),
]
_POOL = {"high": 16, "medium": 8, "low": 4}


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat()


def queue_row(name: str, tier: TierName = "high", **figures: Any) -> QueueRow:
    """A queue's row of a tick; ``figures`` override the quiet defaults."""
    row: QueueRow = {
        "name": name,
        "tier": tier,
        "paused": False,
        "waiting": 0,
        "scheduled": 0,
        "running": 0,
        "retrying": 0,
        "deadUnreviewed": 0,
        "donePerMinute": 0.0,
        "failureRate": 0.0,
        "avgMs": None,
        "p95Ms": None,
        "oldestWaitingSeconds": None,
        "workers": {"busy": 0, "size": _POOL[tier]},
        "limiter": None,
    }
    row.update(figures)  # type: ignore[typeddict-item]
    return row


def busy_rows(count: int = len(SPEC_QUEUES)) -> list[QueueRow]:
    """Rows of a busy appliance: the spec's queues, then ``q-NN`` ones up to ``count``."""
    rng = random.Random(7)
    names = list(SPEC_QUEUES) + [
        (f"q-{i:02d}", ("high", "medium", "low")[i % 3]) for i in range(len(SPEC_QUEUES), count)
    ]
    rows = []
    for i, (name, tier) in enumerate(names[:count]):
        busy = rng.randint(0, _POOL[tier])
        limiter = None
        if name.endswith("outbound"):
            limiter = {
                "resource": "graph",
                "ratePerSecond": 10.0,
                "available": round(rng.uniform(0, 10), 1),
                "pausedUntil": None,
                "waits": rng.randint(0, 900),
                "throttled": rng.randint(0, 3),
            }
        rows.append(
            queue_row(
                name,
                tier,
                waiting=rng.randint(0, 3000),
                scheduled=rng.randint(0, 50),
                running=busy,
                retrying=rng.randint(0, 9),
                deadUnreviewed=rng.randint(0, 4) if i % 2 else 0,
                donePerMinute=float(rng.randint(0, 1200)),
                failureRate=round(rng.uniform(0, 6), 1),
                avgMs=round(rng.uniform(20, 900), 1),
                p95Ms=round(rng.uniform(900, 4000), 1),
                oldestWaitingSeconds=round(rng.uniform(0, 120), 1),
                workers={"busy": busy, "size": _POOL[tier]},
                limiter=limiter,
            )
        )
    return rows


def history_of(rows: list[QueueRow], now: float, seconds: int = HISTORY_SECONDS) -> dict[str, QueueHistory]:
    """Per-second history that ends at ``now`` (a deterministic wave per queue)."""
    out: dict[str, QueueHistory] = {}
    for i, row in enumerate(rows):
        rng = random.Random(i)
        per_second = row["donePerMinute"] / 60
        done = [
            max(0, round(per_second * (1 + 0.6 * ((s // 45 + i) % 5 - 2) / 2) + rng.uniform(-1, 1)))
            for s in range(seconds)
        ]
        failed = [1 if rng.random() < row["failureRate"] / 100 else 0 for _ in range(seconds)]
        avg = [None if d == 0 else round((row["avgMs"] or 100) * rng.uniform(0.7, 1.3), 1) for d in done]
        out[row["name"]] = {"t0": now - seconds, "stepSeconds": 1, "done": done, "failed": failed, "avgMs": avg}
    return out


def dead_letter(
    dead_id: int,
    *,
    queue: str,
    now: float,
    error_index: int = 0,
    reviewed_by: str | None = None,
    notes: str | None = None,
) -> Json:
    """A dead letter as ``GET /api/queue/dead-letter`` lists it."""
    error_class, error = _ERRORS[error_index % len(_ERRORS)]
    failed_at = now - 37 * dead_id
    created = failed_at - 600
    history = [
        {
            "attempt": n,
            "startedAt": _iso(created + 60 * n),
            "finishedAt": _iso(created + 60 * n + 1.5),
            "durationMs": 1500.0,
            "outcome": "failed",
            "errorClass": error_class,
            "error": f"{error} (attempt {n})",
        }
        for n in range(1, 4)
    ]
    return {
        "id": dead_id,
        "jobId": 10_000 + dead_id,
        "queue": queue,
        "priority": 5,
        "data": {"to": f"user{dead_id}@example.com", "subject": "Weekly report", "attempt": dead_id % 3},
        "singletonKey": None,
        "errorClass": error_class,
        "error": error,
        "attempts": 3,
        "history": history,
        "jobCreatedAt": _iso(created),
        "failedAt": _iso(failed_at),
        "status": "open",
        "reviewed": reviewed_by is not None,
        "reviewedAt": _iso(failed_at + 300) if reviewed_by else None,
        "reviewedBy": reviewed_by,
        "resolutionNotes": notes,
        "retriedJobId": None,
        "retriedAt": None,
        "discardedAt": None,
    }


def _matches(letter: Json, flt: DeadFilter) -> bool:
    return (
        letter["status"] == "open"
        and (flt.queue is None or letter["queue"] == flt.queue)
        and (flt.error_class is None or letter["errorClass"] == flt.error_class)
        and (flt.reviewed is None or letter["reviewed"] == flt.reviewed)
        and (flt.text is None or flt.text.lower() in letter["error"].lower())
    )


class FakeClient(FakeFlows):
    """An appliance in memory (see the module docstring)."""

    def __init__(
        self,
        rows: list[QueueRow],
        dead: list[Json],
        *,
        now: float,
        alerts: list[Json] | None = None,
        graph_mode: str = "simulated",
        read_only: bool = False,
        demo: bool = False,
    ) -> None:
        self.operator = "alice"
        self.now = now
        self.rows = rows
        self.dead = {d["id"]: d for d in dead}
        #: dead-letter id -> operator actions on it, as the appliance's audit log keeps them
        self.actions: dict[int, list[Json]] = {}
        self.alert_list = alerts or []
        self.info: ApplianceInfo = {
            "name": "fb-01",
            "version": "0.1.0",
            "workerId": "fb-01:4242",
            "startedAt": now - 3 * 86400 - 4 * 3600,
            "graphMode": graph_mode,  # type: ignore[typeddict-item]
            "readOnly": read_only,
        }
        self.calls: list[tuple[str, Any]] = []
        self.connects = 0
        #: while False, connecting fails as if the appliance were down
        self.reachable = True
        self.demo = demo
        self.interval_ms = 1000
        self._seq = 0
        self._inbox: asyncio.Queue[StreamMessage | None] = asyncio.Queue()
        self._connected = asyncio.Event()

    @classmethod
    def busy(cls, now: float, *, queues: int = len(SPEC_QUEUES), dead: int = 40, **kwargs: Any) -> FakeClient:
        """A busy appliance: ``queues`` queues and ``dead`` dead letters (every fifth reviewed)."""
        rows = busy_rows(queues)
        names = [r["name"] for r in rows]
        letters = [
            dead_letter(
                i,
                queue=names[i % min(len(names), 5)],
                now=now,
                error_index=i % 3,
                reviewed_by="bob" if i % 5 == 0 else None,
                notes="known Graph outage" if i % 5 == 0 else None,
            )
            for i in range(dead, 0, -1)
        ]
        alerts: list[Json] = [
            {
                "id": 2,
                "queue": "teams-outbound",
                "kind": "backlog",
                "status": "open",
                "message": "backlog 2817 is over the threshold 1000",
                "value": 2817.0,
                "threshold": 1000.0,
                "openedAt": _iso(now - 420),
                "resolvedAt": None,
            },
            {
                "id": 1,
                "queue": None,
                "kind": "dead_letters",
                "status": "resolved",
                "message": "dead letters 120 is over the threshold 100",
                "value": 120.0,
                "threshold": 100.0,
                "openedAt": _iso(now - 7200),
                "resolvedAt": _iso(now - 3600),
            },
        ]
        return cls(rows, letters, now=now, alerts=alerts, **kwargs)

    # -- the stream -------------------------------------------------------------------------

    def tick(self) -> Tick:
        """The current figures as a tick."""
        self._seq += 1
        return {
            "type": "tick",
            "seq": self._seq,
            "t": self.now,
            "statsAgeMs": 400.0,
            "database": {"ok": True, "error": None},
            "deadUnreviewed": sum(1 for d in self.dead.values() if d["status"] == "open" and not d["reviewed"]),
            "alertsOpen": sum(1 for a in self.alert_list if a["status"] == "open"),
            "queues": [dict(r) for r in self.rows],  # type: ignore[misc]
        }

    def hello(self) -> Hello:
        """What the appliance sends on connect."""
        return {
            "type": "hello",
            "protocol": PROTOCOL_VERSION,
            "appliance": self.info,
            "snapshot": self.tick(),
            "history": history_of(self.rows, self.now),
        }

    def push(self, message: StreamMessage) -> None:
        """Send a tick or an event to the connected TUI."""
        self._inbox.put_nowait(message)

    def push_tick(self) -> Tick:
        """Send the current figures."""
        tick = self.tick()
        self.push(tick)
        return tick

    def drop(self) -> None:
        """End the stream as an appliance that stops does."""
        self._inbox.put_nowait(None)

    async def connected(self) -> None:
        """Wait until a TUI is connected."""
        await self._connected.wait()

    async def stream(self, interval_ms: int) -> AsyncIterator[StreamMessage]:
        """Hello, then what :meth:`push` sends, until :meth:`drop`."""
        if not self.reachable:
            raise Disconnected("cannot reach the appliance at /tmp/fake/admin.sock: connection refused")
        self.connects += 1
        self.interval_ms = interval_ms
        self._inbox = asyncio.Queue()
        self._connected.set()
        yield self.hello()
        try:
            while True:
                if self.demo:
                    try:
                        message = await asyncio.wait_for(self._inbox.get(), self.interval_ms / 1000)
                    except TimeoutError:
                        self._wander()
                        message = self.tick()
                else:
                    message = await self._inbox.get()
                if message is None:
                    raise Disconnected("the appliance closed the live stream")
                yield message
        finally:
            self._connected.clear()

    def _wander(self) -> None:
        """Demo mode: move every figure a little."""
        self.now += self.interval_ms / 1000
        rng = random.Random(self.now)
        for row in self.rows:
            if row["paused"]:
                row["donePerMinute"] = 0.0
                continue
            row["waiting"] = max(0, row["waiting"] + rng.randint(-40, 40))
            row["donePerMinute"] = max(0.0, row["donePerMinute"] + rng.randint(-60, 60))
            row["failureRate"] = round(min(100.0, max(0.0, row["failureRate"] + rng.uniform(-0.5, 0.5))), 1)

    async def subscribe(self, interval_ms: int) -> None:
        """Record the new interval."""
        self.calls.append(("subscribe", interval_ms))
        self.interval_ms = interval_ms

    # -- reads ------------------------------------------------------------------------------

    async def dead_letters(self, flt: DeadFilter, *, before: int | None, limit: int) -> DeadPage:
        """Open dead letters newest first (highest id first), keyset paged like the appliance."""
        self.calls.append(("dead_letters", (flt, before, limit)))
        matching = [d for d in sorted(self.dead.values(), key=lambda d: -d["id"]) if _matches(d, flt)]
        page = [d for d in matching if before is None or d["id"] < before][: limit + 1]
        next_before = page[limit - 1]["id"] if len(page) > limit else None
        return DeadPage(letters=[dict(d) for d in page[:limit]], next_before=next_before, total=len(matching))

    async def job(self, job_id: int) -> Json | None:
        """The job of a dead letter, with its attempts."""
        self.calls.append(("job", job_id))
        letter = next((d for d in self.dead.values() if d["jobId"] == job_id), None)
        if letter is None:
            return None
        history = [
            {
                "jobId": job_id,
                "attempt": h["attempt"],
                "queue": letter["queue"],
                "workerId": "fb-01:4242",
                "startedAt": h["startedAt"],
                "finishedAt": h["finishedAt"],
                "durationMs": h["durationMs"],
                "outcome": h["outcome"],
                "errorClass": h["errorClass"],
                "error": h["error"],
            }
            for h in letter["history"]
        ]
        return {
            "id": job_id,
            "queue": letter["queue"],
            "state": "dead",
            "data": letter["data"],
            "attempts": letter["attempts"],
            "maxAttempts": letter["attempts"],
            "createdAt": letter["jobCreatedAt"],
            "runAt": letter["jobCreatedAt"],
            "finishedAt": letter["failedAt"],
            "history": history,
            "operatorActions": list(self.actions.get(letter["id"], [])),
        }

    def _act(self, dead_id: int, action: str, details: Json, *, actor: str | None = None) -> None:
        self.actions.setdefault(dead_id, []).append(
            {"at": _iso(self.now), "actor": actor or self.operator, "action": action, "details": details}
        )

    async def queue_errors(self, queue: str, minutes: int) -> list[Json]:
        """The queue's dead letters' errors grouped by class (as the appliance groups attempts)."""
        self.calls.append(("queue_errors", (queue, minutes)))
        groups: dict[str, Json] = {}
        for d in sorted(self.dead.values(), key=lambda d: d["id"]):
            if d["queue"] == queue:
                g = groups.setdefault(d["errorClass"], {"errorClass": d["errorClass"], "count": 0})
                g.update(count=g["count"] + d["attempts"], lastAt=d["failedAt"], lastMessage=d["error"])
        return sorted(groups.values(), key=lambda g: -g["count"])

    async def alerts(self, *, status: str | None, limit: int) -> list[Json]:
        """The canned alerts."""
        self.calls.append(("alerts", (status, limit)))
        return [a for a in self.alert_list if status is None or a["status"] == status][:limit]

    # -- actions ----------------------------------------------------------------------------

    def _row(self, queue: str) -> QueueRow:
        for row in self.rows:
            if row["name"] == queue:
                return row
        raise ClientError(f"queue: no queue {queue!r}", status=404, code="unknown_queue")

    def _event(self, kind: str, queue: str | None, job_ids: list[int] | None = None) -> None:
        event: Event = {
            "type": "event",
            "kind": kind,
            "queue": queue,
            "t": self.now,
            "by": self.operator,
            "jobIds": job_ids or [],
        }
        self.push(event)

    async def pause(self, queue: str) -> Json:
        """Pause: the next tick shows it."""
        self.calls.append(("pause", queue))
        row = self._row(queue)
        row["paused"] = True
        self._event("queue_paused", queue)
        return {
            "name": queue,
            "tier": row["tier"],
            "paused": True,
            "pausedAt": _iso(self.now),
            "pausedBy": self.operator,
        }

    async def resume(self, queue: str) -> Json:
        """Resume."""
        self.calls.append(("resume", queue))
        row = self._row(queue)
        row["paused"] = False
        self._event("queue_resumed", queue)
        return {"name": queue, "tier": row["tier"], "paused": False, "pausedAt": None, "pausedBy": None}

    async def clear(self, queue: str) -> int:
        """Drop the waiting jobs."""
        self.calls.append(("clear", queue))
        row = self._row(queue)
        cleared = row["waiting"] + row["scheduled"] + row["retrying"]
        row["waiting"] = row["scheduled"] = row["retrying"] = 0
        row["oldestWaitingSeconds"] = None
        self._event("queue_cleared", queue)
        return cleared

    def _open(self, dead_id: int) -> Json:
        letter = self.dead.get(dead_id)
        if letter is None:
            raise ClientError(f"no dead letter {dead_id}", status=404, code="not_found")
        if letter["status"] != "open":
            raise ClientError(f"dead letter {dead_id} is {letter['status']}, not open", status=409, code="conflict")
        return letter

    async def retry_dead(self, dead_id: int) -> int:
        """Re-enqueue: the dead letter becomes retried."""
        self.calls.append(("retry_dead", dead_id))
        letter = self._open(dead_id)
        letter.update(status="retried", retriedJobId=50_000 + dead_id, retriedAt=_iso(self.now))
        self._act(dead_id, "dead.retry", {"jobId": 50_000 + dead_id})
        self._event("dead_retried", letter["queue"], [letter["jobId"]])
        return 50_000 + dead_id

    async def review_dead(self, dead_id: int, *, reviewed_by: str, notes: str | None) -> Json:
        """Mark reviewed."""
        self.calls.append(("review_dead", (dead_id, reviewed_by, notes)))
        letter = self._open(dead_id)
        letter.update(reviewed=True, reviewedBy=reviewed_by, resolutionNotes=notes, reviewedAt=_iso(self.now))
        self._act(dead_id, "dead.review", {"notes": notes}, actor=reviewed_by)
        self._event("dead_reviewed", letter["queue"], [letter["jobId"]])
        return dict(letter)

    async def discard_dead(self, dead_id: int) -> Json:
        """Discard."""
        self.calls.append(("discard_dead", dead_id))
        letter = self._open(dead_id)
        letter.update(status="discarded", discardedAt=_iso(self.now))
        self._act(dead_id, "dead.discard", {})
        self._event("dead_discarded", letter["queue"], [letter["jobId"]])
        return dict(letter)

    async def retry_matching(self, flt: DeadFilter, *, expected: int) -> BulkResult:
        """Retry all matching, refusing (409) when the count is not ``expected``."""
        self.calls.append(("retry_matching", (flt, expected)))
        matching = [d for d in self.dead.values() if _matches(d, flt)]
        if len(matching) != expected:
            raise ClientError(
                f"{len(matching)} open dead letters match the filter, not the expected {expected}; nothing was retried",
                status=409,
                code="conflict",
            )
        for letter in matching:
            letter.update(status="retried", retriedJobId=50_000 + letter["id"], retriedAt=_iso(self.now))
        return BulkResult(matched=len(matching), changed=len(matching), skipped=0)

    def _matching(self, flt: DeadFilter, expected: int, verb: str) -> list[Json]:
        matching = [d for d in self.dead.values() if _matches(d, flt)]
        if len(matching) != expected:
            raise ClientError(
                f"{len(matching)} open dead letters match the filter, not the expected {expected}; nothing was {verb}",
                status=409,
                code="conflict",
            )
        return matching

    async def review_matching(
        self, flt: DeadFilter, *, expected: int, reviewed_by: str, notes: str | None
    ) -> BulkResult:
        """Review all matching, refusing (409) when the count is not ``expected``."""
        self.calls.append(("review_matching", (flt, expected, reviewed_by, notes)))
        matching = self._matching(flt, expected, "reviewed")
        for letter in matching:
            letter.update(reviewed=True, reviewedBy=reviewed_by, resolutionNotes=notes, reviewedAt=_iso(self.now))
        return BulkResult(matched=len(matching), changed=len(matching), skipped=0)

    async def discard_matching(self, flt: DeadFilter, *, expected: int) -> BulkResult:
        """Discard all matching, refusing (409) when the count is not ``expected``."""
        self.calls.append(("discard_matching", (flt, expected)))
        matching = self._matching(flt, expected, "discarded")
        for letter in matching:
            letter.update(status="discarded", discardedAt=_iso(self.now))
        return BulkResult(matched=len(matching), changed=len(matching), skipped=0)

    async def dead_letter_groups(self, flt: DeadFilter) -> list[Json]:
        """The matching dead letters grouped by error class and message, largest first."""
        self.calls.append(("dead_letter_groups", flt))
        groups: dict[tuple[str, str], Json] = {}
        for d in self.dead.values():
            if _matches(d, flt):
                g = groups.setdefault(
                    (d["errorClass"], d["error"]),
                    {
                        "errorClass": d["errorClass"],
                        "message": d["error"],
                        "count": 0,
                        "queues": [],
                        "lastFailedAt": d["failedAt"],
                    },
                )
                g["count"] += 1
                g["queues"] = sorted({*g["queues"], d["queue"]})
                g["lastFailedAt"] = max(g["lastFailedAt"], d["failedAt"])
        return sorted(groups.values(), key=lambda g: -g["count"])

    async def close(self) -> None:
        """Nothing to release."""
        self.calls.append(("close", None))
