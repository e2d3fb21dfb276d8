"""How fast the dashboard's pages are on big tables: 1M jobs and 10k dead letters (a benchmark,
not a timed test: run it by hand on an idle machine).

    FLEETBOX_TEST_DSN=postgresql://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python -m tests.browser.bench_dashboard [--jobs 1000000] [--dead 10000] [--keep]

It makes the database ``fleetbox_dashboard_bench`` on that server (dropped at the end unless
``--keep``; a kept one is reused), fills it through the bulk enqueue path (the jobs wait on the
queue ``sync``, which this appliance does not run) and writes the dead letters directly, starts
``fleetbox run`` on it, then times:

- each API request a page makes (median and p95 of ``--rounds`` calls): the figures behind the
  queues page, the first and a later page of jobs and of dead letters (keyset), the dead-letter
  count (exact up to a cap, then approximate), job detail, and job searches by payload;
- each page in headless Chromium, from navigation until its table is drawn.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import asyncpg

from fleetbox.client import Client
from fleetbox.config import Settings
from fleetbox.store import Store
from fleetbox.store.migrations import migrate
from fleetbox.worker.registry import build_registry, register_queues
from tests.browser.conftest import ADMIN_KEY, READ_KEY, Browser
from tests.e2e.conftest import E2E_APPLIANCE, child_env, toml_text

NAME = "fleetbox_dashboard_bench"
QUEUE = "sync"
CHUNK = 5000


def with_database(dsn: str, name: str) -> str:
    parts = urllib.parse.urlsplit(dsn)
    return urllib.parse.urlunsplit(parts._replace(path="/" + name))


async def prepare(server: str, jobs: int, dead: int, keep: bool) -> str:
    dsn = with_database(server, NAME)
    admin = await asyncpg.connect(server)
    try:
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", NAME)
        if exists and not keep:
            await admin.execute(f"DROP DATABASE {NAME} WITH (FORCE)")
            exists = None
        if not exists:
            await admin.execute(f"CREATE DATABASE {NAME}")
    finally:
        await admin.close()
    async with Store(dsn, schema="fleetbox", min_size=1, max_size=2) as store:
        await migrate(store)
        await register_queues(store, build_registry(Settings()))
    conn = await asyncpg.connect(dsn, server_settings={"search_path": "fleetbox"})
    try:
        have = await conn.fetchval("SELECT count(*) FROM jobs") + await conn.fetchval("SELECT count(*) FROM jobs_done")
        have_dead = await conn.fetchval("SELECT count(*) FROM dead_letters")
    finally:
        await conn.close()
    started = time.monotonic()
    async with Client.connect(dsn) as client:
        for start in range(have, jobs, CHUNK):
            batch = [
                {"queue": QUEUE, "data": {"userId": f"u{i}", "resourceType": "messages", "page": i % 100}}
                for i in range(start, min(jobs, start + CHUNK))
            ]
            await client.enqueue_many(batch)
    print(f"jobs: {jobs:,} (added {max(0, jobs - have):,} in {time.monotonic() - started:.0f}s)")
    conn = await asyncpg.connect(dsn, server_settings={"search_path": "fleetbox"})
    try:
        # Dead letters as an appliance leaves them: the job in jobs_done, its dead letter, under
        # a handful of error classes (so grouping has something to group).
        await conn.execute(
            """
            WITH made AS (
                INSERT INTO jobs_done (id, queue, priority, state, data, attempts, created_at, run_at, finished_at)
                SELECT 10000000000 + g, 'webhooks', 5, 'dead', jsonb_build_object('hook', g), 3,
                       now() - interval '1 day', now() - interval '1 day', now() - g * interval '1 second'
                  FROM generate_series($1::bigint + 1, $2::bigint) g
                RETURNING id, data, created_at, finished_at)
            INSERT INTO dead_letters (job_id, queue, priority, data, error_class, error, attempts, history,
                                      job_created_at, failed_at)
            SELECT id, 'webhooks', 5, data, 'Error' || (id % 7), 'upstream said no #' || (id % 7), 3, '[]',
                   created_at, finished_at
              FROM made
            """,
            have_dead,
            dead,
        )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    print(f"dead letters: {dead:,}")
    return dsn


def start_appliance(dsn: str, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    config = workdir / "fleetbox.toml"
    sections = {
        "appliance": {**E2E_APPLIANCE, "data_dir": str(workdir / "data")},
        "admin": {"port": 0, "socket_enabled": False, "key": ADMIN_KEY, "read_key": READ_KEY},
        "graph": {"enabled": False},
    }
    config.write_text(toml_text(sections), encoding="utf-8")
    log = (workdir / "stderr").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "fleetbox", "run", "--dsn", dsn, "--config", str(config)],
        cwd=workdir,
        env=child_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for line in (workdir / "stderr").read_text(errors="replace").splitlines():
            if '"admin_listening"' in line:
                return proc, f"http://127.0.0.1:{json.loads(line)['port']}"
        if proc.poll() is not None:
            raise SystemExit(f"the appliance exited: {(workdir / 'stderr').read_text()[-3000:]}")
        time.sleep(0.1)  # waiting for the appliance's log line
    proc.kill()
    raise SystemExit("the appliance did not start within 120 s")


def get(url: str) -> Any:
    request = urllib.request.Request(url, headers={"x-admin-key": READ_KEY})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def timed(label: str, url: str, rounds: int) -> Any:
    times, body = [], None
    for _ in range(rounds):
        started = time.perf_counter()
        body = get(url)
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
    print(f"  {label:<52} median {statistics.median(times):7.1f} ms   p95 {p95:7.1f} ms")
    return body


def api_figures(base: str, rounds: int) -> None:
    api = base + "/api/queue"
    print("API requests behind the pages:")
    timed("stats (queues page, as the stream samples)", f"{api}/stats", rounds)
    first = timed("jobs of a queue, first page", f"{api}/{QUEUE}/jobs?limit=50", rounds)
    after = first["jobs"][-1]["id"]
    timed("jobs of a queue, a later page (after=)", f"{api}/{QUEUE}/jobs?limit=50&after={after}", rounds)
    dead = timed("dead letters, first page (+ capped count)", f"{api}/dead-letter?status=open&limit=50", rounds)
    print(f"    count: {dead['total']:,}{' (capped: approximate)' if dead['totalCapped'] else ''}")
    before = dead["deadLetters"][-1]["id"]
    timed("dead letters, a later page (before=)", f"{api}/dead-letter?status=open&limit=50&before={before}", rounds)
    timed("dead letters by error class", f"{api}/dead-letter?status=open&errorClass=Error3&limit=50", rounds)
    timed("dead letters grouped by error", f"{api}/dead-letter/groups?status=open", rounds)
    timed("job detail", f"{api}/jobs/{after}", rounds)
    common = urllib.parse.quote('{"resourceType": "messages"}')
    timed("search by payload, common value", f"{api}/jobs?data={common}&limit=50", rounds)
    rare = urllib.parse.quote('{"userId": "u7"}')
    timed("search by payload, rare value (scans; 3 s timeout)", f"{api}/jobs?data={rare}&limit=50", max(1, rounds // 5))


def page_figures(base: str, rounds: int) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=options)
    browser = Browser(driver, "bench")
    try:
        browser.sign_in(base, READ_KEY, name="bench")
        browser.wait_text("#status", "live")
        print("Pages in Chromium (navigation until the table is drawn):")
        for label, route, rows in (
            ("queues", "#/queues", "#queue-rows tr"),
            ("dead letters", "#/dead", "#dead-letters tbody tr"),
            (f"jobs of {QUEUE} (search)", f"#/jobs?queue={QUEUE}", "#jobs tbody tr"),
        ):
            times = []
            for _ in range(rounds):
                driver.get(base + "/ui/#/alerts")
                browser.find("#alerts")
                started = time.perf_counter()
                driver.execute_script(f"location.hash = {json.dumps(route)}")
                browser.wait(lambda rows=rows: browser.find_all(rows), f"{label}: no rows")  # type: ignore[misc]
                times.append((time.perf_counter() - started) * 1000)
            print(f"  {label:<52} median {statistics.median(times):7.1f} ms   max {max(times):7.1f} ms")
    finally:
        driver.quit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--dead", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="keep (and reuse) the database")
    args = parser.parse_args()
    server = os.environ.get("FLEETBOX_TEST_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
    dsn = asyncio.run(prepare(server, args.jobs, args.dead, args.keep))
    with tempfile.TemporaryDirectory() as tmp:
        proc, base = start_appliance(dsn, Path(tmp))
        try:
            api_figures(base, args.rounds)
            page_figures(base, max(3, args.rounds // 4))
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    if not args.keep:

        async def drop() -> None:
            conn = await asyncpg.connect(server)
            try:
                await conn.execute(f"DROP DATABASE IF EXISTS {NAME} WITH (FORCE)")
            finally:
                await conn.close()

        asyncio.run(drop())


if __name__ == "__main__":
    main()
