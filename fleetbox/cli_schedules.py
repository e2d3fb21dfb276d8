"""``fleetbox schedule``: cron schedules managed at runtime (add, list, show, remove, pause, resume,
run), through the one service layer. Schedules from the config file's ``[[schedules]]`` are listed
too; one changed here is taken back to the file's version at the next reload."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fleetbox.cron import Tick
    from fleetbox.models import Schedule
    from fleetbox.service import Service


#: What ``schedule show`` says beside a next run that a daylight-saving change moved.
DST_NOTES = {
    "skipped-forward": "  (DST: the named time does not exist that day; runs at the end of the gap)",
    "repeated-first": "  (DST: the named time repeats that day; first of two)",
    "repeated-second": "  (DST: the named time repeats that day; second of two)",
}


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """The ``schedule`` command and its subcommands, on the CLI's subparsers."""
    schedule = sub.add_parser("schedule", help="cron schedules: add, list, show, remove, pause, resume, run")
    commands = schedule.add_subparsers(dest="schedule_command", required=True)

    add = commands.add_parser("add", parents=[common], help="create or change a schedule")
    add.add_argument("name")
    add.add_argument("--cron", required=True, help="5 fields, 6 with seconds first, or @hourly/@daily/...")
    add.add_argument("--queue", required=True)
    add.add_argument("--data", default="{}", help="the payload of every job, a JSON object (default {})")
    add.add_argument("--tz", default="UTC", metavar="ZONE", help="IANA time zone the expression is read in")
    add.add_argument("--priority", type=int, default=5, help="1 (first) to 10 (default 5)")
    add.add_argument(
        "--dst",
        choices=["once", "both"],
        default="once",
        help="a local time the fall-back day repeats runs once or at both",
    )
    add.add_argument(
        "--catch-up", choices=["none", "latest", "all"], default="latest", help="ticks missed while no appliance ran"
    )
    add.add_argument("--catch-up-max", type=int, default=100, help="with --catch-up all: at most this many")
    add.add_argument(
        "--overlap",
        choices=["allow", "skip", "queue", "cancel_previous"],
        default="allow",
        help="when the previous run is still waiting or running",
    )
    add.add_argument(
        "--alert-after",
        type=float,
        metavar="SECONDS",
        help="dead-man alert: no job of this schedule succeeded for this long",
    )
    add.add_argument("--paused", action="store_true", help="create it paused")
    add.add_argument("--by", default="cli", help="who does it (audit log)")

    listing = commands.add_parser("list", parents=[common], help="every schedule with its next run")
    listing.add_argument("--json", action="store_true")

    show = commands.add_parser("show", parents=[common], help="a schedule, its next runs (DST flagged), its last runs")
    show.add_argument("name")
    show.add_argument("--next", type=int, default=5, metavar="N", help="how many next runs (1-1000, default 5)")
    show.add_argument("--json", action="store_true")

    for verb, text in (
        ("remove", "delete a schedule"),
        ("pause", "stop firing a schedule"),
        ("resume", "fire a paused schedule again, from its next tick"),
        ("run", "enqueue the schedule's job now and print its id"),
    ):
        command = commands.add_parser(verb, parents=[common], help=text)
        command.add_argument("name")
        command.add_argument("--by", default="cli", help="who does it (audit log)")


async def run(args: argparse.Namespace, service: Service) -> int:
    """Carry out ``fleetbox schedule ...``; errors are the service's, printed by the CLI."""
    from fleetbox import rules
    from fleetbox.service.schedules import ScheduleSpec

    schedules = service.schedules
    command = args.schedule_command
    if command == "add":
        data = rules.parse_json_text(args.data, service.enqueue.limits, field="--data")
        spec = ScheduleSpec(
            name=args.name,
            cron=args.cron,
            queue=args.queue,
            data=data,
            timezone=args.tz,
            priority=args.priority,
            enabled=not args.paused,
            dst=args.dst,
            catch_up=args.catch_up,
            catch_up_max=args.catch_up_max,
            overlap=args.overlap,
            alert_after_seconds=args.alert_after,
        )
        schedule = await schedules.put(spec, actor=args.by)
        print(f"schedule {schedule.name}: next run {_when(schedule)}")
        return 0
    if command == "list":
        every = await schedules.all()
        if args.json:
            from fleetbox.admin import views  # the admin API's shape; loaded only for --json

            print(json.dumps([views.schedule(s).model_dump(mode="json", by_alias=True) for s in every]))
            return 0
        print(f"{'name':<24} {'cron':<18} {'timezone':<18} {'queue':<16} {'state':<7} {'next run (UTC)':<20} source")
        for s in every:
            state = "active" if s.enabled else "paused"
            print(f"{s.name:<24} {s.cron:<18} {s.timezone:<18} {s.queue:<16} {state:<7} {_when(s):<20} {s.source}")
        return 0
    if command == "show":
        schedule = await schedules.get(args.name)
        upcoming = await schedules.upcoming(args.name, args.next) if schedule.enabled else []
        runs = await schedules.runs(args.name)
        if args.json:
            from fleetbox.admin import views  # the admin API's shape; loaded only for --json

            detail = views.schedule_detail(schedule, upcoming, runs)
            print(json.dumps(detail.model_dump(mode="json", by_alias=True)))
            return 0
        _print_schedule(schedule, upcoming)
        print("last runs:" if runs else "last runs: none yet")
        for r in runs:
            job = f"job {r.job_id}" if r.job_id is not None else ""
            print(f"  {r.tick:%Y-%m-%d %H:%M:%S} UTC  {r.outcome:<9} {job}")
        return 0
    if command == "remove":
        await schedules.remove(args.name, actor=args.by)
        print(f"schedule {args.name} removed")
        return 0
    if command in ("pause", "resume"):
        schedule = await schedules.set_enabled(args.name, command == "resume", actor=args.by)
        print(f"schedule {args.name} {'resumed: next run ' + _when(schedule) if schedule.enabled else 'paused'}")
        return 0
    print(await schedules.run_now(args.name, actor=args.by))
    return 0


def _when(schedule: Schedule) -> str:
    if not schedule.enabled:
        return "-"
    return "-" if schedule.next_run_at is None else f"{schedule.next_run_at:%Y-%m-%d %H:%M:%S}"


def _print_schedule(s: Schedule, upcoming: list[Tick]) -> None:
    state = "active" if s.enabled else f"paused by {s.updated_by or '?'}"
    print(f"schedule {s.name} ({state}, from {s.source})")
    print(f"  cron {s.cron} in {s.timezone}; queue {s.queue}, priority {s.priority}")
    print(f"  dst {s.dst}, catch-up {s.catch_up.value} (max {s.catch_up_max}), overlap {s.overlap.value}")
    if s.alert_after_seconds is not None:
        print(f"  alert when no job succeeded for {s.alert_after_seconds:g} s")
    print(f"  payload {json.dumps(s.data)[:200]}")
    if s.last_run_at is not None:
        print(f"  last fired {s.last_run_at:%Y-%m-%d %H:%M:%S} UTC, last job {s.last_job_id}")
    print("next runs:" if upcoming else "next runs: none (paused)")
    for t in upcoming:
        flag = DST_NOTES.get(t.dst or "", "")
        print(f"  {t.at:%Y-%m-%d %H:%M:%S} UTC  = {t.local:%Y-%m-%d %H:%M} {s.timezone}{flag}")
