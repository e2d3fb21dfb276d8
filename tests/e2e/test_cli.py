"""The ``fleetbox`` console script, run as a separate process against the test database."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import stat
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest

from fleetbox.client import Client
from fleetbox.models import JobState
from fleetbox.store.sql import migrations
from fleetbox.worker.registry import BUILTIN_QUEUES
from tests.conftest import wait_for
from tests.e2e.conftest import FleetboxProcess, child_env, fleetbox_script, write_config

Cli = Callable[..., subprocess.CompletedProcess[str]]


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result.stdout


def job_id_of(result: subprocess.CompletedProcess[str]) -> int:
    out = ok(result).strip()
    assert out.isdigit(), f"expected a job id on stdout, got {out!r}"
    return int(out)


async def test_enqueue_prints_the_job_id_and_honours_its_options(cli: Cli, client: Client) -> None:
    plain = job_id_of(cli("enqueue", "notifications", "--data", '{"a": 1}'))
    info = await client.get_job(plain)
    assert (info.queue, info.data, info.priority, info.state) == ("notifications", {"a": 1}, 5, JobState.WAITING)

    before = dt.datetime.now(dt.UTC)
    delayed = job_id_of(cli("enqueue", "sync", "--data", "{}", "--priority", "2", "--delay", "60000"))
    after = dt.datetime.now(dt.UTC)
    info = await client.get_job(delayed)
    assert info.priority == 2 and info.state is JobState.SCHEDULED
    assert before + dt.timedelta(seconds=60) <= info.run_at <= after + dt.timedelta(seconds=60)

    at = job_id_of(cli("enqueue", "webhooks", "--data", '{"b": [1, 2]}', "--run-at", "2031-05-06T07:08:09+02:00"))
    info = await client.get_job(at)
    assert info.run_at == dt.datetime(2031, 5, 6, 5, 8, 9, tzinfo=dt.UTC)
    assert info.data == {"b": [1, 2]} and info.state is JobState.SCHEDULED

    first = cli("enqueue", "sync", "--data", '{"n": 1}', "--singleton-key", "user-7")
    first_id = job_id_of(first)
    assert "already" not in first.stderr
    again = cli("enqueue", "sync", "--data", '{"n": 2}', "--singleton-key", "user-7")
    assert job_id_of(again) == first_id
    assert str(first_id) in again.stderr and "already" in again.stderr and "user-7" in again.stderr
    assert (await client.get_job(first_id)).data == {"n": 1}
    assert len({plain, delayed, at, first_id}) == 4


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["nosuch", "--data", "{}"], "queue"),
        (["notifications", "--data", "[1, 2]"], "data"),
        (["notifications", "--data", "{not json"], "--data"),
        (["notifications", "--data", "{}", "--priority", "11"], "priority"),
        (["notifications", "--data", "{}", "--delay", "5", "--run-at", "2030-01-01T00:00:00+00:00"], "--run-at"),
        (["notifications", "--data", "{}", "--run-at", "next tuesday"], "--run-at"),
        (["notifications", "--data", "{}", "--run-at", "2030-01-01T00:00:00"], "run_at"),
        (["notifications", "--data", "{}", "--singleton-key", "k" * 256], "singleton_key"),
    ],
    ids=[
        "unknown-queue",
        "json-array",
        "invalid-json",
        "priority-11",
        "delay-and-run-at",
        "run-at-not-iso",
        "run-at-naive",
        "long-singleton-key",
    ],
)
async def test_enqueue_rejects_bad_input_naming_the_field_and_writes_nothing(
    cli: Cli, pg: asyncpg.Connection, args: list[str], field: str
) -> None:
    result = cli("enqueue", *args)
    assert result.returncode != 0
    assert result.stdout == ""
    assert f"{field}:" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert await pg.fetchval("SELECT count(*) FROM jobs") == 0


async def test_migrate_twice_creates_the_schema_once(cli: Cli, pg: asyncpg.Connection) -> None:
    assert "schema up to date" in ok(cli("migrate"))  # the test database is migrated already

    first = ok(cli("migrate", "--schema", "e2e_fresh"))
    assert f"applied migrations {[v for v, _, _ in migrations()]}" in first
    second = ok(cli("migrate", "--schema", "e2e_fresh"))
    assert "schema up to date" in second
    assert await pg.fetchval("SELECT count(*) FROM e2e_fresh.schema_version") == len(migrations())
    queues = await pg.fetch("SELECT name FROM e2e_fresh.queues ORDER BY name")
    assert "dead-letter" in {r["name"] for r in queues} and len(queues) == len(BUILTIN_QUEUES)

    job = job_id_of(cli("enqueue", "sync", "--data", "{}", "--schema", "e2e_fresh"))
    assert await pg.fetchval("SELECT queue FROM e2e_fresh.jobs WHERE id = $1", job) == "sync"
    assert await pg.fetchval("SELECT count(*) FROM fleetbox.jobs") == 0


SECRETS = {
    "DB_PASSWORD": "pw-e2e-4b1d-secret",
    "ADMIN_KEY": "adminkey-e2e-9f3c-secret",
    "DATABASE_URL": "postgresql://fleet:urlpass-e2e-77aa-secret@db.invalid:5432/fleet",
}


def _shown(stdout: str) -> dict[str, tuple[str, str]]:
    rows = {}
    for line in stdout.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, rest = line.split(None, 1)
        value, _, source = rest.rpartition("[")
        rows[key] = (value.strip(), source.rstrip("]"))
    return rows


async def test_config_show_names_each_source_and_redacts_secrets(cli: Cli, tmp_path: Path, log_dir: Path) -> None:
    config = tmp_path / "show.toml"
    config.write_text("[pools]\nmedium = 3\n\n[appliance]\nlease_seconds = 12.5\n", encoding="utf-8")
    env = child_env(log_dir, FLEETBOX_POOLS__HIGH="7", DB_HOST="db.invalid", **SECRETS)

    result = cli("config", "show", "--config", str(config), "--set", "pools.low=2", env=env, with_dsn=False)
    rows = _shown(ok(result))
    assert f"# config file: {config}" in result.stdout
    assert rows["pools.high"] == ("7", "environment")
    assert rows["pools.medium"] == ("3", f"file {config}")
    assert rows["pools.low"] == ("2", "flag")
    assert rows["appliance.lease_seconds"] == ("12.5", f"file {config}")
    assert rows["appliance.poll_seconds"] == ("1.0", "default")
    assert rows["database.host"] == ("db.invalid", "environment (spec name)")
    for key in ("database.password", "admin.key", "database.dsn"):
        assert rows[key] == ("(set, redacted)", "environment (spec name)"), key

    as_json = cli("config", "show", "--json", "--config", str(config), env=env, with_dsn=False)
    shown = json.loads(ok(as_json))
    assert shown["pools.high"] == {"value": "7", "source": "environment"}
    assert shown["admin.key"] == {"value": "(set, redacted)", "source": "environment (spec name)"}

    for output in (result.stdout, result.stderr, as_json.stdout, as_json.stderr):
        for secret in SECRETS.values():
            assert secret not in output
        assert "urlpass" not in output


async def test_an_invalid_config_value_exits_nonzero_naming_the_key(
    cli: Cli, pg: asyncpg.Connection, tmp_path: Path, log_dir: Path
) -> None:
    env = child_env(log_dir, FLEETBOX_POOLS__HIGH="zero")
    for args in (["config", "show"], ["enqueue", "sync", "--data", "{}"], ["run"]):
        result = cli(*args, env=env, with_dsn=args[0] != "config")
        assert result.returncode == 2, (args, result.stderr)
        assert "pools.high" in result.stderr and "environment" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr

    config = tmp_path / "bad.toml"
    config.write_text("[appliance]\nlease_seconds = 1\nheartbeat_seconds = 5\n", encoding="utf-8")
    result = cli("config", "show", "--config", str(config), with_dsn=False)
    assert result.returncode == 2
    assert "appliance" in result.stderr and "heartbeat_seconds" in result.stderr, result.stderr
    assert await pg.fetchval("SELECT count(*) FROM jobs") == 0


def _dead_rows(stdout: str) -> dict[int, str]:
    """``fleetbox dead list`` output by dead-letter id (below its header row)."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    if lines:
        assert lines[0].split() == ["id", "job", "queue", "status", "review", "failed", "at", "error"]
    return {int(line.split()[0]): line for line in lines[1:]}


