"""Drive routes and pre-authenticated URLs of the Graph simulator.

Contract 3.5/3.6: a channel's files folder; small uploads (``PUT .../{parent}:/{name}:/content``, 201);
upload sessions (``createUploadSession`` 200; chunk PUTs in order, 320 KiB multiples except the last,
under 60 MiB; 202 with nextExpectedRanges, then 201 + driveItem; 416 on a re-sent range; GET to
resume; DELETE 204); ``/content`` answers 302 to a pre-authenticated download URL.

Upload and download URLs (Outlook's too) live on the simulator's *other* host name (``localhost``
when it serves ``127.0.0.1``), so they are a different origin from Graph, as in production: an HTTP
client that follows the 302 drops the Authorization header, and these URLs refuse one (401).
"""

from __future__ import annotations

import datetime as dt
import mimetypes
import re
import secrets
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from aiohttp import web

from fleetbox.graph import sim_mail
from fleetbox.graph.sim_common import (
    BODY,
    DRIVE_CHUNK_MULTIPLE,
    MAX_DRIVE_CHUNK_BYTES,
    MAX_OUTLOOK_CHUNK_BYTES,
    DriveFile,
    GraphError,
    TokenKind,
    UploadSession,
    iso,
    json_response,
    monotonic,
    read_json,
    utc_now,
)

if TYPE_CHECKING:
    from fleetbox.graph.sim_state import SimState

#: small uploads (PUT .../content) are limited to 250 MB
MAX_SIMPLE_UPLOAD_BYTES = 250 * 1024 * 1024
DOWNLOAD_URL_SECONDS = 300.0
_ITEM_PATH = re.compile(r"^(?P<parent>[^:/]+):/(?P<name>[^:]+):/(?P<action>content|createUploadSession)$")
#: the path form of /me/drive: ``root:/{folder/path/name}:/{action}``, exactly two colons
_ME_PATH = re.compile(r"^root:/(?P<path>[^:]+):/(?P<action>content|createUploadSession)$")
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
CONFLICT_BEHAVIORS = ("fail", "replace", "rename")


def _item_id() -> str:
    return "01" + "".join(secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(32))


def _folder_item(sim: SimState, drive_id: str, name: str, web_url: str) -> DriveFile:
    now = iso(utc_now())
    item_id = _item_id()
    item = {
        "id": item_id,
        "name": name,
        "createdDateTime": now,
        "lastModifiedDateTime": now,
        "webUrl": web_url,
        "size": 0,
        "parentReference": {"driveId": drive_id, "driveType": "documentLibrary"},
        "fileSystemInfo": {"createdDateTime": now, "lastModifiedDateTime": now},
        "folder": {"childCount": 0},
    }
    folder = DriveFile(drive_id=drive_id, parent_id="", name=name, item=item, folder=True)
    sim.drive_items[item_id] = folder
    return folder


def _team_drive(sim: SimState, team: str) -> str:
    drive_id = sim.teams_drives.get(team)
    if drive_id is None:
        drive_id = sim.teams_drives[team] = "b!" + secrets.token_urlsafe(48)
        root = _folder_item(sim, drive_id, "root", f"{sim.authority_host}/sites/{team}/Shared%20Documents")
        root.item["root"] = {}
    return drive_id


def _user_drive(sim: SimState, user: str) -> str:
    """The OneDrive of a user (created on first use, as provisioning does)."""
    key = f"user:{user.lower()}"
    drive_id = sim.teams_drives.get(key)
    if drive_id is None:
        drive_id = sim.teams_drives[key] = "b!" + secrets.token_urlsafe(48)
        root = _folder_item(sim, drive_id, "root", f"{sim.authority_host}/personal/{quote(user)}/Documents")
        root.item["root"] = {}
    return drive_id


def _folder_at(sim: SimState, drive_id: str, segments: list[str]) -> DriveFile:
    """The folder at a path under the drive's root; missing folders are created, as Graph does for a
    path-based upload."""
    folder = _root(sim, drive_id)
    for name in segments:
        child = next(
            (
                e
                for e in sim.drive_items.values()
                if e.drive_id == drive_id
                and e.folder
                and e.parent_id == folder.item["id"]
                and e.name.lower() == name.lower()
            ),
            None,
        )
        if child is None:
            child = _folder_item(sim, drive_id, name, f"{folder.item['webUrl']}/{quote(name)}")
            child.parent_id = folder.item["id"]
            folder.item["folder"]["childCount"] = folder.item["folder"].get("childCount", 0) + 1
        folder = child
    return folder


