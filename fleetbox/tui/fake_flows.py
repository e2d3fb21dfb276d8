"""The in-memory appliance's cron schedules, dependency graphs and retry experiments, for the
TUI's tests and ``fleetbox tui --demo``: :class:`FakeFlows` is mixed into
:class:`fleetbox.tui.fake.FakeClient`, in the admin API's shapes, every action recorded in
``calls``."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fleetbox.tui.client import ClientError, Json


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat()


def canned_schedules(now: float) -> dict[str, Json]:
    """Three schedules: a nightly sync in Berlin, an hourly digest, a paused report."""
    base = {
        "data": {},
        "priority": 5,
        "dst": "once",
        "catchUp": "latest",
        "catchUpMax": 100,
        "overlap": "skip",
        "alertAfterSeconds": None,
        "source": "config",
        "lastTick": None,
        "createdAt": _iso(now - 30 * 86400),
        "updatedAt": _iso(now - 86400),
        "updatedBy": None,
    }
    return {
        "hourly-digest": {
            **base,
            "name": "hourly-digest",
            "cron": "@hourly",
            "timezone": "UTC",
            "queue": "notifications",
            "enabled": True,
            "nextRunAt": _iso(now + 1800),
            "lastRunAt": _iso(now - 1800),
            "lastJobId": 9001,
        },
        "nightly-sync": {
            **base,
            "name": "nightly-sync",
            "cron": "30 2 * * *",
            "timezone": "Europe/Berlin",
            "queue": "sync",
            "data": {"scope": "all"},
            "enabled": True,
            "nextRunAt": _iso(now + 5 * 3600),
            "lastRunAt": _iso(now - 19 * 3600),
            "lastJobId": 8800,
        },
        "weekly-report": {
            **base,
            "name": "weekly-report",
            "cron": "0 8 * * 1",
            "timezone": "America/New_York",
            "queue": "webhooks",
            "enabled": False,
            "source": "api",
            "nextRunAt": None,
            "lastRunAt": None,
            "lastJobId": None,
        },
    }


class FakeFlows:
    """Schedules, job dependencies and retry variants of the fake appliance."""

    now: float
    calls: list[tuple[str, Any]]
    _schedules: dict[str, Json] | None = None
    _next_job = 20_000

    @property
    def schedule_table(self) -> dict[str, Json]:
        """The schedules, made on first use (the clock is known by then)."""
        if self._schedules is None:
            self._schedules = canned_schedules(self.now)
        return self._schedules

    def _schedule(self, name: str) -> Json:
        if name not in self.schedule_table:
            raise ClientError(f"no schedule {name!r}", status=404, code="not_found")
        return self.schedule_table[name]

    async def schedules(self) -> list[Json]:
        """Every schedule, by name."""
        self.calls.append(("schedules", None))
        return [dict(s) for _, s in sorted(self.schedule_table.items())]

    async def schedule(self, name: str, *, next_runs: int) -> Json:
        """A schedule with its next runs (hourly from its next run) and its last run."""
        self.calls.append(("schedule", name))
        s = self._schedule(name)
        start = self.now + 1800
        upcoming = [
            {"at": _iso(start + i * 3600), "local": _iso(start + i * 3600), "dst": None} for i in range(next_runs)
        ]
        runs = []
        if s["lastJobId"] is not None:
            runs.append(
                {
                    "tick": s["lastRunAt"],
                    "firedAt": s["lastRunAt"],
                    "outcome": "enqueued",
                    "jobId": s["lastJobId"],
                    "workerId": "fb-01:4242",
                }
            )
        return {**s, "next": upcoming if s["enabled"] else [], "runs": runs}

    async def set_schedule_enabled(self, name: str, enabled: bool) -> Json:
        """Pause or resume a schedule."""
        self.calls.append(("resume_schedule" if enabled else "pause_schedule", name))
        s = self._schedule(name)
        s["enabled"] = enabled
        s["nextRunAt"] = _iso(self.now + 1800) if enabled else None
        return dict(s)

    async def run_schedule(self, name: str) -> int:
        """Enqueue a schedule's job now."""
        self.calls.append(("run_schedule", name))
        s = self._schedule(name)
        FakeFlows._next_job += 1
        s["lastJobId"] = FakeFlows._next_job
        s["lastRunAt"] = _iso(self.now)
        return FakeFlows._next_job

    async def job_dependencies(self, job_id: int) -> Json | None:
        """Every job of the fake has one parent (the id below it) and one held child (above)."""
        self.calls.append(("job_dependencies", job_id))
        return {
            "jobId": job_id,
            "parents": [{"jobId": job_id - 1, "state": "succeeded", "edge": "succeeded", "step": "upload"}],
            "children": [{"jobId": job_id + 1, "state": "blocked", "edge": None, "step": "send"}],
            "hasResult": False,
            "result": None,
            "cancellation": None,
        }

    async def retry_variants(self, queue: str) -> Json:
        """An experiment of two variants where ``jittered`` does better."""
        self.calls.append(("retry_variants", queue))

        def variant(label: str, weight: float, jobs: int, succeeded: int, attempts: float, p50: float) -> Json:
            dead = jobs - succeeded
            return {
                "label": label,
                "weight": weight,
                "jobs": jobs,
                "succeeded": succeeded,
                "dead": dead,
                "successRate": succeeded / jobs,
                "attemptsPerSuccess": attempts,
                "extraRequests": round((attempts - 1) * succeeded),
                "timeToSuccessP50Seconds": p50,
                "timeToSuccessP95Seconds": p50 * 4,
                "deadLetterRate": dead / jobs,
            }

        verdict = "jittered better (p < 0.05)"
        return {
            "queue": queue,
            "since": _iso(self.now - 86400),
            "mode": "fixed",
            "variants": [variant("control", 0.5, 400, 352, 1.8, 3.0), variant("jittered", 0.5, 410, 389, 1.5, 6.5)],
            "comparisons": [{"label": "jittered", "control": "control", "pValue": 0.004, "verdict": verdict}],
            "verdict": verdict,
            "history": [],
        }