async def test_dead_letter_commands_work_on_jobs_dead_lettered_by_a_running_appliance(
    cli: Cli,
    start_appliance: Callable[..., FleetboxProcess],
    client: Client,
    tmp_path: Path,
) -> None:
    queue = "e2e-dead"
    config = write_config(
        tmp_path / "fleetbox.e2e.toml",
        queues={queue: {"tier": "medium", "handler": "tests.e2e.handlers:reject_unless"}},
    )
    app = start_appliance("app", config)
    await app.wait_ready()
    ok_file = tmp_path / "ok"
    jobs = [job_id_of(cli("enqueue", queue, "--data", json.dumps({"ok_file": str(ok_file), "n": n}))) for n in (1, 2)]

    async def all_dead() -> bool:
        states = [(await client.get_job(j)).state for j in jobs]
        return states == [JobState.DEAD] * len(jobs)

    await wait_for(all_dead, timeout=20)

    listed = _dead_rows(ok(cli("dead", "list")))
    assert len(listed) == 2
    by_job = {int(line.split()[2]): dead_id for dead_id, line in listed.items()}
    assert set(by_job) == set(jobs)
    for line in listed.values():
        assert queue in line and "open" in line and "permanent" in line and "rejected by the e2e test" in line
    first, second = by_job[jobs[0]], by_job[jobs[1]]
    assert set(_dead_rows(ok(cli("dead", "list", "--reviewed", "no", "--queue", queue)))) == {first, second}
    assert _dead_rows(ok(cli("dead", "list", "--reviewed", "yes"))) == {}
    assert cli("dead", "list", "--reviewed", "yes").stderr.strip() == "fleetbox: no dead letters match"
    one = cli("dead", "list", "--limit", "1")
    assert len(_dead_rows(ok(one))) == 1 and "1 of 2 shown; --limit shows more" in one.stderr
    dead_jobs = ok(cli("jobs", queue, "--state", "dead")).splitlines()
    assert dead_jobs[0].split() == ["id", "state", "prio", "attempts", "finished", "at"]  # what orders them
    assert sorted(int(row.split()[0]) for row in dead_jobs[1:]) == sorted(jobs)
    as_json = [json.loads(line) for line in ok(cli("dead", "list", "--json")).splitlines()]
    assert {d["id"]: d["job_id"] for d in as_json} == {first: jobs[0], second: jobs[1]}

    shown = json.loads(ok(cli("job", str(jobs[0]))))
    assert shown["state"] == "dead" and shown["queue"] == queue
    assert [(h["outcome"], h["error_class"]) for h in shown["history"]] == [("dead", "permanent")]

    depth = {d["queue"]: d for d in json.loads(ok(cli("queues", "--json")))}
    assert depth[queue]["dead"] == 2 and depth[queue]["tier"] == "medium" and depth[queue]["waiting"] == 0
    assert depth["dead-letter"]["dead"] == 2
    table = ok(cli("queues"))
    assert any(line.split()[0] == queue for line in table.splitlines())

    assert "reviewed by alice" in ok(cli("dead", "review", str(first), "--by", "alice", "--notes", "upstream fixed"))
    reviewed = _dead_rows(ok(cli("dead", "list", "--reviewed", "yes")))
    assert set(reviewed) == {first} and "reviewed" in reviewed[first]
    assert (await client.dead_letters.get(first)).resolution_notes == "upstream fixed"

    ok_file.touch()  # the handler now succeeds
    retried = job_id_of(cli("dead", "retry", str(first), "--by", "bob"))

    async def retried_succeeded() -> bool:
        return (await client.get_job(retried)).state is JobState.SUCCEEDED

    await wait_for(retried_succeeded, timeout=20)
    shown = json.loads(ok(cli("job", str(retried))))
    assert shown["state"] == "succeeded" and shown["dead_letter_id"] == first
    assert shown["data"] == {"ok_file": str(ok_file), "n": 1}

    again = cli("dead", "retry", str(first))
    assert again.returncode == 5 and "already retried" in again.stderr

    assert "discarded" in ok(cli("dead", "discard", str(second)))
    assert "discarded" in _dead_rows(ok(cli("dead", "list")))[second]
    via_job = cli("retry", str(jobs[1]))
    assert via_job.returncode == 5 and "discarded" in via_job.stderr

    missing = cli("dead", "review", "999999", "--by", "alice")
    assert missing.returncode == 4 and "999999" in missing.stderr
    assert cli("job", "999999").returncode == 4

    depth = {d["queue"]: d for d in json.loads(ok(cli("queues", "--json")))}
    assert depth[queue]["dead"] == 0 and depth["dead-letter"]["dead"] == 0

    app.signal(signal.SIGTERM)
    assert await app.wait_exit(timeout=20) == 0, app.describe()