def _me_target(sim: SimState, request: web.Request, action: str) -> tuple[str, DriveFile, str]:
    """``/me/drive/root:/{path}:/{action}``: the drive, the parent folder and the file name."""
    token = sim.authorize(request)
    if token.kind is not TokenKind.DELEGATED:
        raise GraphError(400, "BadRequest", "/me request is only valid with delegated authentication flow.")
    match = _ME_PATH.match(request.match_info["path"])
    if match is None or match["action"] != action:
        raise GraphError(
            400, "invalidRequest", f"Use /me/drive/root:/{{path/to/filename}}:/{action} (one path between two colons)."
        )
    *folders, name = [unquote(s) for s in match["path"].split("/") if s]
    drive_id = _user_drive(sim, token.subject)
    return drive_id, _folder_at(sim, drive_id, folders), name


async def me_drive_put(sim: SimState, request: web.Request) -> web.StreamResponse:
    """``PUT /me/drive/root:/{path}/{name}:/content``: a small upload to the signed-in user's OneDrive."""
    drive_id, parent, name = _me_target(sim, request, "content")
    data: bytes = request[BODY]
    if len(data) > MAX_SIMPLE_UPLOAD_BYTES:
        raise GraphError(
            413, "RequestEntityTooLarge", "PUT content supports files up to 250 MB; use an upload session."
        )
    conflict = _conflict(request.query.get("@microsoft.graph.conflictBehavior"))
    stored, status = _commit(sim, drive_id, parent, name, data, conflict)
    return json_response(_item_json(sim, stored), status=status)


async def me_drive_post(sim: SimState, request: web.Request) -> web.StreamResponse:
    """``POST /me/drive/root:/{path}/{name}:/createUploadSession`` (200)."""
    drive_id, parent, name = _me_target(sim, request, "createUploadSession")
    return _open_session(sim, request, drive_id, parent.item["id"], name)


def _root(sim: SimState, drive_id: str) -> DriveFile:
    for entry in sim.drive_items.values():
        if entry.drive_id == drive_id and entry.folder and "root" in entry.item:
            return entry
    raise GraphError(404, "itemNotFound", f"Drive '{drive_id}' was not found.")


async def files_folder(sim: SimState, request: web.Request) -> web.StreamResponse:
    """``GET /teams/{team-id}/channels/{channel-id}/filesFolder``: the channel's folder driveItem."""
    sim.authorize(request)
    team, channel = request.match_info["team_id"], request.match_info["channel_id"]
    drive_id = _team_drive(sim, team)
    name = channel.removeprefix("19:").split("@", 1)[0] or "General"
    for entry in sim.drive_items.values():
        if entry.drive_id == drive_id and entry.folder and entry.item.get("channel") == channel:
            folder = entry
            break
    else:
        root = _root(sim, drive_id)
        folder = _folder_item(sim, drive_id, name, f"{root.item['webUrl']}/{quote(name)}")
        folder.parent_id = root.item["id"]
        folder.item["channel"] = channel
    body = {k: v for k, v in folder.item.items() if k != "channel"}
    context = f"{sim.base_url}/$metadata#teams('{team}')/channels('{quote(channel, safe='')}')/filesFolder/$entity"
    return json_response({"@odata.context": context, **body})


def _parent(sim: SimState, drive_id: str, parent_id: str) -> DriveFile:
    if parent_id == "root":
        return _root(sim, drive_id)
    parent = sim.drive_items.get(parent_id)
    if parent is None or parent.drive_id != drive_id or not parent.folder:
        raise GraphError(404, "itemNotFound", f"The parent item '{parent_id}' was not found in drive '{drive_id}'.")
    return parent


