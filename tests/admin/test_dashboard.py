"""The dashboard's server side: its page and files, sign-in sessions, CSRF and origin checks, and
the mount prefix (the browser tests in tests/browser drive the same through Chromium)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from http.cookies import SimpleCookie
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given
from hypothesis import settings as settings_
from hypothesis import strategies as st

from fleetbox.admin import ApplianceInfo, build_app
from fleetbox.admin.auth import KeyCheck, KeyThrottle, ThrottleRule
from fleetbox.admin.dashboard import COOKIE, CSP, CSRF_HEADER, SESSION_SECONDS, Sessions
from fleetbox.client import Client
from fleetbox.config import AdminSettings, Settings
from fleetbox.store import Store
from tests.admin import conftest
from tests.admin.conftest import ADMIN_KEY, READ_KEY, Api, ApiFactory, admin_section
from tests.admin.test_hostile import bodies, failures, header_text, json_values
from tests.conftest import SCHEMA

__all__ = ["failures"]  # a fixture

#: a queue of the spec, registered in every test database
WORK = "webhooks"


async def sign_in(api: Api, key: str, name: str = "alice", **headers: str) -> tuple[str, str]:
    """The session cookie's value and the CSRF token."""
    response = await api.post("/ui/session", json={"key": key, "name": name}, headers=headers)
    assert response.status == 200, await response.text()
    body = await response.json()
    api.session.cookie_jar.clear()  # each request below says which cookie it sends
    return response.cookies[COOKIE].value, body["csrfToken"]


def cookie_header(token: str) -> dict[str, str]:
    return {"Cookie": f"{COOKIE}={token}"}


async def test_the_page_and_its_files_are_served_with_a_strict_policy(api: Api) -> None:
    page = await api.get("/ui/")
    assert page.status == 200 and page.content_type == "text/html"
    assert page.headers["Content-Security-Policy"] == CSP
    assert "'unsafe-inline'" not in CSP and "script-src 'self'" in CSP
    html = await page.text()
    assert '<script type="module" src="app.js">' in html and "<style" not in html and " style=" not in html
    for name, kind in (("app.js", "text/javascript"), ("style.css", "text/css"), ("icon.svg", "image/svg+xml")):
        response = await api.get(f"/ui/{name}")
        assert response.status == 200 and response.content_type == kind
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert (await api.get("/ui/../server.py")).status == 404
    assert (await api.get("/ui/dashboard.py")).status == 404
    redirect = await api.get("/ui", allow_redirects=False)
    assert redirect.status == 302 and redirect.headers["Location"] == "ui/"  # relative: holds behind a prefix


async def test_the_admin_key_opens_an_admin_session_in_an_http_only_strict_cookie(api: Api) -> None:
    response = await api.post("/ui/session", json={"key": ADMIN_KEY, "name": "alice"})
    assert response.status == 200
    body = await response.json()
    assert body["access"] == "admin" and body["name"] == "alice" and body["csrfToken"]
    morsel = SimpleCookie(response.headers["Set-Cookie"])[COOKIE]
    assert morsel["httponly"] and morsel["samesite"] == "Strict" and morsel["path"] == "/"
    assert int(morsel["max-age"]) == SESSION_SECONDS
    assert ADMIN_KEY not in response.headers["Set-Cookie"] and ADMIN_KEY not in await response.text()
    api.session.cookie_jar.clear()
    token, csrf = morsel.value, body["csrfToken"]
    assert (await api.get("/api/queue/stats", headers=cookie_header(token))).status == 200
    paused = await api.post(f"/api/queue/{WORK}/pause", headers={**cookie_header(token), CSRF_HEADER: csrf})
    assert paused.status == 200 and (await paused.json())["paused"] is True


async def test_a_read_session_reads_and_cannot_act(api: Api) -> None:
    token, csrf = await sign_in(api, READ_KEY)
    assert (await api.get("/ui/session", headers=cookie_header(token))).status == 200
    assert (await api.get(f"/api/queue/{WORK}/jobs", headers=cookie_header(token))).status == 200
    refused = await api.post(f"/api/queue/{WORK}/pause", headers={**cookie_header(token), CSRF_HEADER: csrf})
    assert refused.status == 403 and (await refused.json())["error"]["code"] == "read_only_key"
    stats = await (await api.get("/api/queue/stats", headers=cookie_header(token))).json()
    assert stats is not None


