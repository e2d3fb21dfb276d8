"""Redaction in the terminal UI, over the real control socket of a real appliance: a dead letter's
payload shows its masked fields as *** (keys kept), never the value, in the list and the detail."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Static

from fleetbox.tui.screens.dead import DeadLettersScreen
from fleetbox.tui.screens.job import JobDetailScreen
from tests.admin.conftest import WORK, Behaviour, admin_section
from tests.admin.test_socket import short_dir  # noqa: F401
from tests.tui.conftest import seen, settle, until
from tests.tui.test_live import SIZE, StartAppliance, live, live_app, make_dead

SECRET = "tui-s3cret-body"


async def test_a_masked_payload_shows_stars_on_the_job_screen(
    appliance_factory: StartAppliance,
    short_dir: Path,  # noqa: F811
) -> None:
    behaviour = Behaviour()
    path = short_dir / "admin.sock"
    appliance = await appliance_factory(
        handlers={WORK: behaviour.handle},
        queues={WORK: {"tier": "low", "redact": ["$.body"]}},
        pools={"low": 2},
        admin=admin_section(socket_enabled=True, socket_path=str(path)),
    )
    await make_dead(appliance, 1, body=SECRET, userId="u1")
    app = live_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await live(app, pilot)
        await pilot.press("slash", *WORK, "enter", "enter", "d")
        dead = app.screen
        assert isinstance(dead, DeadLettersScreen)
        await until(pilot, lambda: len(dead.letters) == 1 and not dead.fetching, deadline=20)
        assert all(SECRET not in str(letter) for letter in dead.letters.values())
        await pilot.press("g", "enter")
        job = app.screen
        assert isinstance(job, JobDetailScreen)
        await until(pilot, lambda: job.job is not None, deadline=20)
        payload = job.query_one("#job-payload", Static)
        await until(pilot, lambda: '"body": "***"' in seen(payload))
        await settle(app, pilot)
        assert '"userId": "u1"' in seen(payload)
        assert SECRET not in seen(payload)
    behaviour.release.set()
