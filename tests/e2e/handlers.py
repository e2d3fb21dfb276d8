"""Job handlers for the end-to-end tests, loaded by real ``fleetbox run`` processes.

Every handler appends one JSON line when it starts and one when it finishes to
``$E2E_LOG_DIR/<pid>.log`` (one file per process, so two processes never write to the same
file). The tests read those files to see which process ran which job, when, and how often.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

from fleetbox.errors import TransientError, ValidationError
from fleetbox.models import Job

#: How long a gated handler waits for its gate before giving up (a test failing, not hanging).
GATE_TIMEOUT = 120.0


def _record(event: str, job: Job, **extra: Any) -> None:
    log_dir = os.environ.get("E2E_LOG_DIR")
    if not log_dir:
        raise RuntimeError("E2E_LOG_DIR is not set in the appliance's environment")
    line = json.dumps(
        {
            "event": event,
            "job": job.id,
            "attempt": job.attempt,
            "queue": job.queue,
            "pid": os.getpid(),
            "t": time.time(),
            "data": job.data,
            **extra,
        }
    )
    fd = os.open(Path(log_dir) / f"{os.getpid()}.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def _exists(path: str) -> bool:
    return os.path.exists(path)


async def record(job: Job) -> None:
    """Start, optionally sleep ``data["sleep"]`` seconds, finish."""
    _record("start", job)
    await asyncio.sleep(float(job.data.get("sleep", 0)))
    _record("end", job)


async def gated(job: Job) -> None:
    """Start, then block until the file ``data["gate"]`` exists, then finish."""
    _record("start", job)
    gate = job.data["gate"]
    deadline = time.monotonic() + GATE_TIMEOUT
    while not _exists(gate):
        if time.monotonic() > deadline:
            raise TransientError(f"gate {gate} did not open within {GATE_TIMEOUT}s")
        await asyncio.sleep(0.02)
    _record("end", job)


async def reject_unless(job: Job) -> None:
    """Fail permanently (straight to the dead letters) unless the file ``data["ok_file"]`` exists."""
    _record("start", job)
    if not _exists(job.data["ok_file"]):
        raise ValidationError("rejected by the e2e test: ok_file is missing")
    _record("end", job)
