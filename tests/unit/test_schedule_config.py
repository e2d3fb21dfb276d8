"""The monitoring schedule's settings: every interval configurable, bad values named with their key."""

from __future__ import annotations

import pytest

from fleetbox.config import load_settings
from fleetbox.errors import ConfigError
from fleetbox.models import ManualClock, Thresholds
from fleetbox.monitor import Monitor
from fleetbox.monitor.tasks import default_tasks
from fleetbox.service import Service
from fleetbox.store import Store


def tasks_for(environ: dict[str, str]) -> dict[str, tuple[str | None, float | None, str]]:
    settings = load_settings(environ=environ).settings
    db = Store("postgresql://unused", schema="fleetbox")  # never opened: building tasks reads nothing
    clock = ManualClock()
    service = Service(db, clock=clock, thresholds=settings.monitor.thresholds())
    monitor = Monitor(db, service.thresholds, clock=clock)
    return {
        t.name: (t.schedule, t.every, t.timezone) for t in default_tasks(settings, monitor, service.retention, clock)
    }


def test_the_default_schedule_is_the_specs() -> None:
    assert tasks_for({}) == {
        "health-check": (None, 60, "UTC"),  # every minute
        "statistics-snapshot": (None, 300, "UTC"),  # every 5 minutes
        "performance-report": ("0 0 * * *", None, "UTC"),  # daily at midnight
        "statistics-cleanup": ("0 2 * * *", None, "UTC"),  # daily at 2 AM
        "job-archive": ("30 * * * *", None, "UTC"),  # hourly, so QUEUE_ARCHIVE_HOURS holds to the hour
        "job-cleanup": ("0 0 * * 0", None, "UTC"),  # weekly on Sunday
        "table-cleanup": ("15 3 * * *", None, "UTC"),  # daily: every other table that grows
    }


def test_every_interval_comes_from_the_environment() -> None:
    tasks = tasks_for(
        {
            "QUEUE_MONITOR_INTERVAL": "15",
            "FLEETBOX_MONITOR__SNAPSHOT_SECONDS": "120",
            "FLEETBOX_MONITOR__REPORT_CRON": "0 6 * * *",
            "FLEETBOX_MONITOR__STATS_CLEANUP_CRON": "0 3 * * *",
            "FLEETBOX_MONITOR__TIMEZONE": "Europe/Berlin",
            "FLEETBOX_RETENTION__ARCHIVE_CRON": "*/10 * * * *",
            "FLEETBOX_RETENTION__CLEANUP_CRON": "0 4 * * 6",
        }
    )
    assert tasks["health-check"][1] == 15
    assert tasks["statistics-snapshot"][1] == 120
    assert tasks["performance-report"] == ("0 6 * * *", None, "Europe/Berlin")
    assert tasks["statistics-cleanup"][0] == "0 3 * * *"
    assert tasks["job-archive"][0] == "*/10 * * * *"
    assert tasks["job-cleanup"][0] == "0 4 * * 6"


def test_thresholds_come_from_the_config() -> None:
    settings = load_settings(
        environ={"FLEETBOX_MONITOR__MAX_BACKLOG": "2000", "FLEETBOX_MONITOR__MAX_FAILURE_RATE": "15"}
    ).settings
    assert settings.monitor.thresholds() == Thresholds(max_backlog=2000, max_failure_rate=15.0)


@pytest.mark.parametrize(
    ("var", "value", "key"),
    [
        ("FLEETBOX_MONITOR__REPORT_CRON", "at midnight", "monitor.report_cron"),
        ("FLEETBOX_RETENTION__CLEANUP_CRON", "0 0 * *", "retention.cleanup_cron"),
        ("FLEETBOX_MONITOR__TIMEZONE", "Mars/Olympus", "monitor.timezone"),
        ("FLEETBOX_MONITOR__MAX_FAILURE_RATE", "150", "monitor.max_failure_rate"),
        ("QUEUE_MONITOR_INTERVAL", "0", "monitor.interval_seconds"),
        ("FLEETBOX_MONITOR__SNAPSHOT_SECONDS", "-5", "monitor.snapshot_seconds"),
    ],
)
def test_a_bad_schedule_value_is_named(var: str, value: str, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(environ={var: value})
    assert f"{key}: " in str(err.value)
    assert "(from environment" in str(err.value)