async def test_subscriptions_lists_the_live_graph_subscriptions(cli: Cli, pg: asyncpg.Connection) -> None:
    assert "no Graph subscriptions" in cli("subscriptions").stdout
    await pg.execute(
        "INSERT INTO graph_subscriptions (id, source, resource, change_type, expires_at) "
        "VALUES ('sub-1', 'outlook', 'users/a@contoso.example/messages', 'created', now() + interval '2 days'),"
        "       ('sub-2', 'teams', 'chats/getAllMessages', 'created', now() + interval '1 day')"
    )
    await pg.execute("UPDATE graph_subscriptions SET removed_at = now() WHERE id = 'sub-1'")
    listed = cli("subscriptions")
    assert "sub-2" in listed.stdout and "chats/getAllMessages" in listed.stdout and "sub-1" not in listed.stdout
    assert [r["id"] for r in json.loads(cli("subscriptions", "--json").stdout)] == ["sub-2"]


# -- bad input never ends in a traceback ------------------------------------------------------------

DEEP = '{"a":' * 3000 + "1" + "}" * 3000


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["queues", "--dsn", "postgresql://u@127.0.0.1:abc/db"], "database.dsn: port must be a number"),
        (["queues", "--dsn", "postgresql://u@127.0.0.1:99999/db"], "database.dsn: port must be a number"),
        (["queues", "--dsn", "postgresql://u@[::1/db"], "database.dsn: malformed URL"),
        (["queues", "--dsn", "postgresql://u@::1:5432/db"], "database.dsn: an IPv6 host must be written in brackets"),
        (["queues", "--dsn", "host=db password=x"], "database.dsn: must be a URL such as postgresql://"),
        (["bench", "--jobs", "-5"], "argument --jobs: must be a whole number from 1"),
        (["bench", "--latency-jobs", "0"], "argument --latency-jobs: must be a whole number from 1"),
        (["job", "99999999999999999999999"], "argument job_id: must be a positive integer"),
        (["retry", "-1"], "argument job_id"),
        (["dead", "retry", "9223372036854775808"], "argument dead_letter_id: must be a positive integer"),
        (["dead", "list", "--limit", "0"], "argument --limit: must be a whole number from 1"),
        (["dead", "list", "--reviewed", "maybe"], "argument --reviewed: must be true or false"),
        (["jobs", "sync", "--state", "finished"], "argument --state: must be one of waiting, scheduled"),
        (["enqueue", "sync", "--data", DEEP], "--data: is nested more than 64 levels deep"),
        (["enqueue", "sync", "--data", "@/nonexistent/p.json"], "--data: cannot read '/nonexistent/p.json'"),
    ],
    ids=[
        "dsn-port-abc",
        "dsn-port-99999",
        "dsn-ipv6-unclosed",
        "dsn-ipv6-bare",
        "dsn-key-value",
        "bench-jobs-negative",
        "bench-latency-zero",
        "job-id-overflow",
        "retry-negative",
        "dead-id-overflow",
        "limit-zero",
        "reviewed-maybe",
        "state-unknown",
        "deep-json",
        "data-file-missing",
    ],
)
async def test_bad_input_exits_2_with_one_line_naming_what_is_wrong(
    cli: Cli, pg: asyncpg.Connection, args: list[str], expected: str
) -> None:
    result = cli(*args, with_dsn="--dsn" not in args)
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert expected in result.stderr, result.stderr
    # argparse adds its usage lines; our own errors are one line
    if not expected.startswith("argument"):
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert await pg.fetchval("SELECT count(*) FROM jobs") == 0