def _commit(
    sim: SimState, drive_id: str, parent: DriveFile, name: str, data: bytes, conflict: str
) -> tuple[DriveFile, int]:
    """Store a file under ``parent``; return it and the status (201 new, 200 replaced)."""
    existing = next(
        (
            e
            for e in sim.drive_items.values()
            if e.drive_id == drive_id and e.parent_id == parent.item["id"] and e.name.lower() == name.lower()
        ),
        None,
    )
    if existing is not None and conflict == "fail":
        raise GraphError(409, "nameAlreadyExists", "The specified item name already exists.")
    if existing is not None and conflict == "rename":
        stem, dot, ext = name.rpartition(".")
        stem, ext = (stem, dot + ext) if stem else (name, "")
        taken = {e.name.lower() for e in sim.drive_items.values() if e.parent_id == parent.item["id"]}
        n = 1
        while f"{stem} {n}{ext}".lower() in taken:
            n += 1
        name, existing = f"{stem} {n}{ext}", None
    now = iso(utc_now())
    if existing is not None:
        existing.version += 1
        existing.data = data
        guid = existing.item["eTag"].split("{", 1)[1].split("}", 1)[0]
        existing.item.update(
            size=len(data),
            lastModifiedDateTime=now,
            eTag=f'"{{{guid}}},{existing.version}"',
            cTag=f'"c:{{{guid}}},{existing.version}"',
        )
        return existing, 200
    guid = str(uuid.uuid4()).upper()
    item_id = _item_id()
    item = {
        "id": item_id,
        "name": name,
        "size": len(data),
        "eTag": f'"{{{guid}}},1"',
        "cTag": f'"c:{{{guid}}},1"',
        "webUrl": f"{parent.item['webUrl']}/{quote(name)}",
        "createdDateTime": now,
        "lastModifiedDateTime": now,
        "createdBy": {"user": {"displayName": sim.user}},
        "file": {"mimeType": mimetypes.guess_type(name)[0] or "application/octet-stream"},
        "fileSystemInfo": {"createdDateTime": now, "lastModifiedDateTime": now},
        "parentReference": {
            "driveId": drive_id,
            "driveType": "documentLibrary",
            "id": parent.item["id"],
            "path": f"/drives/{drive_id}/root:" + ("" if "root" in parent.item else f"/{parent.name}"),
        },
    }
    stored = DriveFile(drive_id=drive_id, parent_id=parent.item["id"], name=name, item=item, data=data)
    sim.drive_items[item_id] = stored
    parent.item["folder"]["childCount"] = parent.item["folder"].get("childCount", 0) + 1
    return stored, 201


def _conflict(value: object) -> str:
    behavior = str(value or "replace")
    if behavior not in CONFLICT_BEHAVIORS:
        raise GraphError(
            400, "invalidRequest", f"@microsoft.graph.conflictBehavior must be one of {CONFLICT_BEHAVIORS}."
        )
    return behavior


def _item_json(sim: SimState, stored: DriveFile) -> dict[str, Any]:
    return {"@odata.context": f"{sim.base_url}/$metadata#drives('{stored.drive_id}')/items/$entity", **stored.item}


async def drive_item_put(sim: SimState, request: web.Request) -> web.StreamResponse:
    """``PUT /drives/{drive-id}/items/{parent-id}:/{name}:/content``: a small upload (201, or 200 on replace)."""
    sim.authorize(request)
    drive_id = request.match_info["drive_id"]
    match = _ITEM_PATH.match(request.match_info["path"])
    if match is None or match["action"] != "content":
        raise GraphError(400, "invalidRequest", "Use PUT /drives/{drive-id}/items/{parent-id}:/{filename}:/content.")
    data: bytes = request[BODY]
    if len(data) > MAX_SIMPLE_UPLOAD_BYTES:
        raise GraphError(
            413, "RequestEntityTooLarge", "PUT content supports files up to 250 MB; use an upload session."
        )
    parent = _parent(sim, drive_id, match["parent"])
    conflict = _conflict(request.query.get("@microsoft.graph.conflictBehavior"))
    stored, status = _commit(sim, drive_id, parent, match["name"], data, conflict)
    return json_response(_item_json(sim, stored), status=status)


async def drive_item_post(sim: SimState, request: web.Request) -> web.StreamResponse:
    """``POST /drives/{drive-id}/items/{parent-id}:/{name}:/createUploadSession`` (200)."""
    sim.authorize(request)
    drive_id = request.match_info["drive_id"]
    match = _ITEM_PATH.match(request.match_info["path"])
    if match is None or match["action"] != "createUploadSession":
        raise GraphError(400, "invalidRequest", "Use POST .../items/{parent-id}:/{filename}:/createUploadSession.")
    _parent(sim, drive_id, match["parent"])
    return _open_session(sim, request, drive_id, match["parent"], match["name"])


