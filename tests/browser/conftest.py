"""Fixtures for the dashboard in a real browser: a ``fleetbox run`` appliance on the test database
and Debian's headless Chromium driven by selenium.

The browser must start: a machine without it fails these tests (``.ci/run`` installs
``chromium`` and ``chromium-driver``); they never skip. Each test saves a screenshot of every page
it visits under :data:`ARTEFACTS` (printed at the end of the run).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

from tests.e2e.conftest import E2E_APPLIANCE, FleetboxProcess, log_dir, spawn, start_appliance, toml_text

__all__ = ["log_dir", "spawn", "start_appliance"]  # fixtures, re-exported for this directory

ADMIN_KEY = "browser-admin-key-0123456789"
READ_KEY = "browser-read-key-9876543210"
#: a queue whose handler dead-letters a job unless the file named in its payload exists
MAIL = "mail"
#: a queue the tests pause, so what is enqueued on it stays waiting
REPORTS = "reports"
#: where screenshots go (printed by pytest_terminal_summary)
ARTEFACTS = Path(os.environ.get("FLEETBOX_BROWSER_ARTEFACTS", "/tmp/fleetbox-browser-artefacts"))
CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromedriver")
#: how long a page may take to show what a test waits for
WAIT = 15.0


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if ARTEFACTS.is_dir() and any(ARTEFACTS.iterdir()):
        terminalreporter.write_line(f"dashboard screenshots: {ARTEFACTS}")


def until(predicate: Callable[[], Any], message: str, timeout: float = WAIT) -> Any:
    """Poll ``predicate`` (outside the browser) until truthy; fail with ``message`` at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)  # polling; the deadline is what decides
    raise AssertionError(f"{message} (within {timeout}s)")


@dataclass
class Dashboard:
    """A running appliance: its admin URL, database and process."""

    url: str
    dsn: str
    process: FleetboxProcess
    ok_file: Path

    def api(self, method: str, path: str, body: object | None = None, key: str = ADMIN_KEY) -> tuple[int, Any]:
        """Call the admin API with a key (the test's own hands, not the browser's)."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("x-admin-key", key)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def sql(self, query: str, *args: Any) -> list[asyncpg.Record]:
        """Rows from the test database (what an operator would check with psql)."""

        async def run() -> list[asyncpg.Record]:
            conn = await asyncpg.connect(self.dsn, server_settings={"search_path": "fleetbox"})
            try:
                return await conn.fetch(query, *args)
            finally:
                await conn.close()

        return asyncio.run(run())


@pytest.fixture
async def dashboard(
    start_appliance: Callable[..., FleetboxProcess], dsn: str, tmp_path: Path
) -> AsyncIterator[Dashboard]:
    """``fleetbox run`` with both keys, queues mail (medium) and reports (low, paused)."""
    config = tmp_path / "fleetbox.toml"
    sections = {
        "appliance": {**E2E_APPLIANCE, "data_dir": str(tmp_path / "data")},
        "admin": {"port": 0, "socket_enabled": False, "key": ADMIN_KEY, "read_key": READ_KEY},
        "graph": {"enabled": False},
        f'queues."{MAIL}"': {"tier": "medium", "handler": "tests.e2e.handlers:reject_unless"},
        f'queues."{REPORTS}"': {"tier": "low", "handler": "tests.e2e.handlers:record"},
    }
    config.write_text(toml_text(sections), encoding="utf-8")
    process = start_appliance("dash", config)
    await process.wait_ready(timeout=60)
    port = (await process.wait_event("admin_listening"))["port"]
    yield Dashboard(f"http://127.0.0.1:{port}", dsn, process, tmp_path / "ok")


class Browser:
    """A headless Chromium with the helpers the tests share."""

    def __init__(self, driver: webdriver.Chrome, name: str) -> None:
        self.driver = driver
        self.name = name
        self.shots = 0

    def open(self, url: str) -> None:
        self.driver.get(url)

    def wait(self, what: Callable[[], Any], message: str, timeout: float = WAIT) -> Any:
        """Poll ``what`` until it returns something truthy; fail with ``message`` at the deadline."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                value = what()
            except WebDriverException as exc:
                value, last = None, exc
            if value:
                return value
            time.sleep(0.05)  # polling the page; the deadline is what decides
        self.screenshot("timeout")
        raise AssertionError(f"{message} (within {timeout}s; last error: {last}); page text:\n{self.text()[:3000]}")

    def find(self, css: str) -> WebElement:
        return self.wait(lambda: self.driver.find_element(By.CSS_SELECTOR, css), f"no element {css!r}")

    def find_all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def text(self, css: str = "body") -> str:
        try:
            return str(self.driver.find_element(By.CSS_SELECTOR, css).text)
        except WebDriverException:
            return ""

    def wait_text(self, css: str, needle: str) -> str:
        return self.wait(lambda: needle in self.text(css) and self.text(css), f"{needle!r} never shown in {css!r}")

    def screenshot(self, page: str) -> Path:
        """Save the page as ``<test>-<n>-<page>.png`` under ARTEFACTS."""
        self.shots += 1
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTEFACTS / f"{self.name}-{self.shots:02d}-{page}.png"
        self.driver.save_screenshot(str(path))
        return path

    def sign_in(self, base: str, key: str, name: str = "alice") -> None:
        self.open(base + "/ui/")
        self.find("#signin input[name=key]").send_keys(key)
        self.find("#signin input[name=name]").send_keys(name)
        self.find("#signin button[type=submit]").click()

    def fetch(self, method: str, path: str, headers: dict[str, str], body: object | None = None) -> dict[str, Any]:
        """A fetch() from the page itself (with its cookie): ``{"status", "body"}``."""
        script = """
            const [method, path, headers, body, done] = arguments;
            fetch(new URL(path, document.baseURI), {method, headers, credentials: "same-origin",
                  body: body === null ? undefined : JSON.stringify(body)})
              .then(async (r) => done({status: r.status, body: await r.json().catch(() => null)}))
              .catch((e) => done({status: 0, body: String(e)}));
        """
        result: dict[str, Any] = self.driver.execute_async_script(script, method, path, headers, body)
        return result


@pytest.fixture
def browser(request: pytest.FixtureRequest) -> Iterator[Browser]:
    """Headless Chromium (Debian's chromium + chromium-driver). Not there: the test fails."""
    binary, driver_path = CHROMIUM
    missing = [p for p in CHROMIUM if shutil.which(p) is None]
    assert not missing, f"{', '.join(missing)} missing: apt-get install -y chromium chromium-driver (.ci/run does)"
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1000",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_script_timeout(WAIT)
    name = re.sub(r"[^A-Za-z0-9_]+", "_", request.node.name)[:80]
    for old in ARTEFACTS.glob(f"{name}-*.png"):
        old.unlink()  # a previous run's screenshots of this test
    try:
        yield Browser(driver, name)
    finally:
        driver.quit()