async def test_a_wrong_or_missing_key_opens_no_session(api: Api) -> None:
    wrong = await api.post("/ui/session", json={"key": "nope", "name": "mallory"})
    assert wrong.status == 403 and (await wrong.json())["error"]["code"] == "invalid_key"
    assert COOKIE not in wrong.cookies
    for odd in ("\ud800", "\udcff", "\u0000", "k" * 100_000):
        response = await api.post(
            "/ui/session", data=json.dumps({"key": odd}), headers={"Content-Type": "application/json"}
        )
        assert response.status == 403, odd[:10]
    missing = await api.post("/ui/session", json={"name": "mallory"})
    assert missing.status == 401 and COOKIE not in missing.cookies
    as_form = await api.post("/ui/session", data={"key": ADMIN_KEY})
    assert as_form.status == 400  # only JSON: a cross-site form cannot sign anyone in
    assert (await api.get("/ui/session")).status == 401


async def test_an_action_needs_the_csrf_token_of_its_own_session(api: Api) -> None:
    token, csrf = await sign_in(api, ADMIN_KEY)
    other_token, other_csrf = await sign_in(api, ADMIN_KEY, name="bob")
    for headers in (
        {},
        {CSRF_HEADER: ""},
        {CSRF_HEADER: "x" * len(csrf)},
        {CSRF_HEADER: other_csrf},
        {CSRF_HEADER: "é"},
    ):
        response = await api.post(f"/api/queue/{WORK}/pause", headers={**cookie_header(token), **headers})
        assert response.status == 403 and (await response.json())["error"]["code"] == "csrf_refused"
    assert not (await (await api.get(f"/api/queue/{WORK}/jobs", headers=cookie_header(other_token))).json())["jobs"]
    # the API's own clients (a key header) need no token: they have no ambient credentials
    assert (await api.post(f"/api/queue/{WORK}/pause", headers={"x-admin-key": ADMIN_KEY})).status == 200


async def test_a_request_from_another_site_is_refused(api: Api) -> None:
    token, csrf = await sign_in(api, ADMIN_KEY)
    headers = {**cookie_header(token), CSRF_HEADER: csrf, "Origin": "https://evil.example"}
    response = await api.post(f"/api/queue/{WORK}/pause", headers=headers)
    assert response.status == 403 and (await response.json())["error"]["code"] == "csrf_refused"
    read = await api.get("/api/queue/stats", headers=headers)
    assert read.status == 403
    stream = await api.get("/api/queue/stream", headers={**headers, "Connection": "Upgrade", "Upgrade": "websocket"})
    assert stream.status == 403  # no cross-site WebSocket on the session either
    signin = await api.post("/ui/session", json={"key": ADMIN_KEY}, headers={"Origin": "https://evil.example"})
    assert signin.status == 403


async def test_a_forged_or_expired_cookie_is_a_401(api: Api) -> None:
    token, _csrf = await sign_in(api, READ_KEY)
    body, _, mac = token.partition(".")
    for bad in (f"{body}.{mac[:-2]}xx", f"{body[:-2]}.{mac}", "garbage", f"{body}.", "é.é"):
        response = await api.get("/api/queue/stats", headers=cookie_header(bad))
        assert response.status == 401, bad
    # a stale cookie does not shut anyone out of what needs no key
    assert (await api.get("/api/queue/health", headers=cookie_header("garbage"))).status == 200
    assert (await api.get("/api/queue/openapi.json", headers=cookie_header("garbage"))).status == 200
    settings = AdminSettings(key=ADMIN_KEY, read_key=READ_KEY)
    now = [1_000_000.0]
    sessions = Sessions(settings, KeyCheck(settings), clock=lambda: now[0])
    session = sessions.issue(admin=True, name="alice")
    assert sessions.read(session.token) == session
    assert sessions.read("\udcff.\udcff") is None  # undecodable header bytes arrive as surrogates
    now[0] += SESSION_SECONDS
    assert sessions.read(session.token) is None
    # a session cookie signed under other keys is refused: changing a key signs everybody out
    rotated = AdminSettings(key=ADMIN_KEY + "-new", read_key=READ_KEY)
    assert Sessions(rotated, KeyCheck(rotated)).read(sessions.issue(admin=True, name="a").token) is None


async def test_sign_out_needs_the_token_and_clears_the_cookie(api: Api) -> None:
    token, csrf = await sign_in(api, ADMIN_KEY)
    refused = await api.delete("/ui/session", headers=cookie_header(token))
    assert refused.status == 403
    response = await api.delete("/ui/session", headers={**cookie_header(token), CSRF_HEADER: csrf})
    assert response.status == 200
    assert response.cookies[COOKIE].value == ""