DSN_SECRET = "dsnsecret-e2e-5c2e"


@pytest.mark.parametrize(
    "dsn",
    [
        f"postgresql://fleet@127.0.0.1:1/fleet?password={DSN_SECRET}",
        f"postgresql://fleet:{DSN_SECRET}@127.0.0.1:1/fleet?sslpassword={DSN_SECRET}",
    ],
    ids=["query-password", "userinfo-and-sslpassword"],
)
async def test_no_form_of_dsn_secret_is_printed_or_logged(cli: Cli, log_dir: Path, tmp_path: Path, dsn: str) -> None:
    env = child_env(log_dir, DATABASE_URL=dsn)
    results = [
        cli("queues", env=env, with_dsn=False),
        cli("queues", "-v", env=env, with_dsn=False),
        cli(
            "run",
            "--set",
            "admin.port=0",
            "--set",
            "admin.socket_enabled=false",
            "--set",
            "graph.enabled=false",
            "--log-level",
            "DEBUG",
            env=env,
            with_dsn=False,
        ),
        cli("config", "show", env=env, with_dsn=False),
        cli("config", "show", "--json", env=env, with_dsn=False),
    ]
    for result in results[:3]:
        assert result.returncode == 3, result.stderr
        assert "database unreachable" in result.stderr and "Traceback" not in result.stderr
    assert "127.0.0.1:1" in results[2].stderr and "***" in results[2].stderr  # the start-up line, redacted
    for result in results:
        assert DSN_SECRET not in result.stdout + result.stderr


