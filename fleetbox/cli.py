"""The ``fleetbox`` command: run, migrate, enqueue, config show, queues, job, dead, schedule, status,
tui, auth, subscriptions, bench."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fleetbox.config import LoadedSettings, Settings
    from fleetbox.errors import FleetboxError
    from fleetbox.service import Service
    from fleetbox.store import Store
    from fleetbox.store.embedded import EmbeddedPostgres

# The core (config, database, asyncpg) is imported inside the commands that need it: `fleetbox tui`
# is a client of the control socket and must start without it (tests/tui/test_entry.py).


def _exit_code(exc: FleetboxError) -> int:
    from fleetbox.errors import ConfigError, Conflict, DatabaseError, InvalidInput, NotFound

    codes: list[tuple[type[FleetboxError], int]] = [
        (ConfigError, 2),
        (InvalidInput, 2),
        (NotFound, 4),
        (Conflict, 5),
        (DatabaseError, 3),
    ]
    return next((code for cls, code in codes if isinstance(exc, cls)), 1)


def _state(text: str) -> str:
    """A job list's state filter: the words of fleetbox.models.JobState, ``pending`` and the
    aliases, as the service and the HTTP API take them (the service's check, so one list)."""
    from fleetbox.errors import InvalidInput
    from fleetbox.service.jobs import status_filter

    try:
        return status_filter(text.lower()) or ""
    except InvalidInput as exc:
        raise argparse.ArgumentTypeError(f"{str(exc).removeprefix('status: ')}, got {text[:40]!r}") from None


def _yes_no(text: str) -> bool:
    from fleetbox import rules

    value = rules.YES_NO.get(text.lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"must be true or false (yes or no), got {text[:40]!r}")
    return value


def _positive(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 10**9:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to {10**9}, got {text[:40]!r}")
    return int(text)


def _job_id(text: str) -> int:
    from fleetbox import rules
    from fleetbox.errors import InvalidInput

    try:
        return rules.parse_id(text, "id")
    except InvalidInput as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("id: ")) from None


def _job_ids(text: str) -> list[int]:
    ids = [_job_id(part.strip()) for part in text.split(",")]
    if len(ids) > 1000:
        raise argparse.ArgumentTypeError("at most 1000 job ids")
    return ids


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", metavar="FILE", help="TOML config file (default: $FLEETBOX_CONFIG or ./fleetbox.toml)"
    )
    common.add_argument("--dsn", help="PostgreSQL DSN (overrides the config and environment)")
    common.add_argument("--schema", help="PostgreSQL schema for fleetbox's tables (default fleetbox)")
    common.add_argument("--data-dir", help="where the embedded PostgreSQL keeps its files")
    common.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    common.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log at info level (-vv: debug); one-shot commands log only warnings",
    )
    common.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="set any config key, e.g. --set pools.high=40 (repeatable)",
    )

    # What every listing command takes: the same row limit, and (below) one spelling of each job
    # state (_state) and of yes/no values (_yes_no).
    filters = argparse.ArgumentParser(add_help=False)
    filters.add_argument("--limit", type=_positive, default=50, help="at most this many rows (default 50)")

    parser = argparse.ArgumentParser(prog="fleetbox", description="PostgreSQL job-queue appliance")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", parents=[common], help="run the appliance until SIGTERM or SIGINT")
    run.add_argument("--no-migrate", action="store_true", help="do not apply pending migrations at start")
    run.add_argument(
        "--simulate-faults",
        choices=["throttle", "outage", "mixed"],
        metavar="PROFILE",
        help="rehearse Graph faults in the built-in simulator: throttle, outage or mixed "
        "(sets graph.simulator.faults.profile; refused when a real Graph is configured)",
    )

    sub.add_parser("migrate", parents=[common], help="create or upgrade the database schema")

    enq = sub.add_parser("enqueue", parents=[common], help="enqueue one job and print its id")
    enq.add_argument("queue")
    enq.add_argument(
        "--data", required=True, help="the payload, a JSON object; @FILE reads it from a file, - from standard input"
    )
    enq.add_argument("--priority", type=int, default=5, help="1 (first) to 10 (default 5)")
    when = enq.add_mutually_exclusive_group()
    when.add_argument("--delay", type=float, metavar="MS", help="run no earlier than MS milliseconds from now")
    when.add_argument("--run-at", metavar="ISO", help="run no earlier than this time (ISO 8601 with zone)")
    enq.add_argument("--singleton-key", metavar="KEY")
    enq.add_argument("--max-attempts", type=int)
    enq.add_argument(
        "--after",
        type=_job_ids,
        metavar="ID[,ID]",
        help="run only once every one of these jobs has succeeded (it waits as 'blocked')",
    )
    enq.add_argument(
        "--on-failure",
        choices=["cancel", "ignore", "hold"],
        default="cancel",
        help="with --after, if a parent fails: cancel this job, run it anyway, or hold it on the parent's "
        "dead letter (default cancel)",
    )

    db = sub.add_parser("db", help="the embedded PostgreSQL (used when no database is configured)")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("start", parents=[common], help="start it and keep it running after every command")
    db_sub.add_parser("stop", parents=[common], help="stop it (once no fleetbox process uses it)")
    db_sub.add_parser("status", parents=[common], help="whether it runs, its DSN, and who uses it")

    cfg = sub.add_parser("config", help="configuration")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True)
    show = cfg_sub.add_parser("show", parents=[common], help="print the effective configuration and sources")
    show.add_argument("--json", action="store_true")

    queues = sub.add_parser("queues", parents=[common], help="jobs per queue by state")
    queues.add_argument("--json", action="store_true")

    job = sub.add_parser("job", parents=[common], help="show a job and its attempts")
    job.add_argument("job_id", type=_job_id)
    job.add_argument(
        "--reveal",
        action="store_true",
        help="the payload in full, not masked by the queue's redaction policy (written to the audit log)",
    )

    jobs = sub.add_parser("jobs", parents=[common, filters], help="a queue's jobs, filtered by state")
    jobs.add_argument("queue")
    jobs.add_argument(
        "--state",
        type=_state,
        metavar="STATE",
        help="a job state (waiting, scheduled, retrying, running, blocked, succeeded, dead, cleared, cancelled), "
        "pending for every job not yet started, or the spec's completed and failed (a wrong word lists them all)",
    )
    jobs.add_argument("--json", action="store_true", help="one JSON object per job")

    retry = sub.add_parser("retry", parents=[common], help="retry a failed job by id")
    retry.add_argument("job_id", type=_job_id)

    dead = sub.add_parser("dead", help="the dead-letter queue")
    dead_sub = dead.add_subparsers(dest="dead_command", required=True)
    dl = dead_sub.add_parser("list", parents=[common, filters])
    dl.add_argument("--queue", help="only this queue's dead letters")
    dl.add_argument("--reviewed", type=_yes_no, metavar="true|false", help="reviewed ones only, or open ones only")
    dl.add_argument("--json", action="store_true", help="one JSON object per dead letter")
    dr = dead_sub.add_parser("retry", parents=[common])
    dr.add_argument("dead_letter_id", type=_job_id)
    dr.add_argument("--by", default="cli")
    dv = dead_sub.add_parser("review", parents=[common])
    dv.add_argument("dead_letter_id", type=_job_id)
    dv.add_argument("--by", required=True, help="who reviewed it")
    dv.add_argument("--notes", help="resolution notes")
    dd = dead_sub.add_parser("discard", parents=[common])
    dd.add_argument("dead_letter_id", type=_job_id)
    dd.add_argument("--by", default="cli")

    status = sub.add_parser("status", parents=[common], help="health and per-queue figures from a running appliance")
    status.add_argument("--url", help="the admin API (default: http://<admin.host>:<admin.port>)")
    status.add_argument("--json", action="store_true", help="print the health document as JSON")

    auth = sub.add_parser("auth", help="Microsoft Graph sign-in of the Teams service account")
    auth_sub = auth.add_subparsers(dest="auth_command", required=True)
    auth_sub.add_parser("login", parents=[common], help="sign the service account in with a device code")
    auth_sub.add_parser("status", parents=[common], help="credentials configured, account signed in, token cache")

    subs = sub.add_parser(
        "subscriptions", parents=[common], help="the Graph change-notification subscriptions kept alive"
    )
    subs.add_argument("--json", action="store_true")

    from fleetbox.tui.main import add_arguments as tui_arguments

    tui = sub.add_parser("tui", help="terminal UI of a running appliance (over its control socket)")
    tui_arguments(tui)

    bench = sub.add_parser("bench", parents=[common], help="measure enqueue, drain and pickup latency")
    bench.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    bench.add_argument("--jobs", type=_positive, default=50_000, help="jobs to drain (default 50000)")
    bench.add_argument("--latency-jobs", type=_positive, default=500, help="trickled jobs for pickup latency")
    bench.add_argument(
        "--backlog", action="store_true", help="also measure the claim rate behind a 10k and a 1M job backlog (slow)"
    )
    bench.add_argument("--single-jobs", type=_positive, help="sequential single enqueues (default min(2000, jobs))")
    bench.add_argument(
        "--processes",
        type=_positive,
        help="drain --jobs with this many appliance processes: aggregate rate, jobs run twice, RSS",
    )
    bench.add_argument(
        "--soak",
        action="store_true",
        help="process --jobs with a bounded backlog and retention on: rate over time, table sizes",
    )

    from fleetbox import cli_experiments, cli_schedules

    cli_schedules.add_parser(sub, common)
    cli_experiments.add_parser(sub, common)
    return parser


