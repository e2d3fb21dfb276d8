"""The dashboard's server side: its page and files, sign-in sessions, CSRF and origin checks, and
the mount prefix (the browser tests in tests/browser drive the same through Chromium)."""

from __future__ import annotations

from http.cookies import SimpleCookie

from fleetbox.admin.auth import KeyCheck
from fleetbox.admin.dashboard import COOKIE, CSP, CSRF_HEADER, SESSION_SECONDS, Sessions
from fleetbox.config import AdminSettings
from tests.admin.conftest import ADMIN_KEY, READ_KEY, Api, ApiFactory

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
    missing = await api.post("/ui/session", json={"name": "mallory"})
    assert missing.status == 401 and COOKIE not in missing.cookies
    as_form = await api.post("/ui/session", data={"key": ADMIN_KEY})
    assert as_form.status == 400  # only JSON: a cross-site form cannot sign anyone in
    assert (await api.get("/ui/session")).status == 401


async def test_an_action_needs_the_csrf_token_of_its_own_session(api: Api) -> None:
    token, csrf = await sign_in(api, ADMIN_KEY)
    other_token, other_csrf = await sign_in(api, ADMIN_KEY, name="bob")
    for headers in ({}, {CSRF_HEADER: ""}, {CSRF_HEADER: "x" * len(csrf)}, {CSRF_HEADER: other_csrf}):
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
    for bad in (f"{body}.{mac[:-2]}xx", f"{body[:-2]}.{mac}", "garbage", f"{body}."):
        response = await api.get("/api/queue/stats", headers=cookie_header(bad))
        assert response.status == 401, bad
    settings = AdminSettings(key=ADMIN_KEY, read_key=READ_KEY)
    now = [1_000_000.0]
    sessions = Sessions(settings, KeyCheck(settings), clock=lambda: now[0])
    session = sessions.issue(admin=True, name="alice")
    assert sessions.read(session.token) == session
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