def _open_session(sim: SimState, request: web.Request, drive_id: str, parent_id: str, name: str) -> web.StreamResponse:
    body: bytes = request[BODY]
    payload = read_json(body) if body else {}
    item = payload.get("item", {})
    if not isinstance(item, dict):
        raise GraphError(400, "invalidRequest", "item must be an object.")
    defer = payload.get("deferCommit", False)
    if not isinstance(defer, bool):
        raise GraphError(400, "invalidRequest", "deferCommit must be a Boolean.")
    session_id = sim.new_token()
    session = UploadSession(
        id=session_id,
        kind="drive",
        size=-1,
        expires=utc_now() + dt.timedelta(hours=24),
        name=str(item.get("name") or name),
        drive_id=drive_id,
        parent_id=parent_id,
        conflict_behavior=_conflict(item.get("@microsoft.graph.conflictBehavior")),
        defer_commit=defer,
        auth_token=sim.new_token(),
    )
    file_size = item.get("fileSize")
    if isinstance(file_size, int) and not isinstance(file_size, bool):
        session.size = file_size
    sim.upload_sessions[session_id] = session
    return json_response(
        {
            "uploadUrl": f"{sim.pre_auth_origin}/_upload/{session_id}?authtoken={session.auth_token}",
            "expirationDateTime": iso(session.expires),
            "nextExpectedRanges": ["0-"],
        }
    )


async def drive_item_get(sim: SimState, request: web.Request) -> web.StreamResponse:
    """``GET /drives/{drive-id}/items/{item-id}`` (JSON) and ``.../{item-id}/content`` (302 to the bytes)."""
    sim.authorize(request)
    drive_id, path = request.match_info["drive_id"], request.match_info["path"]
    item_id, _, action = path.partition("/")
    stored = sim.drive_items.get(item_id)
    if stored is None or stored.drive_id != drive_id or action not in ("", "content"):
        raise GraphError(404, "itemNotFound", "The resource could not be found.")
    if stored.folder and action == "content":
        raise GraphError(400, "invalidRequest", "A folder has no content.")
    token = sim.new_token()
    sim.downloads[token] = (item_id, monotonic() + DOWNLOAD_URL_SECONDS)
    url = f"{sim.pre_auth_origin}/_download/{token}"
    if action == "content":
        return web.Response(status=302, headers={"Location": url})
    body = _item_json(sim, stored)
    if not stored.folder:
        body["@microsoft.graph.downloadUrl"] = url
    return json_response(body)


def _session(sim: SimState, request: web.Request) -> UploadSession:
    sim.refuse_authorization_header(request)
    session = sim.upload_sessions.get(request.match_info["session_id"])
    if session is None or session.expires <= utc_now():
        raise GraphError(404, "itemNotFound", "The upload session was not found or has expired.")
    if session.auth_token and request.query.get("authtoken") != session.auth_token:
        raise GraphError(401, "unauthenticated", "The upload URL's authtoken is missing or wrong: use it verbatim.")
    return session


def _progress(sim: SimState, session: UploadSession, status: int) -> web.Response:
    done = len(session.received)
    if session.kind == "outlook":
        context = (
            f"{sim.pre_auth_origin}/api/v2.0/$metadata#Users('{session.mailbox}')/Messages('{session.message_id}')"
            "/AttachmentSessions/$entity"
        )
        body: dict[str, Any] = {
            "@odata.context": context,
            "ExpirationDateTime": iso(session.expires, 7),
            "nextExpectedRanges": [str(done)],
        }
    else:
        body = {
            "expirationDateTime": iso(session.expires),
            "nextExpectedRanges": [f"{done}-"] if done != session.size else [],
        }
    return json_response(body, status=status)


async def upload_put(sim: SimState, request: web.Request) -> web.StreamResponse:
    """``PUT {uploadUrl}``: the next fragment, in order, with ``Content-Range: bytes a-b/total``."""
    session = _session(sim, request)
    data: bytes = request[BODY]
    match = _CONTENT_RANGE.match(request.headers.get("Content-Range", ""))
    if match is None:
        raise GraphError(400, "invalidRequest", "A Content-Range header 'bytes {start}-{end}/{total}' is required.")
    start, end, total = (int(g) for g in match.groups())
    if end < start or end - start + 1 != len(data):
        raise GraphError(
            400, "invalidRequest", f"Content-Range covers {end - start + 1} bytes but the body has {len(data)}."
        )
    if session.size < 0:
        session.size = total
    if total != session.size:
        raise GraphError(400, "invalidRequest", f"The total in Content-Range must be {session.size} on every request.")
    if end >= total:
        raise GraphError(416, "invalidRange", "The fragment ends past the declared total size.")
    received = len(session.received)
    if start < received:
        raise GraphError(
            416, "invalidRange", "Uploaded fragment overlaps with existing data.", inner_code="fragmentOverlap"
        )
    if start > received:
        raise GraphError(
            416,
            "invalidRange",
            f"Fragments must be uploaded in order: expected {received}.",
            inner_code="fragmentOutOfOrder",
        )
    last = end + 1 == total
    if session.kind == "outlook" and len(data) > MAX_OUTLOOK_CHUNK_BYTES:
        raise GraphError(413, "RequestEntityTooLarge", "Upload at most 4 MB per request to an attachment session.")
    if session.kind == "drive":
        if len(data) >= MAX_DRIVE_CHUNK_BYTES:
            raise GraphError(413, "RequestEntityTooLarge", "Each fragment must be smaller than 60 MiB.")
        if not last and len(data) % DRIVE_CHUNK_MULTIPLE:
            raise GraphError(
                400,
                "invalidRequest",
                f"Each fragment except the last must be a multiple of 320 KiB ({DRIVE_CHUNK_MULTIPLE} bytes).",
            )
    session.received.extend(data)
    if not last:
        return _progress(sim, session, 200 if session.kind == "outlook" else 202)
    if session.kind == "outlook":
        location = sim_mail.finish_upload(sim, session)
        del sim.upload_sessions[session.id]
        return web.Response(status=201, headers={"Location": location})
    if session.defer_commit:
        return _progress(sim, session, 202)
    return _finish_drive(sim, session)


