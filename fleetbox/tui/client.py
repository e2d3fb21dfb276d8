"""How the TUI reaches an appliance: the admin API and the live stream over the unix control socket.

:class:`FleetboxClient` is what the screens use; :class:`UnixSocketClient` implements it with
aiohttp on the appliance's control socket (whose file permissions are the access control, so no key
is sent), and :class:`fleetbox.tui.fake.FakeClient` implements it in memory for tests and the demo.
The JSON shapes are the admin API's (``fleetbox/admin/answers.py``) and the stream's
(:mod:`fleetbox.protocol`); this module imports nothing else of fleetbox, so the TUI never loads the
core.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol, cast
from urllib.parse import quote

import aiohttp

from fleetbox.protocol import (
    OPERATOR_HEADER,
    PROTOCOL_VERSION,
    SOCKET_NAME,
    STREAM_PATH,
    ErrorFrame,
    Event,
    Hello,
    Subscribe,
    Tick,
)

StreamMessage = Hello | Tick | Event | ErrorFrame
#: A dead letter, a job, an alert...: a JSON object of the admin API.
Json = dict[str, Any]

#: the environment variable that sets the socket (as pydantic-settings reads AdminSettings.socket_path)
SOCKET_ENV = "FLEETBOX_ADMIN__SOCKET_PATH"
#: the longest page of dead letters the admin API returns
MAX_PAGE = 500
#: the longest text filter the admin API takes (``rules.MAX_TEXT_FILTER``; the TUI loads no core)
MAX_TEXT_FILTER = 200
#: JSON texts from this size on are decoded in a thread, so the TUI's event loop keeps drawing
DECODE_IN_THREAD_BYTES = 64 * 1024


async def decode(text: str) -> Any:
    """``json.loads``, in a thread when the text is large (a page of dead letters, a hello)."""
    if len(text) >= DECODE_IN_THREAD_BYTES:
        return await asyncio.to_thread(json.loads, text)
    return json.loads(text)


def default_data_dir() -> Path:
    """The appliance's default data directory.

    A copy of ``fleetbox.config.default_data_dir``: importing fleetbox.config would load the core
    (pydantic and the settings), which the TUI must not. tests/tui/test_entry.py checks the two agree.
    """
    if os.geteuid() == 0:
        return Path("/var/lib/fleetbox")
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "fleetbox"


def default_socket_path() -> Path:
    """Where the appliance serves its control socket unless configured otherwise."""
    configured = os.environ.get(SOCKET_ENV)
    if configured:
        return Path(configured)
    data_dir = os.environ.get("FLEETBOX_APPLIANCE__DATA_DIR")
    return (Path(data_dir) if data_dir else default_data_dir()) / SOCKET_NAME


def operator_name() -> str:
    """The login name of whoever runs the TUI: the actor of its actions in the audit log."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER (containers)
        return f"uid:{os.getuid()}"


