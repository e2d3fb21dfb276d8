"""Enqueue jobs and manage them from Python: ``fleetbox.Client``.

A face over :mod:`fleetbox.service`, as the CLI and the admin API are: every value is checked by
:mod:`fleetbox.rules` before anything is written; a bad value raises
:class:`~fleetbox.errors.InvalidInput` naming the field, and a bulk call writes all of its jobs or
none of them.
"""

from __future__ import annotations

import builtins
import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from fleetbox import payloads, rules
from fleetbox.config import Settings, redaction_of
from fleetbox.errors import InvalidInput
from fleetbox.models import (
    Clock,
    DeadLetter,
    DeadLetterStatus,
    EnqueueResult,
    JobInfo,
    JobPriority,
    QueueDepth,
    QueueInfo,
)
from fleetbox.redaction import Redaction
from fleetbox.service import Service
from fleetbox.service.dead_letters import check_filter
from fleetbox.service.dependencies import CancelResult, Relations, Step, WorkflowInfo, WorkflowResult
from fleetbox.service.enqueue import NewJob
from fleetbox.store import Store
from fleetbox.store.audit import AuditEntry

__all__ = ["Client", "NewJob", "Workflow"]


class Client:
    """Enqueue jobs, look them up, retry them and work the dead-letter queue.

    Open one with ``async with Client.connect(dsn) as client``, or ``Client(store)`` when a
    :class:`~fleetbox.store.Store` is already open. An appliance's own is ``app.client``.

    Args:
        store: the fleetbox database.
        clock: the time of due dates and retries (tests pass a ManualClock).
        max_payload_bytes, max_payload_depth: the payload limits (``[appliance]`` settings).
        actor: who acts, in the audit log, when a method is not told.
        redaction: what of each queue's payloads is masked when jobs and dead letters are read
            (default: the built-in policies; :meth:`from_settings` uses the settings' own).
    """

    def __init__(
        self,
        store: Store,
        *,
        clock: Clock | None = None,
        max_payload_bytes: int = rules.DEFAULT_MAX_PAYLOAD_BYTES,
        max_payload_depth: int = rules.DEFAULT_MAX_PAYLOAD_DEPTH,
        actor: str = "client",
        redaction: Redaction | None = None,
    ) -> None:
        limits = rules.Limits(max_payload_bytes=max_payload_bytes, max_payload_depth=max_payload_depth)
        self._init(Service(store, clock=clock, limits=limits, redaction=redaction), actor)

    def _init(self, service: Service, actor: str) -> None:
        self.service = service
        self.store = service.store
        self.clock = service.clock
        self.actor = actor
        self.dead_letters = ClientDeadLetters(service, actor)
        self._owns_store = False

    @classmethod
    def for_service(cls, service: Service, *, actor: str = "client") -> Client:
        """A client over an existing service (the appliance's ``app.client``)."""
        client = cls.__new__(cls)
        client._init(service, actor)
        return client

    @classmethod
    def connect(cls, dsn: str, *, schema: str = "fleetbox", **kwargs: Any) -> _Connecting:
        """``async with Client.connect(dsn) as client:`` opens a small pool and closes it after."""
        return _Connecting(cls, dsn, schema, kwargs)

    @classmethod
    def from_settings(cls, settings: Settings, dsn: str, **kwargs: Any) -> _Connecting:
        """Like :meth:`connect`, with the schema, payload limits and redaction policies of ``settings``."""
        kwargs.setdefault("redaction", redaction_of(settings))
        kwargs.setdefault("max_payload_bytes", settings.appliance.max_payload_bytes)
        kwargs.setdefault("max_payload_depth", settings.appliance.max_payload_depth)
        return _Connecting(cls, dsn, settings.database.schema_name, kwargs)

    async def close(self) -> None:
        if self._owns_store:
            await self.store.close()

    # -- queues ---------------------------------------------------------------------------

    async def queues(self) -> list[QueueInfo]:
        """Every queue the database knows, with its tier and pause flag."""
        return await self.service.queues.all()

    async def queue_depth(self) -> list[QueueDepth]:
        """Jobs per queue by state: waiting, scheduled, retrying, running, and open dead letters."""
        return await self.service.queues.depth()

    async def set_paused(self, queue: str, paused: bool, *, actor: str | None = None) -> QueueInfo:
        """Pause or resume a queue for every appliance on this database (running jobs finish)."""
        return await self.service.queues.set_paused(queue, paused, actor=actor or self.actor)

    # -- enqueue --------------------------------------------------------------------------

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
        depends_on: Iterable[int] | None = None,
        on_failure: str = "cancel",
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
            depends_on: ids of jobs that must succeed first: the job stays ``blocked`` (never
                claimed) until the last of them succeeds, then becomes waiting in that parent's
                completion; its handler reads their results in ``job.parents``. Not with
                ``singleton_key``.
            on_failure: what a parent's failure (dead letter) does to this job: ``cancel`` it
                (the default), ``ignore`` the failure and run anyway, or ``hold`` it until an
                operator retries the parent, skips it with a result, or cancels the dependents.

        Returns:
            the job's id and whether it was created.

        Raises:
            InvalidInput: a value is wrong (the error names the field), or a parent is unknown or
                already failed in a way the policy cannot wait for; nothing was written.
        """
        return await self.service.enqueue.enqueue(
            queue,
            data,
            priority=priority,
            run_at=run_at,
            delay=delay,
            singleton_key=singleton_key,
            max_attempts=max_attempts,
            depends_on=depends_on,
            on_failure=on_failure,
        )

    async def enqueue_many(self, jobs: Iterable[NewJob | Mapping[str, Any]]) -> list[EnqueueResult]:
        """Enqueue many jobs at once: all of them or, if any is invalid, none.

        Jobs without a singleton key are bulk-loaded (COPY); each job with a key is resolved on
        its own, in the same transaction. Results are in the order given.
        """
        return await self.service.enqueue.enqueue_many(jobs)

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
        assert isinstance(payload, payloads.Payload)
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
        self,
        notification: Mapping[str, Any] | payloads.ActivityNotification,
        priority: int = JobPriority.NORMAL,
        **kw: Any,
    ) -> EnqueueResult:
        """A Teams activity-feed notification, on notifications."""
        return await self._helper("notifications", payloads.ActivityNotification, notification, priority, **kw)

    async def enqueue_attachment_upload(
        self,
        attachment: Mapping[str, Any] | payloads.AttachmentOperation,
        priority: int = JobPriority.NORMAL,
        **kw: Any,
    ) -> EnqueueResult:
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
        """A job wherever it is, with every recorded attempt; its payload is masked by its queue's
        redaction policy, as every reader of the service layer sees it."""
        return await self.service.jobs.get(job_id)

    async def job_relations(self, job_id: int) -> Relations:
        """A job's parents and children (where each is now), its result, and why it was cancelled."""
        return await self.service.dependencies.relations(job_id)

    async def cancel_blocked_job(self, job_id: int, *, actor: str | None = None) -> CancelResult:
        """Cancel a blocked job and every blocked job below it."""
        return await self.service.dependencies.cancel_blocked(job_id, actor=actor or self.actor)

    # -- workflows ------------------------------------------------------------------------

    def workflow(self, name: str) -> Workflow:
        """A new workflow (a DAG of jobs) to fill with steps and enqueue at once::

        flow = client.workflow("send report")
        upload = flow.step("upload", "attachments", {...})
        flow.step("mail", "outlook-outbound", {...}, after=[upload])
        result = await flow.enqueue()   # one transaction: every step, or none
        result.jobs["mail"]             # each step's job id
        """
        return Workflow(self, name)

    async def get_workflow(self, workflow_id: int) -> WorkflowInfo:
        """A workflow and where each of its steps is."""
        return await self.service.dependencies.workflow(workflow_id)

    async def cancel_workflow(self, workflow_id: int, *, actor: str | None = None) -> CancelResult:
        """Cancel every step of a workflow that has not started (running ones finish)."""
        return await self.service.dependencies.cancel_workflow(workflow_id, actor=actor or self.actor)

    async def retry_failed_job(self, job_id: int, *, actor: str | None = None) -> int:
        """Retry a failed job now.

        A job waiting for its next retry runs at once (its id is returned); a dead-lettered job
        is re-enqueued on its original queue as a new job linked to the dead letter (the new
        job's id is returned).
        """
        return await self.service.jobs.retry(job_id, actor=actor or self.actor)


