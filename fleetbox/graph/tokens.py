"""Access tokens for Microsoft Graph, from msal, off the event loop (msal blocks on HTTP).

Two kinds:

- **app** (client credentials: tenant, client id, a secret or a certificate) for mail,
  subscriptions and sync. msal keeps them in memory and renews them before they expire.
- **delegated**, for Teams chat and channel messages: Graph takes app-only message posts only for
  imports, so a service account signs in once with ``fleetbox auth login`` (device code flow).
  Its refresh token is kept in a file only the appliance's user can read (mode 0600, replaced
  atomically), and access tokens come from it silently from then on. The app registration must
  allow public client flows for this.

msal talks HTTP through a ``requests.Session`` of fleetbox's own: ``ca_bundle`` is honoured even
when ``REQUESTS_CA_BUNDLE`` is set (requests lets that variable override a plain ``verify=``), and
every call has the configured timeout. Proxies from the environment are not used either.

**Entra outages.** msal keeps a failed token-endpoint answer (429, 5xx) in its own throttle cache
and hands it back for Retry-After or 60 s (public clients; 5 s for confidential ones) without asking
Entra again: a job retried on the usual 1, 2, 4, 8, 16 s would use up its retries on that cached
answer during a one-minute outage. fleetbox throttles its token requests itself instead: after a
failure it asks Entra again after 1, 2, 4 ... up to 30 s (one request per token kind, whatever the
number of jobs), clears msal's throttle cache before each such probe, and meanwhile answers the
jobs that need a token with :class:`~fleetbox.errors.Deferred` until the next probe, so they give
their worker slot back and use no attempt. After ``graph.identity_outage_wait_seconds`` of outage
the failure is a transient error of the job again. :meth:`Tokens.failing` says which kinds have
been failing since when (the appliance raises a ``task_failing`` alert after a minute).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msal
import requests
from msal.authority import WELL_KNOWN_AUTHORITY_HOSTS
from msal.exceptions import MsalError

from fleetbox.config import GraphSettings, Settings
from fleetbox.errors import (
    AuthenticationError,
    ConfigError,
    Deferred,
    JobError,
    NetworkError,
    PermanentError,
    TransientError,
)

log = logging.getLogger("fleetbox.graph.tokens")

#: msal treats a token as expired this long before it does; fleetbox's memo does the same
EXPIRY_MARGIN_S = 300.0
#: after a failed token request, Entra is asked again after 1, 2, 4 ... seconds, at most this
OUTAGE_PROBE_MAX_S = 30.0
LOGIN_HINT = "run `fleetbox auth login` to sign in the Teams service account"


class TokenKind(StrEnum):
    """Which token a Graph request needs."""

    APP = "app"  #: client credentials (the app's own permissions)
    DELEGATED = "delegated"  #: the signed-in Teams service account


def default_cache_path(settings: Settings) -> Path:
    """Where the delegated token cache lives: ``graph.token_cache_path`` or in the data directory."""
    return settings.graph.token_cache_path or settings.appliance.data_dir / "graph-token-cache.json"


#: Microsoft's Graph hosts (global and national clouds): a token for one of them names that host
NATIONAL_GRAPH_HOSTS = frozenset(
    {"graph.microsoft.com", "graph.microsoft.us", "dod-graph.microsoft.us", "microsoftgraph.chinacloudapi.cn"}
)
GLOBAL_GRAPH_SCOPE = "https://graph.microsoft.com/.default"


def graph_scope(settings: GraphSettings) -> str:
    """The app-only scope: ``graph.scope``, else the national cloud's resource for Microsoft's Graph
    hosts, else the global Graph's (any other host is a proxy, gateway or test server in front of
    Graph, which still wants a token for Graph's audience; its origin would be the wrong one)."""
    if settings.scope is not None:
        return settings.scope
    host = (urlsplit(settings.base_url).hostname or "").lower()
    return f"https://{host}/.default" if host in NATIONAL_GRAPH_HOSTS else GLOBAL_GRAPH_SCOPE