# -- payloads from a file or standard input ---------------------------------------------------------


def _stdin_cli(dsn: str, log_dir: Path, tmp_path: Path, payload: bytes, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [fleetbox_script(), "enqueue", *args, "--data", "-", "--dsn", dsn],
        cwd=tmp_path,
        env=child_env(log_dir),
        input=payload,
        capture_output=True,
        timeout=60,
        check=False,
    )
    return subprocess.CompletedProcess(result.args, result.returncode, result.stdout.decode(), result.stderr.decode())


async def test_data_from_a_file_or_stdin_has_the_limits_of_every_entry_path(
    cli: Cli, client: Client, pg: asyncpg.Connection, dsn: str, log_dir: Path, tmp_path: Path
) -> None:
    big = {"rows": ["x" * 1000] * 600}  # 600 kB: too big for a command line on many systems
    path = tmp_path / "payload.json"
    path.write_text(json.dumps(big), encoding="utf-8")
    from_file = job_id_of(cli("enqueue", "sync", "--data", f"@{path}"))
    assert (await client.get_job(from_file)).data == big
    from_stdin = job_id_of(_stdin_cli(dsn, log_dir, tmp_path, json.dumps({"n": 1}).encode(), "sync"))
    assert (await client.get_job(from_stdin)).data == {"n": 1}

    limited = ("--set", "appliance.max_payload_bytes=100000")
    for result in (
        cli("enqueue", "sync", "--data", f"@{path}", *limited),
        _stdin_cli(dsn, log_dir, tmp_path, path.read_bytes(), "sync", *limited),
    ):
        assert result.returncode == 2 and "--data: is larger than the limit of 100000 bytes" in result.stderr
    huge = tmp_path / "huge.json"
    huge.write_bytes(b'{"a": "' + b"x" * (3 * 1_048_576) + b'"}')
    assert "--data: is larger than the limit of 1048576 bytes" in cli("enqueue", "sync", "--data", f"@{huge}").stderr
    deep = tmp_path / "deep.json"
    deep.write_text(DEEP, encoding="utf-8")
    assert "--data: is nested more than 64 levels deep" in cli("enqueue", "sync", "--data", f"@{deep}").stderr
    binary = _stdin_cli(dsn, log_dir, tmp_path, b'{"a": "\xff"}', "sync")
    assert binary.returncode == 2 and "--data: 'standard input' is not UTF-8 text" in binary.stderr
    assert await pg.fetchval("SELECT count(*) FROM jobs") == 2


# -- one set of words -------------------------------------------------------------------------------