class ClientDeadLetters:
    """The dead-letter queue from Python (``client.dead_letters``)."""

    def __init__(self, service: Service, actor: str) -> None:
        self._dead = service.dead_letters
        self._deps = service.dependencies
        self.actor = actor

    async def get(self, dead_letter_id: int) -> DeadLetter:
        return await self._dead.get(dead_letter_id)

    async def list(
        self,
        *,
        queue: str | None = None,
        reviewed: bool | None = None,
        status: DeadLetterStatus | str | None = None,
        error_class: str | None = None,
        text: str | None = None,
        before: int | None = None,
        limit: int = 100,
    ) -> builtins.list[DeadLetter]:
        """Newest first; pass the last item's id as ``before`` for the next page. ``text`` keeps
        the dead letters whose error message contains it, ignoring case."""
        where = check_filter(queue=queue, reviewed=reviewed, status=status, error_class=error_class, text=text)
        return (await self._dead.list(where, before=before, limit=limit)).letters

    async def count(
        self,
        *,
        queue: str | None = None,
        reviewed: bool | None = None,
        status: DeadLetterStatus | str | None = None,
        error_class: str | None = None,
        text: str | None = None,
        cap: int = 10_000,
    ) -> tuple[int, bool]:
        """How many dead letters match, counting at most ``cap``: ``(count, capped)``."""
        where = check_filter(queue=queue, reviewed=reviewed, status=status, error_class=error_class, text=text)
        return await self._dead.count(where, cap=cap)

    async def retry(self, dead_letter_id: int, *, actor: str | None = None) -> int:
        """Re-enqueue a dead letter on its original queue as a new job; returns the job's id."""
        return await self._dead.retry(dead_letter_id, actor=actor or self.actor)

    async def review(self, dead_letter_id: int, *, reviewed_by: str, resolution_notes: str | None = None) -> DeadLetter:
        """Mark a dead letter reviewed: who, when, and resolution notes."""
        return await self._dead.review(dead_letter_id, reviewed_by=reviewed_by, resolution_notes=resolution_notes)

    async def discard(self, dead_letter_id: int, *, actor: str | None = None) -> DeadLetter:
        """Drop an open dead letter (it stays on record as discarded)."""
        return await self._dead.discard(dead_letter_id, actor=actor or self.actor)

    async def held(self, dead_letter_id: int) -> builtins.list[int]:
        """The jobs waiting on this dead letter's job (dependents under ``on_failure="hold"``)."""
        return await self._deps.held_by(dead_letter_id)

    async def skip(self, dead_letter_id: int, result: object = None, *, actor: str | None = None) -> int:
        """Treat the dead letter's job as succeeded with ``result`` in its place: its held
        dependents resume and read that result. Returns how many were released (now waiting)."""
        return await self._deps.skip(dead_letter_id, result, actor=actor or self.actor)

    async def cancel_dependents(self, dead_letter_id: int, *, actor: str | None = None) -> CancelResult:
        """Cancel every blocked job below the dead letter's job."""
        return await self._deps.cancel_held(dead_letter_id, actor=actor or self.actor)

    async def audit_trail(self, dead_letter_id: int) -> builtins.list[AuditEntry]:
        """Every operator action on this dead letter, oldest first."""
        return await self._dead.trail(dead_letter_id)


