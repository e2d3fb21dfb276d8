"""docs/monitoring: the Grafana dashboard and the Prometheus alert rules shipped for teams that
already run Prometheus name only metrics a running appliance's /metrics exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from fleetbox.client import Client
from fleetbox.models import JobState, Thresholds
from tests.admin.conftest import ApiFactory

DOCS = Path(__file__).resolve().parents[2] / "docs" / "monitoring"
METRIC = re.compile(r"\b(fleetbox_[a-z_]+)")
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"), "gauge": ("",)}


async def exported(api_factory: ApiFactory, client: Client) -> set[str]:
    await client.enqueue("sync", {"n": 1}, delay=60_000)
    response = await (await api_factory()).get("/metrics")
    assert response.status == 200
    names = set()
    for family in text_string_to_metric_families(await response.text()):
        names |= {family.name + suffix for suffix in SUFFIXES.get(family.type, ("",))}
    return names


def expressions_of_dashboard() -> list[str]:
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert len(exprs) >= 10 and dashboard["uid"] and dashboard["templating"]["list"]
    return exprs


def rules() -> list[dict[str, object]]:
    document = yaml.safe_load((DOCS / "prometheus-rules.yml").read_text())
    [group] = document["groups"]
    return list(group["rules"])


async def test_the_grafana_dashboard_names_only_exported_metrics(api_factory: ApiFactory, client: Client) -> None:
    names = await exported(api_factory, client)
    used = {m for expr in expressions_of_dashboard() for m in METRIC.findall(expr)}
    assert used and used <= names, f"not exported: {sorted(used - names)}"
    # every family fleetbox exports is on the dashboard (a new metric gets a panel)
    families = {n.removesuffix(s) for n in names for s in ("_total", "_bucket", "_sum", "_count", "") if n.endswith(s)}
    assert {m for m in families if any(u.startswith(m) for u in used)} >= {
        "fleetbox_attempts",
        "fleetbox_attempt_duration_seconds",
        "fleetbox_queue_jobs",
        "fleetbox_dead_letters_open",
        "fleetbox_queue_paused",
        "fleetbox_rate_limit_waits",
        "fleetbox_graph_throttled",
        "fleetbox_task_failures",
    }


async def test_the_alert_rules_name_exported_metrics_and_match_the_built_in_thresholds(
    api_factory: ApiFactory, client: Client
) -> None:
    names = await exported(api_factory, client)
    by_name = {str(r["alert"]): r for r in rules()}
    for rule in by_name.values():
        assert set(rule) >= {"alert", "expr", "for", "labels", "annotations"}, rule
        used = set(METRIC.findall(str(rule["expr"])))
        assert used <= names, f"{rule['alert']}: not exported: {sorted(used - names)}"
    defaults = Thresholds()
    expected = {
        "FleetboxBacklogHigh": defaults.max_backlog,
        "FleetboxFailureRateHigh": defaults.max_failure_rate,
        "FleetboxProcessingTimeHigh": defaults.max_processing_time,
        "FleetboxDeadLettersHigh": defaults.max_dead_letter_jobs,
    }
    for alert, threshold in expected.items():
        assert str(by_name[alert]["expr"]).rstrip().endswith(f"> {threshold:g}"), alert


async def test_the_shipped_queries_name_only_the_job_states_metrics_export(
    api_factory: ApiFactory, client: Client
) -> None:
    # A renamed state word (ready -> waiting) leaves a dashboard panel empty without an error.
    await client.enqueue("sync", {"n": 1})
    response = await (await api_factory()).get("/metrics")
    families = {f.name: f for f in text_string_to_metric_families(await response.text())}
    states = {s.labels["state"] for s in families["fleetbox_queue_jobs"].samples}
    assert states == {JobState.WAITING, JobState.SCHEDULED, JobState.RETRYING, JobState.RUNNING}
    exprs = expressions_of_dashboard() + [str(r["expr"]) for r in rules()]
    used = {
        word
        for expr in exprs
        for match in re.findall(r'state=~?"([^"]+)"', expr.replace('\\"', '"'))
        for word in match.split("|")
    }
    assert used and used <= states, f"not a state fleetbox exports: {sorted(used - states)}"
