"""The simulator's fault mode for operators (issue 13 item 11): ``[graph.simulator.faults]`` and
``fleetbox run --simulate-faults PROFILE``, checked from the settings, the command line, and the
wire (plain aiohttp and the real msal against the TLS simulator).

The end-to-end check, the real appliance draining every Graph queue through a fault profile, is
tests/graph/test_conformance.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import ValidationError

from fleetbox import cli
from fleetbox.config import FAULT_PROFILES, GraphSettings, SimulatedFaultSettings
from fleetbox.graph.sim_faults import FaultKind
from fleetbox.graph.simulator import GraphSimulator

MAILBOX = "depot1@contoso.example"
OTHER = "depot2@contoso.example"
MAIL = {"message": {"subject": "Route", "toRecipients": [{"emailAddress": {"address": "d@contoso.example"}}]}}
REAL_GRAPH = {"tenant_id": "contoso", "client_id": "fleetbox", "client_secret": "s3cret"}


class Clock:
    """The fault clock, moved by the test (seconds)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def sim() -> AsyncIterator[GraphSimulator]:
    async with GraphSimulator() as simulator:
        yield simulator
    assert simulator.internal_errors == []


@pytest.fixture
async def http(sim: GraphSimulator) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=sim.client_ssl_context())) as session:
        yield session


async def app_token(sim: GraphSimulator, http: aiohttp.ClientSession) -> tuple[int, str]:
    """Client credentials at the token endpoint, as msal sends them: (status, access token or error)."""
    form = {
        "grant_type": "client_credentials",
        "client_id": sim.client_id,
        "client_secret": sim.client_secret,
        "scope": "https://graph.microsoft.com/.default",
    }
    async with http.post(f"{sim.authority_host}/{sim.tenant}/oauth2/v2.0/token", data=form) as resp:
        body = await resp.json()
        return resp.status, body.get("access_token") or body["error"]


async def send_mail(
    sim: GraphSimulator, http: aiohttp.ClientSession, token: str, mailbox: str
) -> aiohttp.ClientResponse:
    async with http.post(
        f"{sim.base_url}/users/{mailbox}/sendMail", json=MAIL, headers={"Authorization": f"Bearer {token}"}
    ) as resp:
        await resp.read()
        return resp


# -- settings and the command line ---------------------------------------------------------------


