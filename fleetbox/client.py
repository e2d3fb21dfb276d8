"""Enqueue jobs and manage them from Python: ``fleetbox.Client``.

Every input is validated before anything is written; a bad value raises
:class:`~fleetbox.errors.InvalidInput` naming the field, and a bulk call writes all of its jobs or
none of them.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from fleetbox import payloads
from fleetbox.config import Settings
from fleetbox.db import Database, JsonText
from fleetbox.deadletter import DeadLetters
from fleetbox.errors import InvalidInput, NotFound, UnknownQueue
from fleetbox.models import (
    Attempt,
    Clock,
    EnqueueResult,
    JobInfo,
    JobPriority,
    QueueDepth,
    QueueInfo,
    SystemClock,
    Tier,
)

MAX_SINGLETON_KEY = 255
#: COPY is the fastest way in, but costs a few round trips: below this many rows, unnest wins.
COPY_THRESHOLD = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class NewJob:
    """A job to enqueue with :meth:`Client.enqueue_many`."""

    queue: str
    data: Mapping[str, Any]
    priority: int = JobPriority.NORMAL
    run_at: dt.datetime | None = None
    #: milliseconds from now (or a timedelta); not together with run_at
    delay: float | dt.timedelta | None = None
    singleton_key: str | None = None
    max_attempts: int | None = None


class _Checked(NamedTuple):  # a tuple: built once per job on the bulk path
    queue: str
    tier: Tier
    data: JsonText
    priority: int
    run_at: dt.datetime | None
    singleton_key: str | None
    max_attempts: int | None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


#: json.dumps(data, allow_nan=False, separators=(",", ":"), ensure_ascii=False), built once
#: (json.dumps builds a new encoder on every call that passes options)
_JSON = json.JSONEncoder(allow_nan=False, separators=(",", ":"), ensure_ascii=False)
_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)


def _json_text(data: object) -> str:
    """``_JSON.encode(data)`` for a dict, straight to the C encoder it would build."""
    if _c_make_encoder is None:
        return _JSON.encode(data)
    # The arguments JSONEncoder.iterencode passes; a fresh markers dict per call, as there.
    encoder = _c_make_encoder({}, _JSON.default, json.encoder.encode_basestring, None, ":", ",", False, False, False)
    return "".join(encoder(data, 0))


#: ``\u0000`` as an escape in JSON text, not a literal backslash followed by "u0000"
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def encode_data(data: object, *, limit: int, field: str = "data") -> JsonText:
    """The payload as JSON text; must be a JSON object PostgreSQL can store, within the limit."""
    if type(data) is not dict and not isinstance(data, Mapping):
        raise InvalidInput(f"must be a JSON object, got {type(data).__name__}", field=field)
    try:
        # Not ASCII-escaped: the UTF-8 encoding below then catches lone surrogates, which
        # PostgreSQL rejects, and measures the size the server stores.
        text = (_json_text(data) if data else "{}") if type(data) is dict else _JSON.encode(data)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"not JSON-serialisable: {exc}", field=field) from None
    except RecursionError:
        raise InvalidInput("nested too deeply", field=field) from None
    if "\\u0000" in text and _NUL_ESCAPE.search(text):
        # PostgreSQL's jsonb cannot store the NUL character.
        raise InvalidInput("contains a NUL character (\\u0000), which cannot be stored", field=field)
    try:
        size = len(text.encode())
    except UnicodeEncodeError:
        raise InvalidInput("contains a lone surrogate (invalid Unicode), which cannot be stored", field=field) from None
    if size > limit:
        raise InvalidInput(f"is {size} bytes encoded; the limit is {limit}", field=field)
    return JsonText(text)


def resolve_run_at(run_at: object, delay: object, now: dt.datetime, *, prefix: str = "") -> dt.datetime | None:
    """The due time from ``run_at`` (aware datetime) or ``delay`` (ms or timedelta)."""
    if run_at is not None and delay is not None:
        raise InvalidInput("give run_at or delay, not both", field=f"{prefix}run_at")
    if run_at is not None:
        if not isinstance(run_at, dt.datetime):
            raise InvalidInput("must be a datetime", field=f"{prefix}run_at")
        if run_at.tzinfo is None or run_at.utcoffset() is None:
            raise InvalidInput("must carry a time zone (for example UTC)", field=f"{prefix}run_at")
        try:
            run_at.astimezone(dt.UTC)  # the database stores UTC: years 1 and 9999 can overflow
        except OverflowError:
            raise InvalidInput("is out of range", field=f"{prefix}run_at") from None
        return run_at
    if delay is not None:
        if isinstance(delay, dt.timedelta):
            seconds = delay.total_seconds()
        elif isinstance(delay, float) and math.isfinite(delay):
            seconds = delay / 1000
        elif isinstance(delay, int) and not isinstance(delay, bool):
            # a huge int is past any limit below (and would overflow the float division)
            seconds = delay / 1000 if abs(delay) < 10**15 else (math.inf if delay > 0 else -math.inf)
        else:
            raise InvalidInput("must be milliseconds (a finite number) or a timedelta", field=f"{prefix}delay")
        if seconds < 0:
            raise InvalidInput("must not be negative", field=f"{prefix}delay")
        if seconds > 10 * 365 * 86400:
            raise InvalidInput("must be less than ten years", field=f"{prefix}delay")
        return now + dt.timedelta(seconds=seconds)
    return None


class Client:
    """Enqueue jobs, look them up, retry them and work the dead-letter queue.

    Open one with ``async with Client.connect(dsn) as client`` (or ``Client(database)`` when a
    :class:`~fleetbox.db.Database` is already open).
    """

    def __init__(
        self,
        db: Database,
        *,
        clock: Clock | None = None,
        max_payload_bytes: int = 1_048_576,
        actor: str = "client",
    ) -> None:
        self.db = db
        self.clock = clock or SystemClock()
        self.max_payload_bytes = max_payload_bytes
        self._tiers: dict[str, Tier] = {}
        self._owns_db = False
        self.dead_letters = DeadLetters(db, clock=self.clock, actor=actor)

    @classmethod
    def connect(cls, dsn: str, *, schema: str = "fleetbox", **kwargs: Any) -> _Connecting:
        """``async with Client.connect(dsn) as client:`` opens a small pool and closes it after."""
        return _Connecting(cls, dsn, schema, kwargs)

    @classmethod
    def from_settings(cls, settings: Settings, dsn: str, **kwargs: Any) -> _Connecting:
        kwargs.setdefault("max_payload_bytes", settings.appliance.max_payload_bytes)
        return _Connecting(cls, dsn, settings.database.schema_name, kwargs)

    async def close(self) -> None:
        if self._owns_db:
            await self.db.close()

    # -- queues ---------------------------------------------------------------------------

    async def queues(self) -> list[QueueInfo]:
        """Every queue the database knows, with its tier and pause flag."""
        rows = await self.db.fetch("queue_list")
        self._tiers = {r["name"]: Tier(r["tier"]) for r in rows}
        return [
            QueueInfo(name=r["name"], tier=Tier(r["tier"]), paused=r["paused"],
                      paused_at=r["paused_at"], paused_by=r["paused_by"])
            for r in rows
        ]  # fmt: skip

    async def _tier(self, queue: object, *, field: str = "queue") -> Tier:
        if not isinstance(queue, str):
            raise InvalidInput("must be a queue name (a string)", field=field)
        if queue not in self._tiers:
            await self.queues()  # a queue may have been added since we looked
        tier = self._tiers.get(queue)
        if tier is None:
            raise UnknownQueue(queue, sorted(self._tiers), field=field)
        if tier is Tier.DEAD:
            raise InvalidInput(f"{queue!r} holds dead letters and takes no new jobs", field=field)
        return tier

    async def queue_depth(self) -> list[QueueDepth]:
        """Jobs per queue by state: ready, scheduled, retrying, running, and open dead letters."""
        infos = await self.queues()
        depth = {r["queue"]: r for r in await self.db.fetch("queue_depth", self.clock.now())}
        dead = {r["queue"]: r["dead"] for r in await self.db.fetch("dead_letter_depth")}
        out = []
        for q in infos:
            row = depth.get(q.name)
            out.append(
                QueueDepth(
                    queue=q.name, tier=q.tier, paused=q.paused,
                    ready=row["ready"] if row else 0, scheduled=row["scheduled"] if row else 0,
                    retrying=row["retrying"] if row else 0, running=row["running"] if row else 0,
                    dead=sum(dead.values()) if q.tier is Tier.DEAD else dead.get(q.name, 0),
                )
            )  # fmt: skip
        return out

    async def set_paused(self, queue: str, paused: bool, *, actor: str = "client") -> QueueInfo:
        """Pause or resume a queue for every appliance on this database (running jobs finish)."""
        await self._tier(queue)
        async with self.db.transaction() as conn:
            row = await conn.fetchrow("queue_set_paused", queue, paused, actor)
            await conn.execute("audit", actor, "queue.pause" if paused else "queue.resume", queue, {})
        assert row is not None  # _tier() saw the queue, and queues are never deleted
        if not paused:
            await self.db.fetchval("notify_tiers", str(int(row["tier"])))
        return QueueInfo(name=row["name"], tier=Tier(row["tier"]), paused=row["paused"],
                         paused_at=row["paused_at"], paused_by=row["paused_by"])  # fmt: skip

    # -- enqueue --------------------------------------------------------------------------

    async def _check(
        self,
        queue: object,
        data: object,
        priority: object,
        run_at: object,
        delay: object,
        singleton_key: object,
        max_attempts: object,
        prefix: str = "",
    ) -> _Checked:
        tier = await self._tier(queue, field=f"{prefix}queue")
        assert isinstance(queue, str)
        return self._check_job(queue, tier, data, priority, run_at, delay, singleton_key, max_attempts, prefix)

    def _check_job(
        self,
        queue: str,
        tier: Tier,
        data: object,
        priority: object,
        run_at: object,
        delay: object,
        singleton_key: object,
        max_attempts: object,
        prefix: str,
    ) -> _Checked:
        """The checks of :meth:`_check` after the queue's tier is known."""
        if not (type(priority) is int or _is_int(priority)) or not 1 <= priority <= 10:  # type: ignore[operator]
            raise InvalidInput(f"must be an integer from 1 to 10, got {priority!r}", field=f"{prefix}priority")
        if run_at is None and delay is None:
            due = None
        else:
            due = resolve_run_at(run_at, delay, self.clock.now(), prefix=prefix)
        if singleton_key is not None:
            if not isinstance(singleton_key, str) or not 1 <= len(singleton_key) <= MAX_SINGLETON_KEY:
                raise InvalidInput(
                    f"must be a string of 1 to {MAX_SINGLETON_KEY} characters", field=f"{prefix}singleton_key"
                )
            if "\x00" in singleton_key:
                raise InvalidInput("must not contain NUL", field=f"{prefix}singleton_key")
            if not singleton_key.isascii():
                try:
                    singleton_key.encode()
                except UnicodeEncodeError:
                    raise InvalidInput(
                        "must be valid Unicode (no lone surrogates)", field=f"{prefix}singleton_key"
                    ) from None
        if max_attempts is not None and (not _is_int(max_attempts) or not 1 <= max_attempts <= 1000):  # type: ignore[operator]
            raise InvalidInput(
                f"must be an integer from 1 to 1000, got {max_attempts!r}", field=f"{prefix}max_attempts"
            )
        encoded = encode_data(data, limit=self.max_payload_bytes, field=f"{prefix}data")
        return _Checked(queue, tier, encoded, priority, due, singleton_key, max_attempts)  # type: ignore[arg-type]

    async def enqueue(
        self,
        queue: str,
        data: Mapping[str, Any],
        *,
        priority: int = JobPriority.NORMAL,
        run_at: dt.datetime | None = None,
        delay: float | dt.timedelta | None = None,
        singleton_key: str | None = None,
        max_attempts: int | None = None,
    ) -> EnqueueResult:
        """Enqueue one job.

        Args:
            queue: the queue's name.
            data: the payload, a JSON object.
            priority: 1 (runs first) to 10; see :class:`JobPriority`.
            run_at: run no earlier than this (time-zone aware).
            delay: run no earlier than this many milliseconds from now (or a timedelta).
            singleton_key: at most one waiting or running job per queue and key; when one
                exists, its id is returned with ``created=False``.
            max_attempts: cap on all attempts, across error classes.

        Returns:
            the job's id and whether it was created.

        Raises:
            InvalidInput: a value is wrong (the error names the field); nothing was written.
        """
        c = await self._check(queue, data, priority, run_at, delay, singleton_key, max_attempts)
        # Due "now" by this client's clock, the same clock enqueue_many uses.
        due = c.run_at or self.clock.now()
        if c.singleton_key is None:
            # Already validated, and nothing to resolve: a plain insert, the cheapest way in.
            job_id = await self.db.fetchval("enqueue_plain", c.queue, c.priority, due, c.data, c.max_attempts)
            return EnqueueResult(id=job_id)
        row = await self.db.fetchrow("enqueue_one", c.queue, c.data, c.priority, due, c.singleton_key, c.max_attempts)
        assert row is not None  # the function always returns one row or raises
        return EnqueueResult(id=row["job_id"], created=row["created"])

    async def enqueue_many(self, jobs: Iterable[NewJob | Mapping[str, Any]]) -> list[EnqueueResult]:
        """Enqueue many jobs at once: all of them or, if any is invalid, none.

        Jobs without a singleton key are bulk-loaded (COPY); each job with a key is resolved on
        its own, in the same transaction. Results are in the order given.
        """
        checked: list[_Checked] = []
        tiers = self._tiers
        for i, job in enumerate(jobs):
            if type(job) is NewJob:
                pass
            elif isinstance(job, Mapping):
                unknown = set(job) - set(NewJob.__dataclass_fields__)
                if unknown:
                    raise InvalidInput(f"unknown field(s) {sorted(unknown)}", field=f"jobs[{i}]")
                if "queue" not in job or "data" not in job:
                    raise InvalidInput("needs queue and data", field=f"jobs[{i}]")
                job = NewJob(**job)
            elif not isinstance(job, NewJob):
                raise InvalidInput("must be a NewJob or a mapping", field=f"jobs[{i}]")
            # The tier from the cache without a coroutine per job; _tier() for anything else
            # (a queue not seen yet, a non-string, the dead-letter queue), so errors are the same.
            queue = job.queue
            tier = tiers.get(queue) if type(queue) is str else None
            if tier is None or tier is Tier.DEAD:
                tier = await self._tier(queue, field=f"jobs[{i}].queue")
            checked.append(
                self._check_job(queue, tier, job.data, job.priority, job.run_at, job.delay,
                                job.singleton_key, job.max_attempts, f"jobs[{i}].")
            )  # fmt: skip
        if not checked:
            return []
        now = self.clock.now()
        plain = [i for i, c in enumerate(checked) if c.singleton_key is None]
        results: list[EnqueueResult | None] = [None] * len(checked)
        async with self.db.transaction() as conn:
            if len(plain) >= COPY_THRESHOLD:
                ids = await conn.fetchval("reserve_job_ids", len(plain))
                records = []
                for job_id, i in zip(ids, plain, strict=True):
                    c = checked[i]
                    records.append((job_id, c.queue, c.tier, c.priority, c.run_at or now, c.data, c.max_attempts))
                    results[i] = EnqueueResult(id=job_id)
                await conn.copy_jobs(
                    self.db.schema,
                    ("id", "queue", "tier", "priority", "run_at", "data", "max_attempts"),
                    records,
                )
            elif plain:
                cols = [checked[i] for i in plain]
                rows = await conn.fetch(
                    "enqueue_many",
                    [c.queue for c in cols], [int(c.tier) for c in cols], [c.priority for c in cols],
                    [c.run_at or now for c in cols], [c.data for c in cols], [c.max_attempts for c in cols],
                )  # fmt: skip
                # Row order of INSERT ... SELECT FROM unnest follows the input; ids are
                # increasing in it, so sorting makes the pairing independent of that detail.
                for i, job_id in zip(plain, sorted(r["id"] for r in rows), strict=True):
                    results[i] = EnqueueResult(id=job_id)
            for i, c in enumerate(checked):
                if c.singleton_key is not None:
                    row = await conn.fetchrow(
                        "enqueue_one", c.queue, c.data, c.priority, c.run_at or now, c.singleton_key, c.max_attempts
                    )
                    assert row is not None
                    results[i] = EnqueueResult(id=row["job_id"], created=row["created"])
        return [r for r in results if r is not None]

    # -- the spec's helpers ---------------------------------------------------------------

    async def _helper(
        self, queue: str, model: type[BaseModel], data: Mapping[str, Any] | BaseModel, priority: int, **kw: Any
    ) -> EnqueueResult:
        try:
            payload = data if isinstance(data, model) else model.model_validate(data)
        except PydanticValidationError as exc:
            err = exc.errors(include_input=False)[0]
            where = ".".join(str(p) for p in err["loc"])
            raise InvalidInput(err["msg"], field=f"data.{where}" if where else "data") from None
        assert isinstance(payload, payloads._Payload)
        return await self.enqueue(queue, payload.to_data(), priority=priority, **kw)

    async def enqueue_teams_message(
        self, message: Mapping[str, Any] | payloads.TeamsMessage, priority: int = JobPriority.NORMAL, **kw: Any
    ) -> EnqueueResult:
        """A Teams chat or channel message, on teams-outbound."""
        return await self._helper("teams-outbound", payloads.TeamsMessage, message, priority, **kw)

    async def enqueue_outlook_email(
        self, email: Mapping[str, Any] | payloads.OutlookEmail, priority: int = JobPriority.NORMAL, **kw: Any
    ) -> EnqueueResult:
        """An email, on outlook-outbound."""
        return await self._helper("outlook-outbound", payloads.OutlookEmail, email, priority, **kw)

    async def enqueue_notification(
        self, notification: Mapping[str, Any] | payloads.ActivityNotification,
        priority: int = JobPriority.NORMAL, **kw: Any,
    ) -> EnqueueResult:  # fmt: skip
        """A Teams activity-feed notification, on notifications."""
        return await self._helper("notifications", payloads.ActivityNotification, notification, priority, **kw)

    async def enqueue_attachment_upload(
        self, attachment: Mapping[str, Any] | payloads.AttachmentOperation,
        priority: int = JobPriority.NORMAL, **kw: Any,
    ) -> EnqueueResult:  # fmt: skip
        """An attachment upload or download, on attachments."""
        return await self._helper("attachments", payloads.AttachmentOperation, attachment, priority, **kw)

    async def enqueue_webhook_processing(
        self, webhook: Mapping[str, Any] | payloads.WebhookEvent, priority: int = JobPriority.NORMAL, **kw: Any
    ) -> EnqueueResult:
        """A received webhook to process, on webhooks."""
        return await self._helper("webhooks", payloads.WebhookEvent, webhook, priority, **kw)

    async def enqueue_sync(
        self, sync: Mapping[str, Any] | payloads.SyncRequest, priority: int = JobPriority.LOW, **kw: Any
    ) -> EnqueueResult:
        """A sync operation, on sync."""
        return await self._helper("sync", payloads.SyncRequest, sync, priority, **kw)

    async def schedule_job(
        self, queue: str, data: Mapping[str, Any], when: dt.datetime | float | dt.timedelta, **kw: Any
    ) -> EnqueueResult:
        """Run a job at ``when``: a datetime, or a delay in milliseconds (or a timedelta)."""
        if isinstance(when, dt.datetime):
            return await self.enqueue(queue, data, run_at=when, **kw)
        return await self.enqueue(queue, data, delay=when, **kw)

    # -- jobs -----------------------------------------------------------------------------

    async def get_job(self, job_id: int) -> JobInfo:
        """A job wherever it is, with every recorded attempt."""
        if not _is_int(job_id):
            raise InvalidInput("must be an integer", field="job_id")
        row = await self.db.fetchrow("job_get", job_id, self.clock.now())
        if row is None:
            raise NotFound(f"no job {job_id}")
        history = tuple(Attempt.from_row(r) for r in await self.db.fetch("job_attempts", job_id))
        return JobInfo.from_row(row, history)

    async def retry_failed_job(self, job_id: int, *, actor: str = "client") -> int:
        """Retry a failed job now.

        A job waiting for its next retry runs at once (its id is returned); a dead-lettered job
        is re-enqueued on its original queue as a new job linked to the dead letter (the new
        job's id is returned).
        """
        if not _is_int(job_id):
            raise InvalidInput("must be an integer", field="job_id")
        row = await self.db.fetchrow("job_run_now", job_id, self.clock.now())
        if row is not None:
            await self.db.fetchval("notify_tiers", str(row["tier"]))
            await self.db.execute("audit", actor, "job.retry", f"job:{job_id}", {})
            return int(row["id"])
        dead_id = await self.db.fetchval("dead_letter_by_job", job_id)
        if dead_id is None:
            raise NotFound(f"job {job_id} is not waiting for a retry and is not a dead letter")
        return await self.dead_letters.retry(int(dead_id), actor=actor)


class _Connecting:
    """``async with Client.connect(...)``; also awaitable for a client you close yourself."""

    def __init__(self, cls: type[Client], dsn: str, schema: str, kwargs: dict[str, Any]) -> None:
        self._args = (cls, dsn, schema, kwargs)
        self._client: Client | None = None

    async def _open(self) -> Client:
        cls, dsn, schema, kwargs = self._args
        db = await Database(dsn, schema=schema, min_size=1, max_size=4).open()
        client = cls(db, **kwargs)
        client._owns_db = True
        return client

    def __await__(self) -> Any:
        return self._open().__await__()

    async def __aenter__(self) -> Client:
        self._client = await self._open()
        return self._client

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.close()