class EntraSession(requests.Session):
    """msal's HTTP client: the configured CA bundle whatever the environment says, and a timeout."""

    def __init__(self, *, verify: str | bool, timeout: float) -> None:
        super().__init__()
        # requests would let REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override verify= (and read
        # proxies and .netrc): fleetbox's settings decide instead.
        self.trust_env = False
        self.verify = verify
        self._timeout = timeout

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._timeout
        return super().request(method, url, *args, **kwargs)


@dataclass(frozen=True, slots=True)
class _Memo:
    token: str
    valid_until: float


@dataclass(frozen=True, slots=True)
class _Outage:
    """Token requests of one kind failing: since when, how often, and when to ask Entra again."""

    since: float
    failures: int
    next_try: float
    error: str


@dataclass(frozen=True, slots=True)
class TokenOutage:
    """A token kind Entra has failed to issue since ``since`` (seconds since the epoch)."""

    kind: TokenKind
    since: float
    failures: int
    error: str


class Tokens:
    """msal-backed tokens of one appliance: one confidential app (app tokens), one public app (delegated)."""

    def __init__(self, settings: GraphSettings, *, cache_path: Path, clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        #: seconds since the epoch (an appliance passes its own clock, so tests can drive outages)
        self._clock = clock
        self._outages: dict[TokenKind, _Outage] = {}
        #: msal's HTTP cache, which holds its throttled answers: fleetbox clears it before a probe
        self._http_cache: dict[str, Any] = {}
        self._cache_path = cache_path
        self._cache = msal.SerializableTokenCache()
        #: the cache file's mtime when it was last read or written (another process may sign in)
        self._cache_mtime: int | None = None
        self._file_lock = threading.Lock()
        self._confidential: Any = None  # msal.ConfidentialClientApplication (msal ships no types)
        self._public: Any = None  # msal.PublicClientApplication
        self._http: EntraSession | None = None
        self._built = False
        self._build_lock = asyncio.Lock()
        self._locks = {kind: asyncio.Lock() for kind in TokenKind}
        self._memo: dict[TokenKind, _Memo] = {}

    @property
    def cache_path(self) -> Path:
        return self._cache_path

    # -- building -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Build the msal apps (their constructors fetch Entra's configuration: network I/O).

        A configuration Entra refuses raises :class:`ConfigError`. When Entra cannot be reached,
        start goes on and the first :meth:`token` call tries again.
        """
        try:
            await self._ensure_built()
        except PermanentError as exc:
            raise ConfigError(f"graph: {exc}") from exc
        except (TransientError, AuthenticationError) as exc:
            log.warning(
                "Entra not reachable; tokens will be fetched when first needed",
                extra={"event": "graph_tokens_deferred", "error": str(exc)},
            )

    def close(self) -> None:
        """Close msal's HTTP connections (the appliance calls this at shutdown)."""
        if self._http is not None:
            self._http.close()

    async def _ensure_built(self) -> None:
        if self._built:
            return
        async with self._build_lock:
            if not self._built:
                await _off_loop(self._build)
                self._built = True

    def _build(self) -> None:
        s = self._settings
        if s.tenant_id is None or s.client_id is None:
            raise PermanentError("graph.tenant_id and graph.client_id are needed for Microsoft Graph tokens")
        self._load_cache()
        host = urlsplit(s.authority_host).hostname or ""
        if self._http is None:
            verify = str(s.ca_bundle) if s.ca_bundle is not None else True
            self._http = EntraSession(verify=verify, timeout=s.timeout_seconds)
        common: dict[str, Any] = {
            "authority": f"{s.authority_host.rstrip('/')}/{s.tenant_id}",
            "http_client": self._http,
            # Outside Microsoft's own hosts (a simulator, a test), msal must not ask
            # login.microsoftonline.com to validate the authority.
            "instance_discovery": None if host in WELL_KNOWN_AUTHORITY_HOSTS else False,
            "http_cache": self._http_cache,
        }
        credential = self._credential()
        if credential is not None and self._confidential is None:
            self._confidential = msal.ConfidentialClientApplication(
                s.client_id, client_credential=credential, azure_region=False, **common
            )
        if self._public is None:
            self._public = msal.PublicClientApplication(s.client_id, token_cache=self._cache, **common)

    def _credential(self) -> str | dict[str, str] | None:
        s = self._settings
        if s.client_secret is not None:
            return s.client_secret.get_secret_value()
        if s.certificate_path is not None and s.certificate_thumbprint is not None:
            try:
                key = s.certificate_path.read_text(encoding="utf-8")
            except OSError as exc:
                raise PermanentError(f"graph.certificate_path {s.certificate_path}: {exc.strerror}") from None
            return {"private_key": key, "thumbprint": s.certificate_thumbprint}
        return None

    # -- tokens -------------------------------------------------------------------------------

    async def token(self, kind: TokenKind) -> str:
        """An access token of ``kind`` (from memory when it is good for five more minutes).

        Raises :class:`AuthenticationError` when Entra rejects the app's credentials,
        :class:`PermanentError` when retrying cannot help (no account signed in, consent
        missing), :class:`TransientError`/:class:`NetworkError` when Entra failed or is away.
        """
        memo = self._memo.get(kind)
        if memo is not None and memo.valid_until > time.monotonic():
            return memo.token
        self._wait_for_probe(kind)
        # One msal call at a time per kind: on a cache miss, every caller would go to Entra.
        async with self._locks[kind]:
            memo = self._memo.get(kind)
            if memo is not None and memo.valid_until > time.monotonic():
                return memo.token
            self._wait_for_probe(kind)  # another caller's request failed while this one waited
            if kind in self._outages:
                self._http_cache.clear()  # this is the probe: Entra must really be asked
            try:
                await self._ensure_built()
                result = await _off_loop(self._acquire_app if kind is TokenKind.APP else self._acquire_delegated)
                token = _token_from(kind, result)
            except TransientError as exc:  # Entra failed or is away (NetworkError included)
                raise self._failed(kind, exc) from exc
            self._recovered(kind)
            expires_in = float(result.get("expires_in") or 0)
            self._memo[kind] = _Memo(token, time.monotonic() + expires_in - EXPIRY_MARGIN_S)
            return token

    def _wait_for_probe(self, kind: TokenKind) -> None:
        """Before the next probe of an outage: the job waits for it (Deferred), no request goes out."""
        outage = self._outages.get(kind)
        if outage is None:
            return
        now = self._clock()
        if now >= outage.next_try:
            return
        if now - outage.since < self._settings.identity_outage_wait_seconds:
            raise Deferred(outage.next_try - now, f"Entra is failing to issue {kind.value} tokens: {outage.error}")
        raise TransientError(
            f"Entra has failed to issue {kind.value} tokens for {now - outage.since:.0f} s: {outage.error}"
        )

    def _failed(self, kind: TokenKind, exc: TransientError) -> Exception:
        """Note a failed token request; the job waits for the next probe (or, late in an outage, fails)."""
        now = self._clock()
        before = self._outages.get(kind)
        failures = before.failures + 1 if before is not None else 1
        since = before.since if before is not None else now
        wait = min(OUTAGE_PROBE_MAX_S, 2.0 ** (failures - 1))
        self._outages[kind] = _Outage(since, failures, now + wait, str(exc))
        if before is None:
            log.warning(
                "Entra failed to issue a token; asking again with backoff",
                extra={"event": "graph_token_outage", "kind": kind.value, "error": str(exc)},
            )
        if now - since < self._settings.identity_outage_wait_seconds:
            return Deferred(wait, f"Entra failed to issue a {kind.value} token: {exc}")
        return exc

    def _recovered(self, kind: TokenKind) -> None:
        outage = self._outages.pop(kind, None)
        if outage is not None:
            log.warning(
                "Entra issues tokens again",
                extra={
                    "event": "graph_token_recovered",
                    "kind": kind.value,
                    "failures": outage.failures,
                    "outage_seconds": round(self._clock() - outage.since, 3),
                },
            )

    def failing(self) -> list[TokenOutage]:
        """The token kinds Entra is failing to issue now."""
        return [TokenOutage(kind, o.since, o.failures, o.error) for kind, o in self._outages.items()]

    def _acquire_app(self) -> Mapping[str, Any]:
        if self._confidential is None:
            raise PermanentError("app tokens need graph.client_secret or graph.certificate_path")
        result: Mapping[str, Any] = self._confidential.acquire_token_for_client(scopes=[graph_scope(self._settings)])
        return result

    def _acquire_delegated(self) -> Mapping[str, Any]:
        self._load_cache()  # `fleetbox auth login` may have signed in since
        account = self._account()
        if account is None:
            raise PermanentError(f"no Teams service account is signed in: {LOGIN_HINT}")
        result: Mapping[str, Any] | None = self._public.acquire_token_silent_with_error(
            list(self._settings.delegated_scopes), account
        )
        self._persist()  # a refresh may have brought a new refresh token
        if result is None:
            raise PermanentError(f"the Teams service account has no usable token: {LOGIN_HINT}")
        return result

    def _account(self) -> dict[str, Any] | None:
        accounts: list[dict[str, Any]] = self._public.get_accounts()
        return accounts[0] if accounts else None

    async def invalidate(self, kind: TokenKind) -> None:
        """Forget the access token(s) of ``kind`` (Graph said they are no good); keep refresh tokens."""
        self._memo.pop(kind, None)
        if not self._built:
            return
        async with self._locks[kind]:
            await _off_loop(self._drop_app if kind is TokenKind.APP else self._drop_delegated)
        log.info("access token dropped", extra={"event": "graph_token_invalidated", "kind": kind.value})

    def _drop_app(self) -> None:
        if self._confidential is not None:
            self._confidential.remove_tokens_for_client()

    def _drop_delegated(self) -> None:
        account = self._account()
        if account is None:
            return
        query = {"client_id": self._settings.client_id, "home_account_id": account["home_account_id"]}
        for at in list(self._cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN, query=query)):
            self._cache.remove_at(at)
        self._persist(force=True)

    # -- the service account ------------------------------------------------------------------

    async def device_login(self, show: Callable[[str], None]) -> str:
        """Sign the Teams service account in with a device code; returns its username.

        ``show`` gets msal's instructions (the URL and the code to enter). The cache file is
        written when the sign-in succeeds; an account signed in before is forgotten.
        """
        await self._ensure_built()
        scopes = list(self._settings.delegated_scopes)
        flow: dict[str, Any] = await _off_loop(lambda: self._public.initiate_device_flow(scopes=scopes))
        if "user_code" not in flow:
            raise AuthenticationError(f"device code sign-in could not start: {_describe(flow)}")
        show(str(flow.get("message") or f"enter code {flow['user_code']} at {flow.get('verification_uri')}"))
        try:
            result: dict[str, Any] = await _off_loop(lambda: self._public.acquire_token_by_device_flow(flow))
        except asyncio.CancelledError:
            flow["expires_at"] = 0  # msal's documented way to stop its polling thread
            raise
        if "access_token" not in result:
            raise AuthenticationError(f"sign-in failed: {_describe(result)}")
        claims: Mapping[str, Any] = result.get("id_token_claims") or {}
        username = claims.get("preferred_username")
        await _off_loop(lambda: self._keep_only(username))
        self._memo.pop(TokenKind.DELEGATED, None)
        username = username or self.delegated_account()
        log.info("Teams service account signed in", extra={"event": "graph_device_login", "account": username})
        return str(username)

    def _keep_only(self, username: str | None) -> None:
        """One service account: forget any other that signed in before."""
        if username:
            for account in self._public.get_accounts():
                if str(account.get("username", "")).casefold() != username.casefold():
                    self._public.remove_account(account)
        self._persist(force=True)

    def delegated_account(self) -> str | None:
        """The signed-in service account's username, from the cache file (None: not signed in)."""
        self._load_cache()
        for account in self._cache.search(msal.TokenCache.CredentialType.ACCOUNT):
            name = account.get("username")
            if name:
                return str(name)
        return None

    # -- the cache file -----------------------------------------------------------------------

    def _load_cache(self) -> None:
        """Read the cache file when it changed since fleetbox last read or wrote it."""
        with self._file_lock:
            path = self._cache_path
            try:
                st = path.stat()
                if st.st_mtime_ns == self._cache_mtime:
                    return
                text = path.read_text(encoding="utf-8")
            except FileNotFoundError:
                return
            except OSError as exc:
                raise PermanentError(f"token cache {path}: {exc.strerror}") from None
            if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                os.chmod(path, 0o600)
                log.warning(
                    "the token cache was readable by others; it is owner-only now",
                    extra={"event": "graph_token_cache_mode_fixed", "path": str(path)},
                )
            try:
                self._cache.deserialize(text)
            except ValueError:
                raise PermanentError(f"token cache {path} is not an msal cache; delete it and sign in again") from None
            self._cache_mtime = st.st_mtime_ns

    def _persist(self, *, force: bool = False) -> None:
        """Write the cache file atomically, owner-only (when something changed)."""
        with self._file_lock:
            if not (force or self._cache.has_state_changed):
                return
            path = self._cache_path
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # mkstemp creates the file 0600 before anything is written to it.
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(self._cache.serialize())
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
                self._cache_mtime = path.stat().st_mtime_ns
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise


async def _off_loop(call: Callable[[], Any]) -> Any:
    """Run a blocking msal call in a thread; turn what it raises into fleetbox errors."""
    try:
        return await asyncio.to_thread(call)
    except JobError:
        raise
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise NetworkError(f"Entra not reachable: {type(exc).__name__}") from exc
    except (requests.RequestException, MsalError) as exc:
        # msal raises for a 5xx from Entra (it returns an error dict for a 4xx).
        raise TransientError(f"Entra failed: {type(exc).__name__}: {exc}") from exc
    except ValueError as exc:
        # msal: a non-JSON answer, or Entra refused the authority (wrong tenant or host).
        raise PermanentError(f"Entra refused the request: {exc}") from exc


_AUTH_ERRORS = frozenset({"invalid_client", "unauthorized_client"})
_PERMANENT_ERRORS = frozenset({"invalid_request", "invalid_scope", "unsupported_grant_type", "invalid_resource"})
_SIGN_IN_AGAIN = frozenset({"invalid_grant", "interaction_required", "consent_required", "login_required"})


def _token_from(kind: TokenKind, result: Mapping[str, Any]) -> str:
    """The access token of an msal result, or the fleetbox error its ``error`` means."""
    token = result.get("access_token")
    if token:
        return str(token)
    error = str(result.get("error") or "")
    what = _describe(result)
    if error in _AUTH_ERRORS:
        raise AuthenticationError(f"Entra rejected the app's credentials: {what}")
    if kind is TokenKind.DELEGATED and error in _SIGN_IN_AGAIN:
        raise PermanentError(f"the Teams service account must sign in again ({what}): {LOGIN_HINT}")
    if error in _PERMANENT_ERRORS or error in _SIGN_IN_AGAIN:
        raise PermanentError(f"Entra refused the token request: {what}")
    # temporarily_unavailable, throttling, and codes fleetbox does not know: try again later.
    raise TransientError(f"Entra did not issue a token: {what}")


def _describe(result: Mapping[str, Any]) -> str:
    """``error: first line of error_description`` (Entra's descriptions carry no secrets)."""
    error = result.get("error") or "unknown error"
    description = str(result.get("error_description") or "").strip().splitlines()
    return f"{error}: {description[0]}" if description else str(error)
