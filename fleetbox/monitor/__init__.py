"""Watching: health, statistics, metrics, alerts and the periodic schedule.

- :mod:`~fleetbox.monitor.health`: :class:`Monitor`, the spec's health, stats, metrics and alerts;
- :mod:`~fleetbox.monitor.schedule`: the shared schedule (each tick once across appliances);
- :mod:`~fleetbox.monitor.tasks`: the spec's monitoring and retention schedule;
- :mod:`~fleetbox.monitor.metrics`: this process's Prometheus figures.
"""

from __future__ import annotations

from fleetbox.monitor.health import Condition, HealthReport, Monitor, QueueHealth

__all__ = ["Condition", "HealthReport", "Monitor", "QueueHealth"]