class Workflow:
    """Steps of a DAG gathered in memory, enqueued at once by :meth:`enqueue` (``client.workflow()``).

    Fan-out: several steps ``after`` one; fan-in: one step ``after`` several. Each step's handler
    reads its parents' results in ``job.parents``, keyed by step name.
    """

    def __init__(self, client: Client, name: str) -> None:
        self._client = client
        self.name = name
        self.steps: list[Step] = []

    def step(
        self,
        name: str,
        queue: str,
        data: Mapping[str, Any],
        *,
        after: Iterable[str] = (),
        on_failure: str = "cancel",
        priority: int = JobPriority.NORMAL,
        run_at: dt.datetime | None = None,
        delay: float | dt.timedelta | None = None,
        max_attempts: int | None = None,
    ) -> str:
        """Add a step; returns its name (to pass in a later step's ``after``). Nothing is checked
        or written until :meth:`enqueue`. ``on_failure``: what a parent's failure does to this
        step (cancel, ignore or hold, as for ``Client.enqueue``)."""
        self.steps.append(
            Step(
                name=name,
                queue=queue,
                data=data,
                after=tuple(after),
                on_failure=on_failure,
                priority=priority,
                run_at=run_at,
                delay=delay,
                max_attempts=max_attempts,
            )
        )
        return name

    async def enqueue(self) -> WorkflowResult:
        """Enqueue every step in one transaction: all, or none if any is invalid (InvalidInput
        names it: a value, an unknown step in ``after``, a cycle)."""
        return await self._client.service.dependencies.enqueue_workflow(self.name, self.steps)


class _Connecting:
    """``async with Client.connect(...)``; also awaitable for a client you close yourself."""

    def __init__(self, cls: type[Client], dsn: str, schema: str, kwargs: dict[str, Any]) -> None:
        self._args = (cls, dsn, schema, kwargs)
        self._client: Client | None = None

    async def _open(self) -> Client:
        cls, dsn, schema, kwargs = self._args
        store = await Store(dsn, schema=schema, min_size=1, max_size=4).open()
        client = cls(store, **kwargs)
        client._owns_store = True
        return client

    def __await__(self) -> Any:
        return self._open().__await__()

    async def __aenter__(self) -> Client:
        self._client = await self._open()
        return self._client

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.close()