def _finish_drive(sim: SimState, session: UploadSession) -> web.Response:
    del sim.upload_sessions[session.id]
    parent = _parent(sim, session.drive_id, session.parent_id)
    stored, status = _commit(
        sim, session.drive_id, parent, session.name, bytes(session.received), session.conflict_behavior
    )
    return json_response(_item_json(sim, stored), status=status)


async def upload_get(sim: SimState, request: web.Request) -> web.StreamResponse:
    """``GET {uploadUrl}``: the session's status, to resume after a crash (200 + nextExpectedRanges)."""
    return _progress(sim, _session(sim, request), 200)


async def upload_delete(sim: SimState, request: web.Request) -> web.StreamResponse:
    """``DELETE {uploadUrl}``: cancel the session (204)."""
    session = _session(sim, request)
    del sim.upload_sessions[session.id]
    return web.Response(status=204)


async def upload_commit(sim: SimState, request: web.Request) -> web.StreamResponse:
    """``POST {uploadUrl}`` with ``Content-Length: 0``: commit a deferCommit drive session (201)."""
    session = _session(sim, request)
    if session.kind != "drive" or not session.defer_commit:
        raise GraphError(400, "invalidRequest", "Only a deferCommit drive upload session is committed with POST.")
    if len(session.received) != session.size:
        raise GraphError(400, "invalidRequest", "The upload is not complete yet.")
    return _finish_drive(sim, session)


async def download(sim: SimState, request: web.Request) -> web.StreamResponse:
    """``GET {downloadUrl}``: the file's bytes (206 for a ``Range``), no Authorization header allowed."""
    sim.refuse_authorization_header(request)
    entry = sim.downloads.get(request.match_info["token"])
    if entry is None or entry[1] <= monotonic() or entry[0] not in sim.drive_items:
        raise GraphError(404, "itemNotFound", "The download URL is unknown or has expired.")
    stored = sim.drive_items[entry[0]]
    mime = stored.item.get("file", {}).get("mimeType", "application/octet-stream")
    match = _RANGE.match(request.headers.get("Range", ""))
    size = len(stored.data)
    if match and size and (match[1] or match[2]):
        if match[1]:
            first, last = int(match[1]), min(int(match[2]) if match[2] else size - 1, size - 1)
        else:
            first, last = max(size - int(match[2]), 0), size - 1
        if first > last:
            return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
        return web.Response(
            status=206,
            body=stored.data[first : last + 1],
            headers={"Content-Type": mime, "Content-Range": f"bytes {first}-{last}/{size}"},
        )
    return web.Response(body=stored.data, headers={"Content-Type": mime})


ROUTES = [
    ("GET", "/v1.0/teams/{team_id}/channels/{channel_id}/filesFolder", files_folder),
    ("PUT", "/v1.0/drives/{drive_id}/items/{path:.+}", drive_item_put),
    ("POST", "/v1.0/drives/{drive_id}/items/{path:.+}", drive_item_post),
    ("GET", "/v1.0/drives/{drive_id}/items/{path:.+}", drive_item_get),
    ("PUT", "/v1.0/me/drive/{path:.+}", me_drive_put),
    ("POST", "/v1.0/me/drive/{path:.+}", me_drive_post),
    ("PUT", "/_upload/{session_id}", upload_put),
    ("GET", "/_upload/{session_id}", upload_get),
    ("DELETE", "/_upload/{session_id}", upload_delete),
    ("POST", "/_upload/{session_id}", upload_commit),
    ("GET", "/_download/{token}", download),
]