class ClientError(Exception):
    """The appliance refused or failed a request; the message is the appliance's, for the operator."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class Disconnected(ClientError):
    """The appliance cannot be reached, or the live stream ended."""


_REVIEWED_WORDS = {"yes": True, "no": False, "all": None, "true": True, "false": False}


@dataclass(frozen=True, slots=True)
class DeadFilter:
    """Which dead letters a list shows (and a bulk retry takes).

    The text form, typed after ``/``: ``queue:email error:SMTPTimeout reviewed:no timed out``:
    qualifiers ``queue:``, ``error:`` and ``reviewed:`` (yes, no or all); the rest is searched in
    the error message (case-insensitive).
    """

    queue: str | None = None
    error_class: str | None = None
    text: str | None = None
    #: None: reviewed or not
    reviewed: bool | None = False

    @classmethod
    def parse(cls, text: str, *, base: DeadFilter | None = None) -> DeadFilter:
        """The filter a line of text describes; raises ValueError naming a wrong qualifier."""
        result = replace(base or cls(), queue=None, error_class=None, text=None)
        words: list[str] = []
        for word in text.split():
            key, sep, value = word.partition(":")
            if not sep or key not in ("queue", "error", "reviewed"):
                words.append(word)
            elif not value:
                raise ValueError(f"{key}: needs a value, e.g. {key}:something")
            elif key == "queue":
                result = replace(result, queue=value)
            elif key == "error":
                result = replace(result, error_class=value)
            elif value.lower() not in _REVIEWED_WORDS:
                raise ValueError(f"reviewed: must be yes, no or all, got {value!r}")
            else:
                result = replace(result, reviewed=_REVIEWED_WORDS[value.lower()])
        return replace(result, text=" ".join(words) or None)

    def of_group(self, group: Json) -> DeadFilter:
        """This filter narrowed to a group of :meth:`FleetboxClient.dead_letter_groups`: its error
        class, and its message as the text searched (cut to what the appliance takes; a longer
        message is matched by its start, and the count typed before acting guards the rest)."""
        return replace(self, error_class=group["errorClass"], text=str(group["message"])[:MAX_TEXT_FILTER] or None)

    def as_text(self) -> str:
        """The text form without ``reviewed:`` (that one is shown apart)."""
        parts = [f"queue:{self.queue}"] if self.queue else []
        parts += [f"error:{self.error_class}"] if self.error_class else []
        parts += [self.text] if self.text else []
        return " ".join(parts)

    def params(self) -> dict[str, str]:
        """The admin API's query parameters for this filter (open dead letters only)."""
        params = {"status": "open"}
        if self.queue:
            params["queue"] = self.queue
        if self.error_class:
            params["errorClass"] = self.error_class
        if self.text:
            params["q"] = self.text
        if self.reviewed is not None:
            params["reviewed"] = "true" if self.reviewed else "false"
        return params

    def body(self) -> Json:
        """The same filter as the bulk retry's JSON body fields."""
        body: Json = {}
        if self.queue:
            body["queue"] = self.queue
        if self.error_class:
            body["errorClass"] = self.error_class
        if self.text:
            body["q"] = self.text
        if self.reviewed is not None:
            body["reviewed"] = self.reviewed
        return body


@dataclass(frozen=True, slots=True)
class DeadPage:
    """One page of dead letters, newest first."""

    letters: list[Json]
    #: continues the list (None: this was the last page)
    next_before: int | None
    #: how many match the filter (None: the appliance did not say)
    total: int | None
    #: the appliance stopped counting at ``total``: more may match
    total_capped: bool = False


@dataclass(frozen=True, slots=True)
class BulkResult:
    """The outcome of retrying, reviewing or discarding every dead letter matching a filter."""

    matched: int
    #: retried, reviewed or discarded
    changed: int
    #: left as they were (a retry whose singleton key is held by a live job)
    skipped: int


