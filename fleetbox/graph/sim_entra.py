"""Entra (login) routes of the Graph simulator: OIDC discovery, the token endpoint, device code.

msal talks to these unchanged (contract 6.1-6.4, 8): the authority is
``f"{sim.authority_host}/{sim.tenant}"``; discovery answers with https endpoints on the same host
and port; client-credential answers carry no ``scope`` (so msal caches under the requested
``.default``); delegated answers carry a refresh token, an unsigned id_token msal can read, and
``client_info`` when asked.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from aiohttp import web

from fleetbox.graph.sim_common import (
    BODY,
    DeviceFlow,
    OAuthError,
    RefreshGrant,
    TokenInfo,
    TokenKind,
    b64url,
    stable_guid,
    unsigned_jwt,
)

if TYPE_CHECKING:
    from fleetbox.graph.sim_state import SimState

GRAPH_RESOURCE = "https://graph.microsoft.com"
DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: scopes msal adds to every user sign-in; they do not name a Graph permission
RESERVED_SCOPES = frozenset({"openid", "profile", "offline_access"})


def _tenant(sim: SimState, request: web.Request) -> None:
    tenant = request.match_info["tenant"]
    if tenant != sim.tenant:
        raise OAuthError(
            400,
            "invalid_tenant",
            90002,
            f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing "
            "into the correct cloud.",
        )


async def openid_configuration(sim: SimState, request: web.Request) -> web.StreamResponse:
    """``GET /{tenant}/v2.0/.well-known/openid-configuration``."""
    _tenant(sim, request)
    base = f"{sim.authority_host}/{sim.tenant}"
    return web.json_response(
        {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{base}/v2.0",
            "request_uri_parameter_supported": False,
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "claims_supported": [
                "sub",
                "iss",
                "aud",
                "exp",
                "iat",
                "nonce",
                "preferred_username",
                "name",
                "tid",
                "oid",
            ],
            "tenant_region_scope": None,
            "cloud_instance_name": "simulated.example",
        }
    )


def _form(request: web.Request) -> dict[str, str]:
    body: bytes = request[BODY]
    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError:
        raise OAuthError(400, "invalid_request", 900144, "The request body must be form-encoded UTF-8.") from None


def _check_client(sim: SimState, form: dict[str, str], *, required: bool) -> None:
    client_id = form.get("client_id", "")
    if client_id != sim.client_id:
        raise OAuthError(
            400,
            "unauthorized_client",
            700016,
            f"Application with identifier '{client_id}' was not found in the directory '{sim.tenant}'.",
        )
    if "client_secret" in form:
        if not secrets.compare_digest(form["client_secret"].encode(), sim.client_secret.encode()):
            raise OAuthError(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret "
                f"value, not the client secret ID, for a secret added to app '{sim.client_id}'.",
            )
        return
    if "client_assertion" in form:
        if form.get("client_assertion_type") != JWT_BEARER or not _assertion_ok(sim, form["client_assertion"]):
            raise OAuthError(401, "invalid_client", 700027, "Client assertion failed signature validation.")
        return
    if required:
        raise OAuthError(
            401,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        )


def _assertion_ok(sim: SimState, assertion: str) -> bool:
    """A well-formed client assertion: a JWT from this client, not expired (its signature is not checked)."""
    parts = assertion.split(".")
    if len(parts) != 3 or not all(parts):
        return False
    try:
        header = json.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError):
        return False
    if not isinstance(header, dict) or not isinstance(claims, dict) or "alg" not in header:
        return False
    exp = claims.get("exp")
    return (
        claims.get("iss") == sim.client_id
        and claims.get("sub") == sim.client_id
        and bool(claims.get("aud"))
        and isinstance(exp, int | float)
        and exp > time.time()
    )


def audience_of(scopes: tuple[str, ...]) -> str:
    """The resource a token is for: the part of the first URL scope before its permission
    (``https://graph.microsoft.com/.default`` -> ``https://graph.microsoft.com``); bare
    permission names (``ChatMessage.Send``) mean Microsoft Graph, as Entra reads them."""
    for scope in scopes:
        if "://" in scope or scope.startswith("api:"):
            resource, _, _permission = scope.rpartition("/")
            return resource
    return GRAPH_RESOURCE


def _access_token(sim: SimState, kind: TokenKind, subject: str, scopes: tuple[str, ...]) -> str:
    now = int(time.time())
    audience = audience_of(scopes)
    claims: dict[str, Any] = {
        "aud": audience,
        "iss": f"{sim.authority_host}/{sim.tenant}/v2.0",
        "iat": now,
        "nbf": now,
        "exp": now + sim.token_lifetime_seconds,
        "appid": sim.client_id,
        "tid": sim.tenant,
        "idtyp": "app" if kind is TokenKind.APP else "user",
        "jti": secrets.token_urlsafe(12),
    }
    if kind is TokenKind.DELEGATED:
        claims.update(upn=subject, oid=stable_guid("user", subject), scp=" ".join(scopes))
    token = unsigned_jwt(claims) + secrets.token_urlsafe(16)  # a "signature" so no two tokens are equal
    sim.tokens[token] = TokenInfo(kind, subject, time.time() + sim.token_lifetime_seconds, scopes, audience)
    return token


def _delegated_answer(sim: SimState, subject: str, scopes: tuple[str, ...], form: dict[str, str]) -> web.StreamResponse:
    now = int(time.time())
    oid = stable_guid("user", subject)
    refresh = secrets.token_urlsafe(48)
    sim.refresh_tokens[refresh] = RefreshGrant(subject, scopes)
    id_token = unsigned_jwt(
        {
            "aud": sim.client_id,
            "iss": f"{sim.authority_host}/{sim.tenant}/v2.0",
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "name": subject.split("@", 1)[0],
            "oid": oid,
            "preferred_username": subject,
            "sub": stable_guid("sub", subject),
            "tid": sim.tenant,
            "ver": "2.0",
        }
    )
    answer: dict[str, Any] = {
        "token_type": "Bearer",
        "scope": " ".join(scopes),
        "expires_in": sim.token_lifetime_seconds,
        "ext_expires_in": sim.token_lifetime_seconds,
        "access_token": _access_token(sim, TokenKind.DELEGATED, subject, scopes),
        "refresh_token": refresh,
        "id_token": id_token,
    }
    if form.get("client_info") == "1":
        answer["client_info"] = b64url(json.dumps({"uid": oid, "utid": sim.tenant}).encode())
    return web.json_response(answer)


async def token(sim: SimState, request: web.Request) -> web.StreamResponse:
    """``POST /{tenant}/oauth2/v2.0/token``: client_credentials, refresh_token, device_code."""
    _tenant(sim, request)
    form = _form(request)
    grant = form.get("grant_type", "")
    scopes = tuple(form.get("scope", "").split())
    if grant == "client_credentials":
        _check_client(sim, form, required=True)
        if len(scopes) != 1 or not scopes[0].endswith("/.default"):
            raise OAuthError(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {' '.join(scopes) or '(none)'} is not valid. Client credential flows "
                "must have a scope value with /.default suffixed to the resource identifier (application ID URI).",
            )
        # No "scope" in the answer, as Entra does: msal then caches under the requested scope (6.1).
        return web.json_response(
            {
                "token_type": "Bearer",
                "expires_in": sim.token_lifetime_seconds,
                "ext_expires_in": sim.token_lifetime_seconds,
                "access_token": _access_token(sim, TokenKind.APP, sim.client_id, scopes),
            }
        )
    if grant == DEVICE_CODE_GRANT:
        _check_client(sim, form, required=False)
        flow = sim.device_flows.get(form.get("device_code", ""))
        if flow is None:
            raise OAuthError(400, "invalid_grant", 70000, "The provided value for 'device_code' is not valid.")
        if flow.redeemed:
            raise OAuthError(400, "invalid_grant", 54005, "OAuth2 Authorization code was already redeemed.")
        if flow.expires_at <= time.time():
            raise OAuthError(400, "expired_token", 70020, "The provided value for 'device_code' has expired.")
        if not flow.approved:
            raise OAuthError(
                400,
                "authorization_pending",
                70016,
                "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
            )
        flow.redeemed = True
        return _delegated_answer(sim, sim.user, flow.scopes, form)
    if grant == "refresh_token":
        _check_client(sim, form, required=False)
        refresh = sim.refresh_tokens.get(form.get("refresh_token", ""))
        if refresh is None:
            raise OAuthError(400, "invalid_grant", 9002313, "Invalid request. Request is malformed or invalid.")
        if refresh.revoked:
            raise OAuthError(
                400,
                "invalid_grant",
                50173,
                "The provided grant has expired due to it being revoked, a fresh auth token is needed.",
            )
        return _delegated_answer(sim, refresh.subject, scopes or refresh.scopes, form)
    raise OAuthError(
        400, "unsupported_grant_type", 70003, f"The app requested an unsupported grant type '{grant or '(none)'}'."
    )


async def devicecode(sim: SimState, request: web.Request) -> web.StreamResponse:
    """``POST /{tenant}/oauth2/v2.0/devicecode``: start a device-code sign-in."""
    _tenant(sim, request)
    form = _form(request)
    _check_client(sim, form, required=False)
    scopes = tuple(form.get("scope", "").split())
    if not [s for s in scopes if s not in RESERVED_SCOPES]:
        raise OAuthError(
            400, "invalid_scope", 70011, "The provided value for the input parameter 'scope' is not valid."
        )
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    user_code = "".join(secrets.choice(alphabet) for _ in range(9))
    device_code = secrets.token_urlsafe(48)
    expires_in = 900
    sim.device_flows[device_code] = DeviceFlow(
        device_code, user_code, scopes, time.time() + expires_in, approved=sim.auto_approve_device_codes
    )
    uri = f"{sim.authority_host}/devicelogin"
    return web.json_response(
        {
            "user_code": user_code,
            "device_code": device_code,
            "verification_uri": uri,
            "expires_in": expires_in,
            "interval": sim.device_code_interval_seconds,
            "message": f"To sign in, use a web browser to open the page {uri} and enter the code {user_code} "
            "to authenticate.",
        }
    )


async def devicelogin(sim: SimState, request: web.Request) -> web.StreamResponse:
    """``GET /devicelogin``: the page a device-code message points at (the simulator has no real sign-in)."""
    mode = "approved automatically" if sim.auto_approve_device_codes else "approved by the test (approve_device_code)"
    return web.Response(text=f"fleetbox Graph simulator: sign-in codes are {mode}, as {sim.user}.\n")


def approve_device_code(sim: SimState, user_code: str | None) -> None:
    """Approve the pending device flow with ``user_code`` (every pending one when None)."""
    pending = [f for f in sim.device_flows.values() if not f.approved and not f.redeemed]
    if user_code is not None:
        pending = [f for f in pending if f.user_code == user_code]
        if not pending:
            raise KeyError(f"no pending device-code sign-in with user code {user_code!r}")
    for flow in pending:
        flow.approved = True


ROUTES = [
    ("GET", "/{tenant}/v2.0/.well-known/openid-configuration", openid_configuration),
    ("POST", "/{tenant}/oauth2/v2.0/token", token),
    ("POST", "/{tenant}/oauth2/v2.0/devicecode", devicecode),
    ("GET", "/devicelogin", devicelogin),
]