async def test_jobs_filters_by_state_with_the_spec_words_as_aliases(cli: Cli, client: Client) -> None:
    waiting = job_id_of(cli("enqueue", "sync", "--data", "{}"))
    later = job_id_of(cli("enqueue", "sync", "--data", "{}", "--delay", "600000"))

    def ids(*args: str) -> list[int]:
        return [json.loads(line)["id"] for line in ok(cli("jobs", "sync", "--json", *args)).splitlines()]

    assert ids() == [waiting, later]
    assert ids("--state", "waiting") == ids("--state", "ready") == [waiting]
    assert ids("--state", "pending") == [waiting, later]  # every job not yet started
    assert ids("--state", "scheduled") == [later]
    assert ids("--state", "succeeded") == ids("--state", "completed") == []
    assert ids("--state", "dead") == ids("--state", "FAILED") == []
    assert ids("--limit", "1") == [waiting]
    shown = {
        json.loads(line)["id"]: json.loads(line)["state"] for line in ok(cli("jobs", "sync", "--json")).splitlines()
    }
    assert shown == {waiting: "waiting", later: "scheduled"}
    assert "waiting" in ok(cli("queues")).splitlines()[0]
    assert json.loads(ok(cli("job", str(waiting))))["state"] == "waiting"
    assert {d["queue"]: d for d in json.loads(ok(cli("queues", "--json")))}["sync"]["waiting"] == 1
    assert ok(cli("dead", "list", "--reviewed", "true")) == ok(cli("dead", "list", "--reviewed", "no")) == ""

    # The table: a header row naming the columns, one row per job; an empty list says so on stderr.
    table = ok(cli("jobs", "sync")).splitlines()
    assert table[0].split() == ["id", "state", "prio", "attempts", "run", "at"]
    assert [(int(row.split()[0]), row.split()[1]) for row in table[1:]] == [(waiting, "waiting"), (later, "scheduled")]
    first_only = cli("jobs", "sync", "--limit", "1")
    assert len(ok(first_only).splitlines()) == 2 and "the first 1 shown; --limit shows more" in first_only.stderr
    none_dead = cli("jobs", "sync", "--state", "FAILED")
    assert ok(none_dead) == "" and none_dead.stderr.strip() == "fleetbox: no dead jobs in sync"
    empty = cli("jobs", "webhooks")
    assert ok(empty) == "" and "no jobs waiting or running in webhooks" in empty.stderr
    assert "finished ones: --state succeeded, dead or cleared" in empty.stderr


async def test_one_shot_commands_log_only_warnings_unless_verbose(cli: Cli) -> None:
    quiet = cli("migrate", "--schema", "e2e_quiet")
    assert ok(quiet) and "migration_applied" not in quiet.stderr
    loud = cli("migrate", "--schema", "e2e_loud", "-v")
    assert ok(loud) and '"event": "migration_applied"' in loud.stderr


# -- the config file and handler modules ------------------------------------------------------------


async def test_the_working_directory_config_is_named_and_readable_secrets_are_warned_about(
    cli: Cli, tmp_path: Path
) -> None:
    config = tmp_path / "fleetbox.toml"  # the cli fixture runs in tmp_path
    config.write_text('[admin]\nkey = "adminkey-e2e-0b9e-secret"\n', encoding="utf-8")
    config.chmod(0o644)
    result = cli("config", "show", with_dsn=False)
    ok(result)
    assert f"using the config file {config} (found in the working directory" in result.stderr
    assert f"warning: {config} holds secrets (admin.key)" in result.stderr and "mode 0644" in result.stderr
    assert "adminkey-e2e-0b9e-secret" not in result.stdout + result.stderr
    config.chmod(0o600)
    assert "warning" not in cli("config", "show", with_dsn=False).stderr


HANDLER_MODULE = """
import os, pathlib
async def work(job):
    pathlib.Path(job.data["done"]).write_text(str(os.getpid()))
"""


