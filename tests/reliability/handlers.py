"""The handler of the fault scenarios: a journal line when a job starts and when it ends.

Each line is one ``write`` to a file opened with O_APPEND, so a line is whole or absent even when
the process is killed with SIGKILL in the middle of a job, and lines of several processes never
interleave. The audit reads the journal to tell which process ran which job, and how often.
"""

from __future__ import annotations

import asyncio
import json
import os
import time

from fleetbox.models import Job


def _line(event: str, job: Job) -> None:
    journal = os.environ["RELIABILITY_JOURNAL"]
    line = json.dumps({"e": event, "job": job.id, "attempt": job.attempt, "pid": os.getpid(), "t": time.time()})
    fd = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


async def journal(job: Job) -> None:
    """Start, a few milliseconds of work, end (a cancelled run writes ``cancelled`` instead)."""
    _line("start", job)
    try:
        await asyncio.sleep(0.005)
    except asyncio.CancelledError:
        _line("cancelled", job)
        raise
    _line("end", job)