async def test_the_cookie_path_follows_the_mount_prefix(api_factory: ApiFactory) -> None:
    api = await api_factory()
    response = await api.post("/ui/session", json={"key": ADMIN_KEY}, headers={"X-Forwarded-Prefix": "/ops/fleetbox/"})
    assert SimpleCookie(response.headers["Set-Cookie"])[COOKIE]["path"] == "/ops/fleetbox/"
    hostile = await api.post("/ui/session", json={"key": ADMIN_KEY}, headers={"X-Forwarded-Prefix": "/x; Domain=evil"})
    assert SimpleCookie(hostile.headers["Set-Cookie"])[COOKIE]["path"] == "/"
    secure = await api.post("/ui/session", json={"key": ADMIN_KEY}, headers={"X-Forwarded-Proto": "https"})
    assert SimpleCookie(secure.headers["Set-Cookie"])[COOKIE]["secure"]
    configured = await api_factory(path_prefix="/fleet")
    response = await configured.post("/ui/session", json={"key": ADMIN_KEY}, headers={"X-Forwarded-Prefix": "/other"})
    assert SimpleCookie(response.headers["Set-Cookie"])[COOKIE]["path"] == "/fleet/"


async def test_wrong_keys_at_sign_in_are_throttled_with_the_apis(
    aiohttp_client: Any, client: Client, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(admin=admin_section())
    app = build_app(
        service=client.service,
        monitor=conftest.test_monitor(client),
        settings=settings,
        appliance_info=ApplianceInfo("test", "test:1:abc", "0.1.0"),
        key_throttle=KeyThrottle(ThrottleRule(2, 3600)),
    )
    api: Api = await aiohttp_client(app)
    for _ in range(2):
        assert (await api.post("/ui/session", json={"key": "guess"})).status == 403
    throttled = await api.post("/ui/session", json={"key": ADMIN_KEY})  # even the right key, while throttled
    assert throttled.status == 429 and (await throttled.json())["error"]["code"] == "too_many_wrong_keys"
    assert (await api.get("/api/queue/stats", headers={"x-admin-key": ADMIN_KEY})).status == 429


def test_arbitrary_sign_ins_cookies_and_headers_get_no_5xx(
    dsn: str, make_settings: Callable[..., Settings], failures: list[logging.LogRecord]
) -> None:
    loop = asyncio.new_event_loop()
    db = Store(dsn, schema=SCHEMA, min_size=1, max_size=4)
    loop.run_until_complete(db.open())
    client = Client(db)
    settings = make_settings(admin=admin_section())
    app = build_app(
        service=client.service,
        monitor=conftest.test_monitor(client),
        settings=settings,
        appliance_info=ApplianceInfo("test", "test:1:abc", "0.1.0"),
        key_throttle=KeyThrottle(ThrottleRule(10**6, 1)),
    )
    signer = Sessions(settings.admin, KeyCheck(settings.admin))
    api: Api = TestClient(TestServer(app), loop=loop)
    loop.run_until_complete(api.start_server())
    statuses: dict[int, int] = {}
    paths = [
        "/ui/session",
        "/ui/",
        "/ui",
        "/ui/app.js",
        "/api/queue/stats",
        f"/api/queue/{WORK}/pause",
        "/api/queue/jobs",
    ]
    cookies = st.one_of(
        header_text,
        st.builds(lambda admin, name: signer.issue(admin=admin, name=name).token, st.booleans(), st.text(max_size=80)),
    )
    heads = st.fixed_dictionaries(
        {},
        optional={
            "Cookie": cookies.map(lambda c: f"{COOKIE}={c}"),
            CSRF_HEADER: header_text,
            "Origin": st.sampled_from(["http://127.0.0.1", "null", "https://evil.example"]) | header_text,
            "X-Forwarded-Prefix": header_text,
            "X-Forwarded-Proto": header_text,
            "Content-Type": st.sampled_from(["application/json", "text/plain"]) | header_text,
        },
    )
    sign_in_bodies = st.one_of(
        bodies,
        st.fixed_dictionaries(
            {"key": st.sampled_from([ADMIN_KEY, READ_KEY, "wrong"]) | json_values}, optional={"name": json_values}
        ).map(json.dumps),
    )

    async def send(method: str, path: str, head: dict[str, str], body: str | None) -> None:
        response = await api.request(method, path, headers=head, data=body)
        text = await response.text()
        assert response.status < 500, (method, path, head, (body or "")[:200], response.status, text[:500])
        assert "Traceback" not in text
        statuses[response.status] = statuses.get(response.status, 0) + 1

    @settings_(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(
        method=st.sampled_from(["GET", "POST", "DELETE"]), path=st.sampled_from(paths), head=heads, body=sign_in_bodies
    )
    def check(method: str, path: str, head: dict[str, str], body: str | None) -> None:
        loop.run_until_complete(send(method, path, head, body))

    try:
        check()
    finally:
        loop.run_until_complete(api.close())
        loop.run_until_complete(db.close())
        loop.close()
    assert {200, 401, 403} <= set(statuses), statuses
    assert [r.getMessage() for r in failures] == []
