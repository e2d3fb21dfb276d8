"""``fleetbox retry-report QUEUE``: what each retry variant of a queue's experiment did, and
``--promote LABEL`` to make one of them the queue's rules."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fleetbox.config import Settings
    from fleetbox.service import Service
    from fleetbox.service.experiments import Report


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """The ``retry-report`` command, on the CLI's subparsers."""
    report = sub.add_parser("retry-report", parents=[common], help="a queue's retry experiment: each variant's figures")
    report.add_argument("queue")
    report.add_argument("--json", action="store_true")
    report.add_argument("--promote", metavar="LABEL", help="make this variant the rules of every new job")
    report.add_argument("--by", default="cli", help="who promotes (audit log)")


async def run(args: argparse.Namespace, service: Service, settings: Settings) -> int:
    """Carry out ``fleetbox retry-report``."""
    experiments = service.experiments
    if args.promote is not None:
        await experiments.promote(args.queue, args.promote, actor=args.by)
        print(f"queue {args.queue}: every new job follows retry variant {args.promote}")
        print("to keep it after the next reload, make it the queue's [queues.<name>.retry] in the config file")
        return 0
    report = await experiments.report(args.queue, settings.queues.get(args.queue))
    if args.json:
        from fleetbox.admin import views  # the admin API's shape; loaded only for --json

        print(json.dumps(views.retry_report(report).model_dump(mode="json", by_alias=True)))
        return 0
    _print(report)
    return 0


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _num(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"{value:.2f}{unit}"


def _print(report: Report) -> None:
    since = "no experiment" if report.since is None else f"since {report.since:%Y-%m-%d %H:%M} UTC"
    print(f"queue {report.queue}: retry variants ({report.mode}), {since}")
    print(
        f"{'variant':<16} {'weight':>7} {'jobs':>7} {'success':>8} {'att/succ':>9} {'extra req':>10} "
        f"{'p50':>9} {'p95':>9} {'dead':>7}"
    )
    for v in report.variants:
        print(
            f"{v.label:<16} {v.weight:>7.2f} {v.jobs:>7} {_pct(v.success_rate):>8} {_num(v.attempts_per_success):>9} "
            f"{v.extra_requests:>10} {_num(v.time_to_success_p50, 's'):>9} {_num(v.time_to_success_p95, 's'):>9} "
            f"{_pct(v.dead_rate):>7}"
        )
    print(f"verdict: {report.verdict}")