def test_a_profile_gives_its_rates_and_the_table_overrides_them() -> None:
    mixed = SimulatedFaultSettings(profile="mixed", throttle_rate=0.2)
    assert mixed.value("throttle_rate") == 0.2
    assert mixed.value("unavailable_rate") == FAULT_PROFILES["mixed"]["unavailable_rate"]
    assert mixed.value("entra_outage_seconds") == 90
    assert SimulatedFaultSettings(profile="throttle").value("entra_outage_seconds") == 0
    assert not SimulatedFaultSettings().active
    assert SimulatedFaultSettings(drop_rate=0.01).active
    assert all(SimulatedFaultSettings(profile=p).active for p in ("throttle", "outage", "mixed"))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"throttle_rate": 1.5}, "throttle_rate\n  Input should be less than or equal to 1"),
        ({"profile": "chaos"}, "profile\n  Input should be 'none', 'throttle', 'outage' or 'mixed'"),
        ({"throttel_rate": 0.1}, "throttel_rate\n  Extra inputs are not permitted"),
        ({"routes": "sendMail("}, "routes is not a regular expression"),
        ({"throttle_rate": 0.3, "drop_rate": 0.3}, "add up to 0.6; at most 0.5"),
        ({"entra_outage_seconds": 90, "entra_outage_every_seconds": 60}, "entra_outage_every_seconds must be longer"),
        ({"slow_seconds": 0}, "slow_seconds\n  Input should be greater than 0"),
    ],
)
def test_a_bad_fault_table_is_refused_naming_the_key(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        GraphSettings(simulator={"faults": table})


def test_faults_are_refused_when_a_real_graph_is_configured() -> None:
    with pytest.raises(ValidationError, match="works only with the built-in simulator, and a real Microsoft Graph"):
        GraphSettings(**REAL_GRAPH, simulator={"faults": {"profile": "outage"}})
    with pytest.raises(ValidationError, match="Graph delivery is off"):
        GraphSettings(enabled=False, simulator={"faults": {"profile": "outage"}})
    # simulate = true keeps the credentials aside and runs the simulator: faults are allowed
    assert GraphSettings(**REAL_GRAPH, simulate=True, simulator={"faults": {"profile": "outage"}}).simulated
    # a table that injects nothing is no rehearsal, and harmless next to a real Graph
    assert not GraphSettings(**REAL_GRAPH, simulator={"faults": {"profile": "none"}}).simulated


def test_run_simulate_faults_is_refused_against_a_real_graph_before_anything_starts(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = tmp_path / "fleetbox.toml"
    config.write_text('[graph]\ntenant_id = "contoso"\nclient_id = "fleetbox"\nclient_secret = "s3cret"\n')
    code = cli.main(["run", "--config", str(config), "--simulate-faults", "mixed", "--data-dir", str(tmp_path / "d")])
    err = capsys.readouterr().err
    assert code != 0
    assert "--simulate-faults" in err and "a real Microsoft Graph is configured" in err
    assert "s3cret" not in err
    assert not (tmp_path / "d").exists()  # no database, no appliance: refused before anything started


def test_an_unknown_profile_on_the_command_line_names_the_choices(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["run", "--simulate-faults", "chaos"])
    assert "invalid choice: 'chaos' (choose from 'throttle', 'outage', 'mixed')" in capsys.readouterr().err


def test_the_flag_sets_the_profile_as_config_show_reports_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["config", "show", "--json", "--set", "graph.simulator.faults.profile=outage"]) == 0
    assert '"outage"' in capsys.readouterr().out
    args = cli._parser().parse_args(["run", "--simulate-faults", "throttle"])
    assert cli._flags(args) == {"graph": {"simulator": {"faults": {"profile": "throttle"}}}}


# -- on the wire ------------------------------------------------------------------------------------


async def test_a_429_throttles_its_mailbox_for_retry_after_and_counts_requests_inside(
    sim: GraphSimulator, http: aiohttp.ClientSession
) -> None:
    faults = sim.simulate_faults(
        SimulatedFaultSettings(throttle_rate=0.5, retry_after_seconds=30, routes=MAILBOX.replace(".", r"\."), seed=1)
    )
    _, token = await app_token(sim, http)
    statuses = [(await send_mail(sim, http, token, MAILBOX)).status for _ in range(12)]
    first = statuses.index(429)
    # Graph keeps a throttled mailbox throttled: every later request in the window is refused too
    assert statuses[:first] == [202] * first and statuses[first:] == [429] * (12 - first)
    [window] = faults.windows
    assert window.scope == ("mailbox", MAILBOX) and window.end - window.start == pytest.approx(30)
    assert len(faults.inside_windows) == 12 - first - 1
    again = await send_mail(sim, http, token, MAILBOX)
    assert 28 <= int(again.headers["Retry-After"]) <= 30
    # another mailbox is not throttled (and not matched by routes)
    assert (await send_mail(sim, http, token, OTHER)).status == 202


async def test_503_504_drops_and_slow_answers_are_drawn_per_request(
    sim: GraphSimulator, http: aiohttp.ClientSession
) -> None:
    faults = sim.simulate_faults(
        SimulatedFaultSettings(
            unavailable_rate=0.15, gateway_timeout_rate=0.15, drop_rate=0.15, slow_rate=0.1, slow_seconds=0.05, seed=3
        )
    )
    _, token = await app_token(sim, http)
    seen: list[int] = []
    for _ in range(60):
        try:
            seen.append((await send_mail(sim, http, token, MAILBOX)).status)
        except aiohttp.ClientError:
            seen.append(0)  # the connection closed without an answer
    assert {0, 202, 503, 504} == set(seen)
    assert faults.counts[FaultKind.DROPPED] == seen.count(0)
    assert faults.counts[FaultKind.SLOW] > 0
    # a dropped request was not acted on: only the 202s sent mail
    assert len(sim.sent_mail) == seen.count(202)


async def test_an_entra_outage_window_expires_tokens_and_refuses_new_ones(
    sim: GraphSimulator, http: aiohttp.ClientSession
) -> None:
    clock = Clock()
    faults = sim.simulate_faults(
        SimulatedFaultSettings(entra_outage_seconds=90, entra_outage_after_seconds=60), clock=clock
    )
    status, token = await app_token(sim, http)
    assert status == 200
    clock.now += 61
    assert (await send_mail(sim, http, token, MAILBOX)).status == 401  # the token died with the outage
    assert await app_token(sim, http) == (503, "temporarily_unavailable")
    clock.now += 89
    assert (await app_token(sim, http))[0] == 200  # 90 s later Entra is back
    assert faults.counts[FaultKind.ENTRA_OUTAGE] == 1


async def test_a_503_burst_refuses_every_graph_request_while_it_lasts(
    sim: GraphSimulator, http: aiohttp.ClientSession
) -> None:
    clock = Clock()
    sim.simulate_faults(
        SimulatedFaultSettings(unavailable_burst_seconds=5, unavailable_burst_every_seconds=120), clock=clock
    )
    _, token = await app_token(sim, http)
    assert (await send_mail(sim, http, token, MAILBOX)).status == 202
    clock.now += 116
    assert (await send_mail(sim, http, token, MAILBOX)).status == 503
    assert (await send_mail(sim, http, token, OTHER)).status == 503
    assert (await app_token(sim, http))[0] == 200  # Entra is not Graph
    clock.now += 5
    assert (await send_mail(sim, http, token, MAILBOX)).status == 202


async def test_a_401_revokes_only_a_token_over_a_minute_old(sim: GraphSimulator, http: aiohttp.ClientSession) -> None:
    faults = sim.simulate_faults(SimulatedFaultSettings(unauthorized_rate=0.5))
    _, token = await app_token(sim, http)
    # A fresh token is never revoked: fleetbox's one retry after a 401 goes with a fresh token.
    assert {(await send_mail(sim, http, token, MAILBOX)).status for _ in range(10)} == {202}
    sim.tokens[token].expires_at -= 120  # the token has lived two minutes
    statuses = [(await send_mail(sim, http, token, MAILBOX)).status for _ in range(10)]
    first = statuses.index(401)
    assert statuses[first:] == [401] * (10 - first)  # revoked: refused from then on
    assert faults.counts[FaultKind.UNAUTHORIZED] == 1
