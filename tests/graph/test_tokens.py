"""Tokens (msal) against the simulator's Entra: app tokens, errors, device login, the cache file, the CLI."""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fleetbox.errors import (
    AuthenticationError,
    ConfigError,
    Deferred,
    NetworkError,
    PermanentError,
    TransientError,
)
from fleetbox.graph.sim_common import RecordedRequest
from fleetbox.graph.simulator import GraphSimulator
from fleetbox.graph.tokens import TokenKind, Tokens
from tests.graph.conftest import graph_settings, make_rig

TOKEN_ENDPOINT = r"POST /simulated-tenant/oauth2/v2.0/token"
MakeTokens = Callable[..., Tokens]


@pytest.fixture
def make_tokens(sim: GraphSimulator, cache_path: Path) -> Iterator[MakeTokens]:
    """Tokens for the simulator (keyword arguments override settings); closed after the test."""
    made: list[Tokens] = []

    def make(**overrides: Any) -> Tokens:
        made.append(Tokens(graph_settings(sim, **overrides), cache_path=cache_path))
        return made[-1]

    yield make
    for tokens in made:
        tokens.close()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def names(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir()]


def exists(path: Path) -> bool:
    return path.exists()


def token_calls(sim: GraphSimulator, grant: str | None = None) -> list[RecordedRequest]:
    calls = [r for r in sim.requests if r.path.endswith("/oauth2/v2.0/token")]
    return [r for r in calls if grant is None or f"grant_type={grant}".encode() in r.body]


async def test_app_token_is_fetched_once_and_reused(
    sim: GraphSimulator, cache_path: Path, make_tokens: MakeTokens
) -> None:
    tokens = make_tokens()
    await tokens.start()
    first, second = await asyncio.gather(tokens.token(TokenKind.APP), tokens.token(TokenKind.APP))
    assert first == second and first in sim.tokens
    assert len(token_calls(sim, "client_credentials")) == 1
    # The simulator is not one of Microsoft's Graph hosts: the token is still for Graph's audience.
    assert b"scope=https%3A%2F%2Fgraph.microsoft.com%2F.default" in token_calls(sim)[0].body
    assert not exists(cache_path)  # app tokens stay in memory


async def test_a_wrong_secret_is_an_authentication_error(
    sim: GraphSimulator, cache_path: Path, make_tokens: MakeTokens
) -> None:
    tokens = make_tokens(client_secret="not-the-secret")
    await tokens.start()
    with pytest.raises(AuthenticationError, match="invalid_client") as raised:
        await tokens.token(TokenKind.APP)
    assert "not-the-secret" not in str(raised.value)


async def test_a_token_endpoint_failure_is_transient(
    sim: GraphSimulator, cache_path: Path, make_tokens: MakeTokens
) -> None:
    tokens = make_tokens()
    await tokens.start()
    sim.fail(TOKEN_ENDPOINT, 503, retry_after=1)
    # The job waits for the next probe (1 s) without using an attempt; the cause is transient.
    with pytest.raises(Deferred) as raised:
        await tokens.token(TokenKind.APP)
    assert raised.value.seconds == 1.0 and isinstance(raised.value.__cause__, TransientError)
    [outage] = tokens.failing()
    assert outage.kind is TokenKind.APP and outage.failures == 1


async def test_entra_out_of_reach_defers_to_the_first_token(
    sim: GraphSimulator, cache_path: Path, make_tokens: MakeTokens
) -> None:
    tokens = make_tokens(authority_host="https://127.0.0.1:9", timeout_seconds=2)
    await tokens.start()  # logs and goes on: the appliance starts without Entra
    with pytest.raises(Deferred, match="Entra not reachable") as raised:
        await tokens.token(TokenKind.APP)
    assert isinstance(raised.value.__cause__, NetworkError)


async def test_a_wrong_tenant_fails_start(sim: GraphSimulator, cache_path: Path, make_tokens: MakeTokens) -> None:
    tokens = make_tokens(tenant_id="no-such-tenant")
    with pytest.raises(ConfigError, match="graph: Entra refused"):
        await tokens.start()


async def test_delegated_without_sign_in_says_what_to_run(
    sim: GraphSimulator, cache_path: Path, make_tokens: MakeTokens
) -> None:
    tokens = make_tokens()
    await tokens.start()
    assert tokens.delegated_account() is None
    with pytest.raises(PermanentError, match="fleetbox auth login"):
        await tokens.token(TokenKind.DELEGATED)