class FleetboxClient(Protocol):
    """What the TUI needs of an appliance."""

    #: the operator named in the audit log for every action
    operator: str

    def stream(self, interval_ms: int) -> AsyncIterator[StreamMessage]:
        """Connect to the live stream: hello first, then ticks and events; raises Disconnected."""
        ...

    async def subscribe(self, interval_ms: int) -> None:
        """Ask the connected stream for ticks every ``interval_ms``."""

    async def dead_letters(self, flt: DeadFilter, *, before: int | None, limit: int) -> DeadPage:
        """A page of open dead letters matching ``flt``."""
        ...

    async def job(self, job_id: int) -> Json | None:
        """A job with its attempts (``history``), or None once it is archived."""
        ...

    async def queue_errors(self, queue: str, minutes: int) -> list[Json]:
        """A queue's failed attempts of the last ``minutes``, grouped by error class."""
        ...

    async def alerts(self, *, status: str | None, limit: int) -> list[Json]:
        """Alerts newest first (status open or resolved; None: both)."""
        ...

    async def pause(self, queue: str) -> Json:
        """Pause a queue; returns the queue."""
        ...

    async def resume(self, queue: str) -> Json:
        """Resume a queue; returns the queue."""
        ...

    async def clear(self, queue: str) -> int:
        """Remove a queue's jobs not yet started (waiting, scheduled, retrying); returns how many."""
        ...

    async def retry_dead(self, dead_id: int) -> int:
        """Re-enqueue a dead letter; returns the new job's id."""
        ...

    async def review_dead(self, dead_id: int, *, reviewed_by: str, notes: str | None) -> Json:
        """Mark a dead letter reviewed; returns it."""
        ...

    async def discard_dead(self, dead_id: int) -> Json:
        """Discard a dead letter; returns it."""
        ...

    async def retry_matching(self, flt: DeadFilter, *, expected: int) -> BulkResult:
        """Retry every dead letter matching ``flt`` if exactly ``expected`` match (the server checks)."""
        ...

    async def review_matching(
        self, flt: DeadFilter, *, expected: int, reviewed_by: str, notes: str | None
    ) -> BulkResult:
        """Mark every dead letter matching ``flt`` reviewed if exactly ``expected`` match."""
        ...

    async def discard_matching(self, flt: DeadFilter, *, expected: int) -> BulkResult:
        """Discard every dead letter matching ``flt`` if exactly ``expected`` match."""
        ...

    async def dead_letter_groups(self, flt: DeadFilter) -> list[Json]:
        """The dead letters matching ``flt`` grouped by error class and message, largest first:
        ``errorClass``, ``message``, ``count``, ``queues``, ``lastFailedAt``."""
        ...

    async def schedules(self) -> list[Json]:
        """Every cron schedule, by name (``GET /api/schedules``)."""
        ...

    async def schedule(self, name: str, *, next_runs: int) -> Json:
        """One schedule with its next runs (DST flagged) and its latest runs."""
        ...

    async def set_schedule_enabled(self, name: str, enabled: bool) -> Json:
        """Resume (True) or pause (False) a schedule; returns it."""
        ...

    async def run_schedule(self, name: str) -> int:
        """Enqueue a schedule's job now; returns the job's id."""
        ...

    async def job_dependencies(self, job_id: int) -> Json | None:
        """A job's parents and children (where each is now), its result and why it was cancelled;
        None when the job is not there."""
        ...

    async def retry_variants(self, queue: str) -> Json:
        """A queue's retry experiment: each variant's figures, the comparisons and the verdict."""
        ...

    async def close(self) -> None:
        """Release the connection."""


def _check_message(raw: object) -> StreamMessage:
    if not isinstance(raw, dict) or raw.get("type") not in ("hello", "tick", "event", "error"):
        raise Disconnected(f"the appliance sent something that is not a stream message: {str(raw)[:80]}")
    if raw["type"] == "hello" and raw.get("protocol") != PROTOCOL_VERSION:
        raise Disconnected(
            f"the appliance speaks stream protocol {raw.get('protocol')}, this TUI {PROTOCOL_VERSION}: "
            "use the fleetbox of the same version"
        )
    return cast(StreamMessage, raw)