async def test_a_handler_module_next_to_the_config_file_imports_without_pythonpath(
    start_appliance: Callable[..., FleetboxProcess], tmp_path: Path, cli: Cli
) -> None:
    # The appliance runs in tmp_path (PYTHONPATH: the repository); the module is only in ops/.
    ops = tmp_path / "ops"
    ops.mkdir()
    (ops / "opshandlers_e2e.py").write_text(HANDLER_MODULE, encoding="utf-8")
    config = write_config(
        ops / "fleetbox.toml", queues={"e2e-ops": {"tier": "high", "handler": "opshandlers_e2e:work"}}
    )
    app = start_appliance("ops", config)
    await app.wait_ready()
    done = tmp_path / "done"
    job_id_of(cli("enqueue", "e2e-ops", "--data", json.dumps({"done": str(done)}), "--config", str(config)))
    await wait_for(done.exists, timeout=30)
    assert int(done.read_text()) == app.pid
    app.signal(signal.SIGTERM)
    assert await app.wait_exit(timeout=30) == 0, app.describe()


async def test_status_finds_the_appliance_through_its_control_socket(
    start_appliance: Callable[..., FleetboxProcess], cli: Cli, tmp_path: Path
) -> None:
    short = Path(tempfile.mkdtemp(prefix="fbs-"))  # a unix socket path may have at most 107 bytes
    try:
        config = write_config(tmp_path / "status.toml", queues={})
        # the HTTP port is ephemeral (0), so only the socket can be found
        text = config.read_text(encoding="utf-8").replace(
            "socket_enabled = false", f'socket_enabled = true\nsocket_path = "{short / "admin.sock"}"'
        )
        config.write_text(text, encoding="utf-8")
        down = cli("status", "--config", str(config), with_dsn=False)
        assert down.returncode == 3 and "did not answer" in down.stderr and "Traceback" not in down.stderr
        app = start_appliance("status", config)
        await app.wait_ready()
        shown = cli("status", "--config", str(config), "--json", with_dsn=False)
        health = json.loads(ok(shown))
        assert health["healthy"] is True and "notifications" in health["queues"]
        app.signal(signal.SIGTERM)
        assert await app.wait_exit(timeout=30) == 0, app.describe()
    finally:
        shutil.rmtree(short, ignore_errors=True)


def _modes(paths: list[Path], trees: list[Path]) -> dict[Path, int]:
    """The permission bits of ``paths`` and of everything under ``trees``."""
    found = [*paths, *(p for tree in trees for p in tree.rglob("*"))]
    return {p: stat.S_IMODE(p.stat().st_mode) for p in found}


async def test_what_an_appliance_creates_is_private_to_its_user(
    start_appliance: Callable[..., FleetboxProcess], cli: Cli, tmp_path: Path, log_dir: Path
) -> None:
    short = Path(tempfile.mkdtemp(prefix="fbp-"))
    try:
        data_dir = short / "new" / "data"  # created by the appliance, parents too
        config = write_config(
            tmp_path / "private.toml",
            queues={"e2e-private": {"tier": "high", "handler": "tests.e2e.handlers:record"}},
            appliance={"data_dir": str(data_dir)},
        )
        config.write_text(config.read_text(encoding="utf-8").replace("socket_enabled = false", "socket_enabled = true"))
        app = start_appliance("private", config)
        await app.wait_ready()
        job_id_of(cli("enqueue", "e2e-private", "--data", "{}"))
        # the handler opens its log file asking for 0644, as most code does
        await wait_for(lambda: any('"end"' in p.read_text() for p in log_dir.glob("*.log")), timeout=30)
        app.signal(signal.SIGTERM)
        assert await app.wait_exit(timeout=30) == 0, app.describe()
        modes = _modes([short / "new", data_dir], [data_dir, log_dir])
        assert data_dir / "admin.sock.lock" in modes
        for path, mode in modes.items():
            assert mode == (0o700 if path.is_dir() else 0o600), f"{path}: {mode:04o}"
    finally:
        shutil.rmtree(short, ignore_errors=True)


def test_a_reader_that_stops_early_gets_no_traceback(dsn: str, tmp_path: Path, log_dir: Path) -> None:
    """`fleetbox jobs q | head -3`: found from outside, it ended in a BrokenPipeError traceback."""
    reader, writer = os.pipe()
    os.close(reader)  # the reader is gone before the first row is written
    try:
        done = subprocess.run(
            [fleetbox_script(), "queues", "--dsn", dsn],
            cwd=tmp_path,
            env=child_env(log_dir),
            stdin=subprocess.DEVNULL,
            stdout=writer,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(writer)
    assert done.returncode == 0 and "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
