"""``fleetbox status``: the health of a running appliance, read from its admin API."""

from __future__ import annotations

import json
import sys

import aiohttp

from fleetbox.config import Settings, redact_dsn
from fleetbox.errors import DatabaseError

#: Exit codes: 0 healthy, 1 unhealthy, 3 the appliance could not be reached.
UNHEALTHY = 1
UNREACHABLE = 3


async def _get_health(
    base: str, headers: dict[str, str], connector: aiohttp.BaseConnector | None, where: str
) -> tuple[int, dict[str, object]]:
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10), connector=connector) as session,
            session.get(f"{base}/api/queue/health", headers=headers) as response,
        ):
            body = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError) as exc:
        raise DatabaseError(f"the appliance at {where} did not answer: {type(exc).__name__}: {exc}") from None
    if not isinstance(body, dict):
        raise DatabaseError(f"the appliance at {where} answered with something that is not a health document")
    return response.status, body


async def fetch_health(settings: Settings, url: str | None = None) -> tuple[int, dict[str, object]]:
    """GET /api/queue/health; returns the HTTP status and the document.

    Without ``url``, the appliance's control socket is asked first when it exists (it needs no
    key and works with the HTTP port ephemeral or unknown), then ``http://<admin.host>:<admin.port>``.
    """
    admin = settings.admin
    headers = {}
    key = admin.read_key or admin.key
    if key is not None:
        headers["x-admin-key"] = key.get_secret_value()
    socket_path = admin.control_socket(settings.appliance.data_dir) if url is None else None
    failures = []
    if socket_path is not None and socket_path.exists():
        try:
            return await _get_health(
                "http://localhost", {}, aiohttp.UnixConnector(path=str(socket_path)), f"the socket {socket_path}"
            )
        except DatabaseError as exc:
            failures.append(str(exc))
    base = (url or f"http://{admin.host}:{admin.port}").rstrip("/")
    try:
        return await _get_health(base, headers, None, redact_dsn(base))
    except DatabaseError as exc:
        raise DatabaseError("; ".join([*failures, str(exc)])) from None


def format_table(health: dict[str, object]) -> str:
    """The health document as a terminal table."""
    lines = []
    state = "healthy" if health.get("healthy") else "UNHEALTHY"
    lines.append(
        f"fleetbox: {state}   dead letters: {health.get('deadLetterCount', '?')}   "
        f"checked: {health.get('lastChecked', '?')}"
    )
    reasons = health.get("reasons")
    if isinstance(reasons, list):
        lines.extend(f"  ! {reason}" for reason in reasons)
    # The job states' words (fleetbox.models.JobState) as the health document names its figures;
    # a queue is active or paused, as `fleetbox queues` says ("running" is a job's state).
    lines.append(
        f"{'queue':<20} {'state':<8} {'backlog':>8} {'waiting':>8} {'sched':>8} {'retry':>8} {'running':>8} "
        f"{'fail %':>7} {'avg ms':>9}"
    )
    queues = health.get("queues", {})
    if isinstance(queues, dict):
        for name, q in queues.items():
            state = "active" if q.get("isRunning") else "paused"
            lines.append(
                f"{name:<20} {state:<8} {q.get('backlog', 0):>8} {q.get('waiting', 0):>8} {q.get('scheduled', 0):>8} "
                f"{q.get('retrying', 0):>8} {q.get('running', 0):>8} {q.get('failureRate', 0):>7.1f} "
                f"{q.get('avgProcessingTime', 0):>9.0f}"
            )
    return "\n".join(lines)


async def print_status(settings: Settings, *, url: str | None, as_json: bool) -> int:
    try:
        status, health = await fetch_health(settings, url)
    except DatabaseError as exc:
        print(f"fleetbox: error: {redact_dsn(str(exc))}", file=sys.stderr)
        return UNREACHABLE
    if status in (401, 403):
        error = health.get("error")
        message = error.get("message") if isinstance(error, dict) else None
        print(f"fleetbox: error: the admin API refused the request: {message or status}", file=sys.stderr)
        return UNREACHABLE
    print(json.dumps(health, indent=2) if as_json else format_table(health))
    return 0 if health.get("healthy") else UNHEALTHY