class UnixSocketClient:
    """The admin API and the live stream of an appliance, over its unix control socket."""

    def __init__(self, socket_path: Path, *, operator: str | None = None, timeout: float = 15.0) -> None:
        self.socket_path = socket_path
        self.operator = operator or operator_name()
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # The host is a placeholder: the connector always dials the socket.
            self._session = aiohttp.ClientSession(
                "http://fleetbox",
                connector=aiohttp.UnixConnector(path=str(self.socket_path)),
                timeout=self._timeout,
                headers={OPERATOR_HEADER: self.operator},
            )
        return self._session

    async def _request(
        self, method: str, path: str, *, params: dict[str, str] | None = None, body: Json | None = None
    ) -> Any:
        try:
            async with self._http().request(method, path, params=params, json=body) as resp:
                text = await resp.text()
                payload = await decode(text) if text else None
                if resp.status >= 400:
                    error = payload.get("error", {}) if isinstance(payload, dict) else {}
                    message = error.get("message") or f"HTTP {resp.status}"
                    field = error.get("field")
                    raise ClientError(
                        f"{field}: {message}" if field else message, status=resp.status, code=error.get("code")
                    )
                return payload
        except (aiohttp.ClientConnectionError, TimeoutError, OSError) as exc:
            raise Disconnected(
                f"cannot reach the appliance at {self.socket_path}: {exc or type(exc).__name__}"
            ) from None
        except json.JSONDecodeError:
            raise ClientError(f"the appliance answered {method} {path} with something that is not JSON") from None

    async def stream(self, interval_ms: int) -> AsyncIterator[StreamMessage]:
        """Connect to ``/api/queue/stream`` and yield its messages until it closes."""
        try:
            ws = await self._http().ws_connect(STREAM_PATH, heartbeat=10.0, timeout=aiohttp.ClientWSTimeout())
        except aiohttp.WSServerHandshakeError as exc:
            raise Disconnected(f"the appliance refused the live stream: HTTP {exc.status}") from None
        except (aiohttp.ClientConnectionError, TimeoutError, OSError) as exc:
            raise Disconnected(
                f"cannot reach the appliance at {self.socket_path}: {exc or type(exc).__name__}"
            ) from None
        self._ws = ws
        try:
            await self.subscribe(interval_ms)
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.TEXT:
                    try:
                        raw = await decode(msg.data)
                    except json.JSONDecodeError:
                        raise Disconnected("the appliance sent a frame that is not JSON") from None
                    yield _check_message(raw)
                elif msg.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                    break
        except (aiohttp.ClientConnectionError, OSError) as exc:
            raise Disconnected(f"the live stream broke: {exc or type(exc).__name__}") from None
        finally:
            self._ws = None
            await ws.close()
        raise Disconnected("the appliance closed the live stream")

    async def subscribe(self, interval_ms: int) -> None:
        """Change the tick interval of the connected stream (nothing when not connected)."""
        if self._ws is not None and not self._ws.closed:
            message: Subscribe = {"type": "subscribe", "intervalMs": interval_ms}
            await self._ws.send_str(json.dumps(message))

    async def dead_letters(self, flt: DeadFilter, *, before: int | None, limit: int) -> DeadPage:
        """``GET /api/queue/dead-letter`` with the filter and keyset paging."""
        params = {**flt.params(), "limit": str(min(limit, MAX_PAGE))}
        if before is not None:
            params["before"] = str(before)
        body = await self._request("GET", "/api/queue/dead-letter", params=params)
        total = body.get("total")
        return DeadPage(
            letters=list(body["deadLetters"]),
            next_before=body.get("nextBefore"),
            total=total if isinstance(total, int) else None,
            total_capped=bool(body.get("totalCapped", False)),
        )

    async def job(self, job_id: int) -> Json | None:
        """``GET /api/queue/jobs/{id}``; None when the job is no longer there (archived)."""
        try:
            return cast(Json, await self._request("GET", f"/api/queue/jobs/{job_id}"))
        except ClientError as exc:
            if exc.status == 404:
                return None
            raise

    async def queue_errors(self, queue: str, minutes: int) -> list[Json]:
        """``GET /api/queue/{queue}/errors``."""
        body = await self._request("GET", f"/api/queue/{queue}/errors", params={"minutes": str(minutes)})
        return list(body["errors"])

    async def alerts(self, *, status: str | None, limit: int) -> list[Json]:
        """``GET /api/queue/alerts``."""
        params = {"limit": str(limit)}
        if status is not None:
            params["status"] = status
        return list((await self._request("GET", "/api/queue/alerts", params=params))["alerts"])

    async def pause(self, queue: str) -> Json:
        """``POST /api/queue/{queue}/pause``."""
        return cast(Json, await self._request("POST", f"/api/queue/{queue}/pause"))

    async def resume(self, queue: str) -> Json:
        """``POST /api/queue/{queue}/resume``."""
        return cast(Json, await self._request("POST", f"/api/queue/{queue}/resume"))

    async def clear(self, queue: str) -> int:
        """``DELETE /api/queue/{queue}/clear?confirm=yes`` (the TUI asked for the name typed first)."""
        body = await self._request("DELETE", f"/api/queue/{queue}/clear", params={"confirm": "yes"})
        return int(body["cleared"])

    async def retry_dead(self, dead_id: int) -> int:
        """``POST /api/queue/dead-letter/dl-{id}/retry`` (the dead letter by its own id)."""
        return int((await self._request("POST", f"/api/queue/dead-letter/dl-{dead_id}/retry"))["jobId"])

    async def review_dead(self, dead_id: int, *, reviewed_by: str, notes: str | None) -> Json:
        """``POST /api/queue/dead-letter/dl-{id}/review`` (the dead letter by its own id)."""
        body: Json = {"reviewedBy": reviewed_by}
        if notes:
            body["resolutionNotes"] = notes
        return cast(Json, await self._request("POST", f"/api/queue/dead-letter/dl-{dead_id}/review", body=body))

    async def discard_dead(self, dead_id: int) -> Json:
        """``POST /api/queue/dead-letter/dl-{id}/discard`` (the dead letter by its own id)."""
        return cast(Json, await self._request("POST", f"/api/queue/dead-letter/dl-{dead_id}/discard"))

    async def retry_matching(self, flt: DeadFilter, *, expected: int) -> BulkResult:
        """``POST /api/queue/dead-letter/retry`` with ``expectedCount``: 409 when the count drifted."""
        body = await self._request(
            "POST", "/api/queue/dead-letter/retry", body={**flt.body(), "expectedCount": expected}
        )
        return BulkResult(matched=int(body["matched"]), changed=len(body["retried"]), skipped=len(body["skipped"]))

    async def review_matching(
        self, flt: DeadFilter, *, expected: int, reviewed_by: str, notes: str | None
    ) -> BulkResult:
        """``POST /api/queue/dead-letter/review`` with ``expectedCount``: 409 when the count drifted."""
        body: Json = {**flt.body(), "expectedCount": expected, "reviewedBy": reviewed_by}
        if notes:
            body["resolutionNotes"] = notes
        answer = await self._request("POST", "/api/queue/dead-letter/review", body=body)
        return BulkResult(
            matched=int(answer["matched"]), changed=len(answer["changed"]), skipped=len(answer["skipped"])
        )

    async def discard_matching(self, flt: DeadFilter, *, expected: int) -> BulkResult:
        """``POST /api/queue/dead-letter/discard`` with ``expectedCount``: 409 when the count drifted."""
        answer = await self._request(
            "POST", "/api/queue/dead-letter/discard", body={**flt.body(), "expectedCount": expected}
        )
        return BulkResult(
            matched=int(answer["matched"]), changed=len(answer["changed"]), skipped=len(answer["skipped"])
        )

    async def dead_letter_groups(self, flt: DeadFilter) -> list[Json]:
        """``GET /api/queue/dead-letter/groups`` with the filter."""
        return list((await self._request("GET", "/api/queue/dead-letter/groups", params=flt.params()))["groups"])

    async def schedules(self) -> list[Json]:
        """``GET /api/schedules``."""
        return list((await self._request("GET", "/api/schedules"))["schedules"])

    async def schedule(self, name: str, *, next_runs: int) -> Json:
        """``GET /api/schedules/{name}?next=N``."""
        return cast(
            Json, await self._request("GET", f"/api/schedules/{quote(name, safe='')}", params={"next": str(next_runs)})
        )

    async def set_schedule_enabled(self, name: str, enabled: bool) -> Json:
        """``POST /api/schedules/{name}/resume`` or ``/pause``."""
        return cast(
            Json,
            await self._request("POST", f"/api/schedules/{quote(name, safe='')}/{'resume' if enabled else 'pause'}"),
        )

    async def run_schedule(self, name: str) -> int:
        """``POST /api/schedules/{name}/run``."""
        return int((await self._request("POST", f"/api/schedules/{quote(name, safe='')}/run"))["jobId"])

    async def job_dependencies(self, job_id: int) -> Json | None:
        """``GET /api/queue/jobs/{id}/dependencies``; None when the job is not there."""
        try:
            return cast(Json, await self._request("GET", f"/api/queue/jobs/{job_id}/dependencies"))
        except ClientError as exc:
            if exc.status == 404:
                return None
            raise

    async def retry_variants(self, queue: str) -> Json:
        """``GET /api/queue/{queue}/retry-variants``."""
        return cast(Json, await self._request("GET", f"/api/queue/{quote(queue, safe='')}/retry-variants"))

    async def close(self) -> None:
        """Close the stream and the HTTP session."""
        if self._ws is not None:
            await self._ws.close()
        if self._session is not None:
            await self._session.close()
