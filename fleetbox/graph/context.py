"""What every Graph processor works with: the Graph client, the database, settings and effects.

An *effect* is what a job created in Graph (a chat message id, a draft id, "mail accepted"). A
processor records it the moment Graph answers, before its job completes, and checks it first on
every attempt: an attempt that follows a crash, a lost lease or a failed completion write sees
the work was done and does not do it again. The window left for a duplicate is the time between
Graph accepting a request and that one-row insert (a database round trip, about a millisecond),
plus a request whose answer never arrived (a timeout after Graph acted): Graph's send APIs take
no idempotency key, so that case cannot be told apart from a lost request.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from fleetbox.config import GraphSettings
from fleetbox.errors import ValidationError
from fleetbox.graph.client import GraphClient
from fleetbox.graph.ratelimit import Limiters
from fleetbox.models import Clock, Job
from fleetbox.store import Store
from fleetbox.store.graph import Effect

P = TypeVar("P", bound=BaseModel)


@dataclass(slots=True)
class GraphContext:
    """The shared parts of the Graph processors (one per appliance)."""

    store: Store
    graph: GraphClient
    limiters: Limiters
    settings: GraphSettings
    clock: Clock
    #: where attachment files are read from (uploads) and written to (downloads)
    files_dir: Path

    async def effect(self, job: Job, step: str) -> Effect | None:
        return await self.store.graph.effect(job.id, step)

    async def record(self, job: Job, step: str, graph_id: str | None, detail: Mapping[str, Any] | None = None) -> None:
        await self.store.graph.record_effect(job.id, step, graph_id, detail)

    def mailbox(self, given: str | None) -> str:
        """The mailbox a job acts on: its own, or the configured sender."""
        mailbox = given or self.settings.sender
        if not mailbox:
            raise ValidationError("no mailbox: give it in the job (from / userId) or set graph.sender")
        return mailbox

    def file_path(self, file_id: str) -> Path:
        # fileId is checked against [A-Za-z0-9._-]+ at enqueue; check again, the job may be old.
        path = (self.files_dir / file_id).resolve()
        if path.parent != self.files_dir.resolve():
            raise ValidationError(f"fileId {file_id!r} does not name a file in the attachments directory")
        return path


def parse(model: type[P], job: Job) -> P:
    """The job's payload as the processor's model; a bad payload dead-letters at once."""
    try:
        return model.model_validate(job.data)
    except PydanticValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'data'}: {err['msg']}" for err in exc.errors()[:5]
        )
        raise ValidationError(f"{job.queue} payload: {problems}") from None


def b64decode(text: str, *, field: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationError(f"{field}: not base64") from None