def _flags(args: argparse.Namespace) -> dict[str, Any]:
    from fleetbox.config import parse_assignment

    flags: dict[str, Any] = {}
    for assignment in args.set:
        flags = _deep(flags, parse_assignment(assignment))
    direct = {
        ("database", "dsn"): args.dsn,
        ("database", "schema_name"): args.schema,
        ("appliance", "data_dir"): args.data_dir,
        ("appliance", "log_level"): args.log_level,
    }
    for (section, key), value in direct.items():
        if value is not None:
            flags.setdefault(section, {})[key] = value
    if getattr(args, "simulate_faults", None) is not None:
        flags = _deep(flags, {"graph": {"simulator": {"faults": {"profile": args.simulate_faults}}}})
    return flags


def _deep(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _deep(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "tui":
        from fleetbox.tui.main import run

        return run(args)
    from fleetbox import logs
    from fleetbox.config import config_file_notes, load_settings
    from fleetbox.errors import FleetboxError

    # Everything fleetbox creates (data directories, sockets, token caches, downloaded attachments,
    # the embedded server's files) is its owner's alone: directories 0700, files 0600.
    os.umask(0o077)
    # `run` stops gracefully on SIGTERM by itself; a program calling main() from another thread
    # keeps its own signal handling (only the main thread may set one).
    if args.command != "run" and threading.current_thread() is threading.main_thread():
        # SIGTERM ends a one-shot command as Ctrl-C does, through its clean-up (the embedded
        # server it started is stopped), not by the default instant death.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    # The embedded server this process uses, if any: released after the event loop has closed,
    # wherever an interrupt struck (the loop waits for a start still under way in its thread).
    using: list[EmbeddedPostgres] = []
    try:
        loaded = load_settings(args.config, _flags(args))
        logs.setup(_log_level(args, loaded.settings.appliance.log_level), loaded.settings.appliance.log_format)
        for note in config_file_notes(loaded):
            print(f"fleetbox: {note}", file=sys.stderr)
        code = asyncio.run(_dispatch(args, loaded, using))
        sys.stdout.flush()  # here, where a closed pipe is caught, not at exit
        return code
    except FleetboxError as exc:
        return _fail(exc)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`fleetbox jobs q | head -3`) with what it wanted: no traceback, and
        # no second error when Python flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        for server in using:
            try:
                # Stopped with the last fleetbox process using it, unless `fleetbox db start` pinned it.
                server.release()
            except FleetboxError as exc:
                _fail(exc)


def _fail(exc: FleetboxError) -> int:
    from fleetbox.logs import redact_dsn

    # Redacted: a driver's or a parser's message may quote the DSN it was given.
    print(f"fleetbox: error: {redact_dsn(str(exc))}", file=sys.stderr)
    return _exit_code(exc)


def _log_level(args: argparse.Namespace, configured: str) -> str:
    """-v and -vv win; ``fleetbox run`` logs at the configured level, one-shot commands warnings only
    (their output is the answer, not a log) unless --log-level says otherwise."""
    if args.verbose:
        return "DEBUG" if args.verbose > 1 else "INFO"
    if args.command == "run" or args.log_level is not None:
        return configured
    return "WARNING"


def _handler_paths(loaded: LoadedSettings) -> None:
    """Let ``fleetbox run`` import handler modules kept next to the config file or in the working
    directory, as ``python -m`` would; installed packages and PYTHONPATH come first."""
    places = [Path.cwd()]
    if loaded.config_file is not None:
        places.insert(0, loaded.config_file.resolve().parent)
    for place in map(str, places):
        if place not in sys.path:
            sys.path.append(place)


def _loop_exception(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """An error no task collected (a driver's background reconnect after the database went away,
    say): one log line naming it, with the traceback only at debug level, never a raw dump."""
    import logging

    log = logging.getLogger("fleetbox.cli")
    exc = context.get("exception")
    what = f"{type(exc).__name__}: {exc}" if exc is not None else str(context.get("message", "unknown error"))
    log.warning(
        "background error: %s",
        what,
        exc_info=exc if log.isEnabledFor(logging.DEBUG) else None,
        extra={"event": "background_error"},
    )


async def _dispatch(args: argparse.Namespace, loaded: LoadedSettings, using: list[EmbeddedPostgres]) -> int:
    asyncio.get_running_loop().set_exception_handler(_loop_exception)
    if args.command == "config":
        return _config_show(loaded, as_json=args.json)
    if args.command == "status":
        from fleetbox.status import print_status

        return await print_status(loaded.settings, url=args.url, as_json=args.json)
    if args.command == "auth":
        return await _auth(args.auth_command, loaded.settings)
    from fleetbox.store.embedded import EmbeddedPostgres

    settings = loaded.settings
    if args.command == "db":
        return await _db(args.db_command, settings, EmbeddedPostgres(settings.appliance.data_dir))
    dsn = settings.database.resolved_dsn()
    if dsn is not None:
        return await _with_database(args, loaded, dsn, None)
    embedded = EmbeddedPostgres(settings.appliance.data_dir)
    using.append(embedded)  # before the start: an interrupt during it still releases it
    dsn = await asyncio.to_thread(embedded.acquire)
    print(f"fleetbox: embedded PostgreSQL in {embedded.pgdata} ({dsn})", file=sys.stderr)
    return await _with_database(args, loaded, dsn, embedded)


async def _db(command: str, settings: Settings, embedded: EmbeddedPostgres) -> int:
    """``fleetbox db start|stop|status``: the embedded server, shared explicitly."""
    from fleetbox.config import redact_dsn

    if settings.database.configured and command != "status":
        from fleetbox.errors import ConfigError

        raise ConfigError(
            f"a database is configured ({redact_dsn(settings.database.resolved_dsn() or '')}): "
            "`fleetbox db` manages only the embedded PostgreSQL"
        )
    if command == "start":
        dsn = await asyncio.to_thread(embedded.pin)
        print(f"embedded PostgreSQL in {embedded.pgdata} running until `fleetbox db stop`: {dsn}")
        return 0
    if command == "stop":
        stopped, holders = await asyncio.to_thread(embedded.unpin)
        if stopped:
            print(f"embedded PostgreSQL in {embedded.pgdata} stopped")
        else:
            print(
                f"embedded PostgreSQL in {embedded.pgdata} still used by process(es) "
                f"{', '.join(map(str, holders))}: it stops when the last of them exits"
            )
        return 0
    st = await asyncio.to_thread(embedded.status)
    print(f"pgdata:    {st.pgdata}{'' if st.initialised else ' (not created yet)'}")
    print(f"server:    {f'running (pid {st.pid})' if st.running else 'stopped'}")
    print(f"dsn:       {st.dsn or '-'}")
    print(f"kept:      {'until fleetbox db stop' if st.pinned else 'while fleetbox processes use it'}")
    print(f"used by:   {', '.join(map(str, st.holders)) or 'no process'}")
    return 0 if st.running else 1


async def _with_database(
    args: argparse.Namespace, loaded: LoadedSettings, dsn: str, embedded: EmbeddedPostgres | None
) -> int:
    from fleetbox.config import load_settings, redact_dsn
    from fleetbox.store import Store

    settings = loaded.settings
    if args.command == "run":
        from fleetbox.app import Appliance

        _handler_paths(loaded)
        app = Appliance(
            settings,
            dsn=dsn,
            migrate=not args.no_migrate,
            load_config=lambda: load_settings(args.config, _flags(args)).settings,
        )
        print(
            f"fleetbox: appliance {app.worker_id} on {redact_dsn(dsn)} schema {settings.database.schema_name}",
            file=sys.stderr,
        )
        reloads: set[asyncio.Task[None]] = set()

        def on_sighup() -> None:
            task = asyncio.get_running_loop().create_task(_reload(app), name="fleetbox.reload")
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        stopping = asyncio.Event()
        watchdog = None
        if embedded is not None:
            # The embedded server is this appliance's: restart it if it dies while we run.
            watchdog = asyncio.get_running_loop().create_task(embedded.watch(stopping), name="fleetbox.embedded")
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, on_sighup)
        try:
            return await app.run_until_stopped()
        finally:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            stopping.set()
            if watchdog is not None:
                await watchdog
    if args.command == "bench":
        from fleetbox import bench

        if args.processes:
            await bench.run_processes(settings, dsn, jobs=args.jobs, processes=args.processes, as_json=args.json)
            return 0
        if args.soak:
            await bench.run_soak(settings, dsn, jobs=args.jobs, as_json=args.json)
            return 0
        return await bench.run_bench(
            settings,
            dsn,
            jobs=args.jobs,
            latency_jobs=args.latency_jobs,
            as_json=args.json,
            backlog=args.backlog,
            single_jobs=args.single_jobs,
        )
    async with Store(dsn, schema=settings.database.schema_name, min_size=1, max_size=2) as store:
        if args.command == "migrate":
            from fleetbox.store.migrations import migrate
            from fleetbox.worker.registry import build_registry, register_queues

            applied = await migrate(store, settings.appliance.limits())
            await register_queues(store, build_registry(settings, import_handlers=False))
            print(f"applied migrations {applied}" if applied else "schema up to date")
            return 0
        if args.command == "subscriptions":
            return await _subscriptions(store, as_json=args.json)
        from fleetbox.config import redaction_of
        from fleetbox.service import Service

        service = Service(
            store,
            limits=settings.appliance.limits(),
            thresholds=settings.monitor.thresholds(),
            redaction=redaction_of(settings),
        )
        if args.command == "retry-report":
            from fleetbox import cli_experiments

            return await cli_experiments.run(args, service, settings)
        return await _service_command(args, service)


async def _service_command(args: argparse.Namespace, service: Service) -> int:
    from fleetbox import rules
    from fleetbox.errors import InvalidInput

    if args.command == "enqueue":
        data = rules.parse_json_text(
            _read_data(args.data, service.enqueue.limits), service.enqueue.limits, field="--data"
        )
        run_at = None
        if args.run_at is not None:
            try:
                run_at = dt.datetime.fromisoformat(args.run_at)
            except ValueError:
                raise InvalidInput("not an ISO 8601 time", field="--run-at") from None
        after = {"depends_on": args.after, "on_failure": args.on_failure} if args.after else {}
        result = await service.enqueue.enqueue(
            args.queue,
            data,
            priority=args.priority,
            run_at=run_at,
            delay=args.delay,
            singleton_key=args.singleton_key,
            max_attempts=args.max_attempts,
            **after,
        )
        print(result.id)
        if not result.created:
            print(
                f"fleetbox: job {result.id} with singleton key {args.singleton_key!r} is already waiting or running; "
                "returned its id",
                file=sys.stderr,
            )
        return 0
    if args.command == "queues":
        depth = await service.queues.depth()
        if args.json:
            print(
                json.dumps(
                    [
                        {
                            "queue": q.queue,
                            "tier": q.tier.name.lower(),
                            "paused": q.paused,
                            "waiting": q.waiting,
                            "scheduled": q.scheduled,
                            "retrying": q.retrying,
                            "running": q.running,
                            "dead": q.dead,
                        }
                        for q in depth
                    ]
                )
            )
            return 0
        print(
            f"{'queue':<20} {'tier':<7} {'state':<7} {'waiting':>8} {'sched':>8} {'retry':>8} {'running':>8} "
            f"{'dead':>6}"
        )
        for q in depth:
            state = "paused" if q.paused else "active"
            print(
                f"{q.queue:<20} {q.tier.name.lower():<7} {state:<7} {q.waiting:>8} {q.scheduled:>8} {q.retrying:>8} "
                f"{q.running:>8} {q.dead:>6}"
            )
        return 0
    if args.command == "job":
        if args.reveal:
            info = (await service.jobs.reveal(args.job_id, actor=_cli_actor())).job
        else:
            info = await service.jobs.get(args.job_id)
        relations = await service.dependencies.relations(args.job_id)
        graph: dict[str, Any] = {
            "parents": [_jsonable(link) for link in relations.parents],
            "children": [_jsonable(link) for link in relations.children],
        }
        if relations.has_result:
            graph["result"] = relations.result
        if relations.cancellation is not None:
            graph["cancellation"] = _jsonable(relations.cancellation)
        print(json.dumps({**_jsonable(info), **graph}, indent=2, default=str))
        return 0
    if args.command == "jobs":
        return await _jobs(args, service)
    if args.command == "retry":
        print(await service.jobs.retry(args.job_id, actor="cli"))
        return 0
    if args.command == "schedule":
        from fleetbox import cli_schedules

        return await cli_schedules.run(args, service)
    from fleetbox.service.dead_letters import check_filter

    dead = service.dead_letters
    if args.dead_command == "list":
        page = await dead.list(check_filter(queue=args.queue, reviewed=args.reviewed), limit=args.limit)
        if args.json:
            for d in page.letters:
                print(json.dumps(_jsonable(d), default=str))
            return 0
        if not page.letters:
            # On stderr, so a script reading the rows gets none; a person learns the list is empty.
            print("fleetbox: no dead letters match", file=sys.stderr)
            return 0
        print(f"{'id':>6} {'job':<12} {'queue':<18} {'status':<9} {'review':<8} {'failed at':<19} error")
        for d in page.letters:
            mark = "reviewed" if d.reviewed else "open"
            print(
                f"{d.id:>6} job {d.job_id:<8} {d.queue:<18} {d.status:<9} {mark:<8} {d.failed_at:%Y-%m-%d %H:%M:%S} "
                f"{d.error_class}: {d.error[:80]}"
            )
        if page.next_before is not None:
            shown = len(page.letters)
            total = f"{page.total}{'+' if page.total_capped else ''}"
            print(f"fleetbox: {shown} of {total} shown; --limit shows more", file=sys.stderr)
        return 0
    if args.dead_command == "retry":
        print(await dead.retry(args.dead_letter_id, actor=args.by))
        return 0
    if args.dead_command == "review":
        await dead.review(args.dead_letter_id, reviewed_by=args.by, resolution_notes=args.notes)
        print(f"dead letter {args.dead_letter_id} reviewed by {args.by}")
        return 0
    await dead.discard(args.dead_letter_id, actor=args.by)
    print(f"dead letter {args.dead_letter_id} discarded")
    return 0


def _cli_actor() -> str:
    """Who runs the command, for the audit log: ``cli:<login name>``."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"[:200]
    except (KeyError, OSError):  # no login name for this uid (a bare container)
        return "cli"


async def _jobs(args: argparse.Namespace, service: Service) -> int:
    page = await service.jobs.page(args.queue, args.state, after=None, offset=0, limit=args.limit)
    if args.json:
        for info in page.jobs:
            print(json.dumps(_jsonable(info), default=str))
        return 0
    if not page.jobs:
        # On stderr, so a script reading the rows gets none. Without --state only jobs still in
        # the queue are listed: say where finished ones are, the first thing looked for.
        which = f"{args.state} jobs" if args.state else "jobs waiting or running"
        hint = "" if args.state else " (finished ones: --state succeeded, dead or cleared)"
        print(f"fleetbox: no {which} in {args.queue}{hint}", file=sys.stderr)
        return 0
    # Finished jobs come last finished first: when each finished is what orders them.
    finished = all(info.finished_at is not None for info in page.jobs)
    print(f"{'id':>10} {'state':<10} {'prio':<4} {'attempts':>8}  {'finished at' if finished else 'run at'}")
    for info in page.jobs:
        at = info.finished_at if finished and info.finished_at is not None else info.run_at
        print(f"{info.id:>10} {info.state:<10} p{info.priority:<3} {info.attempts:>8}  {at:%Y-%m-%d %H:%M:%S}")
    if page.next_after is not None:
        print(f"fleetbox: the first {len(page.jobs)} shown; --limit shows more", file=sys.stderr)
    return 0


def _read_data(arg: str, limits: Any) -> str:
    """``--data``: the JSON text itself, ``@FILE`` or ``-`` (standard input). At most what
    ``rules.parse_json_text`` accepts is read, so a huge file or stream is refused, not loaded."""
    from fleetbox.errors import InvalidInput

    if arg != "-" and not arg.startswith("@"):
        return arg
    cap = limits.max_payload_bytes * 2 + 1
    try:
        if arg == "-":
            raw = sys.stdin.buffer.read(cap)
        else:
            with open(arg[1:], "rb") as f:
                raw = f.read(cap)
    except OSError as exc:
        raise InvalidInput(f"cannot read {arg[1:] or 'the file'!r}: {exc.strerror}", field="--data") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(
            f"{'standard input' if arg == '-' else arg[1:]!r} is not UTF-8 text", field="--data"
        ) from None


async def _subscriptions(store: Store, *, as_json: bool) -> int:
    from dataclasses import asdict

    subs = await store.graph.live_subscriptions()
    if as_json:
        print(json.dumps([asdict(s) for s in subs], default=str))
        return 0
    if not subs:
        print("no Graph subscriptions (configure [[graph.subscriptions]])")
        return 0
    print(f"{'id':<38} {'source':<8} {'expires (UTC)':<20} {'last event':<24} resource")
    for s in subs:
        expires = f"{s.expires_at:%Y-%m-%d %H:%M:%S}" if s.expires_at is not None else "-"
        print(f"{s.id:<38} {s.source:<8} {expires:<20} {s.last_event or '-':<24} {s.resource}")
    return 0


async def _reload(app: Any) -> None:
    """SIGHUP: read the configuration again; an invalid one keeps the running configuration."""
    import logging

    from fleetbox.errors import FleetboxError

    log = logging.getLogger("fleetbox.cli")
    try:
        restart = await app.reload_from_config()
    except FleetboxError as exc:
        log.error(
            "configuration not reloaded; keeping the running one",
            extra={"event": "config_reload_failed", "error": str(exc)},
        )
        return
    if restart:
        log.warning("some changes need a restart", extra={"event": "config_needs_restart", "sections": restart})


async def _auth(command: str, settings: Settings) -> int:
    """``fleetbox auth login|status``: the delegated token of the Teams service account (never a secret)."""
    import stat

    from fleetbox.errors import ConfigError
    from fleetbox.graph.tokens import Tokens, default_cache_path

    graph = settings.graph
    tokens = Tokens(graph, cache_path=default_cache_path(settings))
    if command == "login":
        if not graph.configured:
            raise ConfigError("graph.tenant_id and graph.client_id must be set to sign in")
        try:
            account = await tokens.device_login(lambda message: print(message, flush=True))
        finally:
            tokens.close()
        print(f"signed in as {account}; token cache {tokens.cache_path}")
        return 0
    if graph.client_secret is not None:
        credential = "client secret (set)"
    elif graph.certificate_path is not None:
        credential = f"certificate {graph.certificate_path} (thumbprint {graph.certificate_thumbprint})"
    else:
        credential = "none"
    try:
        mode = f"mode {stat.S_IMODE(os.stat(tokens.cache_path).st_mode):04o}"
    except FileNotFoundError:
        mode = "absent"
    print(f"tenant:            {graph.tenant_id or 'not set'}")
    print(f"client id:         {graph.client_id or 'not set'}")
    print(f"app credentials:   {credential}")
    print(f"authority:         {graph.authority_host}")
    print(f"service account:   {tokens.delegated_account() or 'not signed in'}")
    print(f"token cache:       {tokens.cache_path} ({mode})")
    return 0


def _jsonable(value: Any) -> Any:
    from dataclasses import asdict, is_dataclass

    return asdict(value) if is_dataclass(value) and not isinstance(value, type) else value


def _config_show(loaded: LoadedSettings, *, as_json: bool) -> int:
    from fleetbox.config import effective_values

    rows = effective_values(loaded)
    if as_json:
        print(json.dumps({key: {"value": value, "source": source} for key, value, source in rows}, indent=2))
        return 0
    if loaded.config_file is not None:
        print(f"# config file: {loaded.config_file}")
    width = max(len(k) for k, _, _ in rows)
    for key, value, source in rows:
        print(f"{key:<{width}}  {value:<40}  [{source}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
