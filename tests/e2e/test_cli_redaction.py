"""``fleetbox job`` and ``fleetbox jobs`` mask payloads by the queue's redaction policy (the
built-in one, or the config file's); ``fleetbox job ID --reveal`` prints it in full and audits it."""

from __future__ import annotations

import getpass
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

from fleetbox.client import Client
from fleetbox.store import Store
from tests.e2e.conftest import write_config

Cli = Callable[..., subprocess.CompletedProcess[str]]
SECRET = "cli-s3cret-body"
MAIL = {"to": ["ana@example.com"], "subject": "hi", "body": SECRET}


def redacting(path: Path, paths: str) -> Path:
    """A config file whose outlook-outbound queue has this ``redact`` list (TOML text)."""
    write_config(path, queues={})
    with path.open("a", encoding="utf-8") as out:
        out.write(f'\n[queues."outlook-outbound"]\nredact = {paths}\n')
    return path


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result.stdout


async def test_job_is_masked_and_reveal_is_audited(cli: Cli, client: Client, db: Store, tmp_path: Path) -> None:
    await client.set_paused("outlook-outbound", True)  # nothing sends it while the test reads it
    job_id = (await client.enqueue("outlook-outbound", MAIL)).id

    shown = ok(cli("job", str(job_id)))
    assert SECRET not in shown
    assert json.loads(shown)["data"] == {**MAIL, "body": "***"}  # the built-in policy of outlook-outbound
    listed = ok(cli("jobs", "outlook-outbound", "--json"))
    assert SECRET not in listed and '"body": "***"' in listed
    assert await db.pool.fetchval("SELECT count(*) FROM fleetbox.audit_log WHERE action = 'job.reveal'") == 0

    revealed = json.loads(ok(cli("job", str(job_id), "--reveal")))
    assert revealed["data"] == MAIL
    row = await db.pool.fetchrow("SELECT actor, target FROM fleetbox.audit_log WHERE action = 'job.reveal'")
    assert (row["actor"], row["target"]) == (f"cli:{getpass.getuser()}", f"job:{job_id}")

    # the config file's policy replaces the built-in one
    config = redacting(tmp_path / "fleetbox.toml", '["$.to[*]"]')
    configured = json.loads(ok(cli("job", str(job_id), "--config", str(config))))
    assert configured["data"] == {**MAIL, "to": ["***"]}
    bad = redacting(tmp_path / "bad.toml", '["$.to[x]"]')
    refused = cli("job", str(job_id), "--config", str(bad))
    assert (
        refused.returncode != 0 and "queues.outlook-outbound.redact" in refused.stderr and "'$.to[x]'" in refused.stderr
    )