async def test_device_login_then_silent_delegated_tokens_from_the_cache_file(
    sim: GraphSimulator, cache_path: Path, make_tokens: MakeTokens
) -> None:
    shown: list[str] = []
    login = make_tokens()
    assert await login.device_login(shown.append) == sim.user
    assert len(shown) == 1 and "enter the code" in shown[0]
    assert mode(cache_path) == 0o600
    assert names(cache_path.parent) == [cache_path.name]  # no temporary file left
    assert login.delegated_account() == sim.user

    # Another process (the appliance) reads the file and never needs the device code again.
    rig = await make_rig(sim, cache_path)
    try:
        assert rig.tokens.delegated_account() == sim.user
        posted = await rig.client.request(
            "POST",
            "/chats/19:abc@thread.v2/messages",
            resource="teams",
            key="19:abc@thread.v2",
            token=TokenKind.DELEGATED,
            json={"body": {"content": "hello"}},
        )
        assert posted.status == 201
        assert sim.chat_messages["19:abc@thread.v2"][0]["from"]["user"]["displayName"]
        assert len([r for r in sim.requests if r.path.endswith("/devicecode")]) == 1

        # Graph rejects the token: the access token goes, the refresh token brings a new one.
        sim.expire_tokens()
        with pytest.raises(AuthenticationError):  # the job's one retry follows, with a new token
            await rig.client.request(
                "POST",
                "/chats/19:abc@thread.v2/messages",
                resource="teams",
                key="19:abc@thread.v2",
                token=TokenKind.DELEGATED,
                json={"body": {"content": "again"}},
            )
        again = await rig.client.request(
            "POST",
            "/chats/19:abc@thread.v2/messages",
            resource="teams",
            key="19:abc@thread.v2",
            token=TokenKind.DELEGATED,
            json={"body": {"content": "again"}},
        )
        assert again.status == 201
        assert len(token_calls(sim, "refresh_token")) == 1
        assert mode(cache_path) == 0o600
    finally:
        await rig.close()


async def test_a_revoked_refresh_token_means_sign_in_again(
    sim: GraphSimulator, cache_path: Path, make_tokens: MakeTokens
) -> None:
    tokens = make_tokens()
    await tokens.device_login(lambda _: None)
    for grant in sim.refresh_tokens.values():
        grant.revoked = True
    await tokens.invalidate(TokenKind.DELEGATED)
    with pytest.raises(PermanentError, match="sign in again"):
        await tokens.token(TokenKind.DELEGATED)


async def test_a_cache_file_readable_by_others_is_made_owner_only(
    sim: GraphSimulator, cache_path: Path, make_tokens: MakeTokens
) -> None:
    await make_tokens().device_login(lambda _: None)
    os.chmod(cache_path, 0o644)
    tokens = make_tokens()
    assert tokens.delegated_account() == sim.user
    assert mode(cache_path) == 0o600


def _config(sim: GraphSimulator, tmp_path: Path) -> Path:
    path = tmp_path / "fleetbox.toml"
    path.write_text(
        f'[appliance]\ndata_dir = "{tmp_path / "data"}"\n\n'
        f'[graph]\ntenant_id = "{sim.tenant}"\nclient_id = "{sim.client_id}"\n'
        f'client_secret = "{sim.client_secret}"\nauthority_host = "{sim.authority_host}"\n'
        f'base_url = "{sim.base_url}"\nca_bundle = "{sim.ca_pem_path}"\nsimulate = false\n',
        encoding="utf-8",
    )
    return path


async def _cli(*args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETBOX_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "fleetbox",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_auth_login_and_status_through_the_cli(sim: GraphSimulator, tmp_path: Path) -> None:
    config = _config(sim, tmp_path)
    code, out, err = await _cli("auth", "status", "--config", str(config))
    assert code == 0, err
    assert "not signed in" in out and "client secret (set)" in out and "absent" in out
    assert sim.client_secret not in out + err

    code, out, err = await _cli("auth", "login", "--config", str(config))
    assert code == 0, err
    assert "enter the code" in out and f"signed in as {sim.user}" in out
    cache = tmp_path / "data" / "graph-token-cache.json"
    assert mode(cache) == 0o600

    code, out, err = await _cli("auth", "status", "--config", str(config))
    assert code == 0, err
    assert sim.user in out and f"{cache} (mode 0600)" in out
    assert sim.client_secret not in out + err


async def test_auth_login_without_an_app_registration_is_a_config_error(tmp_path: Path) -> None:
    code, _, err = await _cli("auth", "login", "--data-dir", str(tmp_path))
    assert code == 2
    assert "graph.tenant_id and graph.client_id" in err


async def test_a_certificate_credential_signs_a_client_assertion(
    sim: GraphSimulator, make_tokens: MakeTokens, tmp_path: Path
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = tmp_path / "graph.pem"
    pem.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    tokens = make_tokens(
        client_secret=None, certificate_path=pem, certificate_thumbprint="A1B2C3D4E5F60718293A4B5C6D7E8F9012345678"
    )
    await tokens.start()
    assert await tokens.token(TokenKind.APP)
    [call] = token_calls(sim, "client_credentials")
    assert b"client_assertion=" in call.body
    assert b"client_secret" not in call.body
