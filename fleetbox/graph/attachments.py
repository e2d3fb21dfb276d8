"""attachments: file uploads to and downloads from Graph, at most five at once (the spec).

Files under 3 MB go in one request. Larger ones go through an upload session, in ordered chunks
of 10 x 320 KiB (Graph wants multiples of 320 KiB; Outlook wants at most 4 MB per chunk). The
session's URL and the offset reached are stored after every chunk, so the next attempt after a
crash or a failed chunk asks Graph for ``nextExpectedRanges`` and goes on from there instead of
starting over. Upload and download URLs are pre-authenticated: the bearer token never goes there.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fleetbox.errors import JobError, PermanentError, TransientError, ValidationError
from fleetbox.graph.client import GraphResponse
from fleetbox.graph.context import GraphContext, parse
from fleetbox.graph.tokens import TokenKind
from fleetbox.models import Job
from fleetbox.payloads import INLINE_ATTACHMENT_LIMIT, AttachmentOperation

#: 10 x 320 KiB: a multiple of 320 KiB (drive) and under 4 MB (Outlook)
CHUNK_BYTES = 10 * 320 * 1024


def _seg(value: str) -> str:
    return quote(value, safe=":@!$'()*+,;=")


async def transfer_attachment(ctx: GraphContext, job: Job) -> None:
    """Upload or download the job's file."""
    op = parse(AttachmentOperation, job)
    step = op.operation
    if await ctx.effect(job, step) is not None:
        return
    async with ctx.limiters.operation("attachments"):
        if op.operation == "upload":
            graph_id = await _upload(ctx, job, op)
            await ctx.record(job, step, graph_id, {"fileId": op.file_id, "source": op.source})
        else:
            size = await _download(ctx, op)
            await ctx.record(job, step, None, {"fileId": op.file_id, "bytes": size})


# -- upload -------------------------------------------------------------------------------


async def _upload(ctx: GraphContext, job: Job, op: AttachmentOperation) -> str | None:
    path = ctx.file_path(op.file_id)
    try:
        size = (await asyncio.to_thread(path.stat)).st_size
    except FileNotFoundError:
        raise ValidationError(f"fileId {op.file_id!r}: no such file in the attachments directory") from None
    if size == 0:
        raise ValidationError(f"fileId {op.file_id!r}: the file is empty")
    resource, key, token = _limits(ctx, op)
    if size < INLINE_ATTACHMENT_LIMIT:
        return await _upload_small(ctx, op, path, resource, key, token)
    return await _upload_session(ctx, job, op, path, size, resource, key, token)


def _limits(ctx: GraphContext, op: AttachmentOperation) -> tuple[str, str | None, TokenKind]:
    if op.source == "outlook":
        return "outlook", ctx.mailbox(op.user_id), TokenKind.APP
    if op.drive_id is None and op.team_id is None:
        return "files", None, TokenKind.DELEGATED  # the service account's own OneDrive
    return "files", None, TokenKind.APP


#: the folder of the service account's OneDrive that files go to when a job names no other
ONEDRIVE_FOLDER = "fleetbox"


async def _drive_target(ctx: GraphContext, op: AttachmentOperation) -> str:
    """The file's address in its drive, up to the colon before ``/content`` or
    ``/createUploadSession``: ``/drives/{d}/items/{parent}:/{name}:`` or, in the service account's
    OneDrive, the path form ``/me/drive/root:/fleetbox/{name}:`` (one path between two colons)."""
    name = _seg(op.file_name)
    if op.drive_id is not None and op.parent_id is not None:
        return f"/drives/{_seg(op.drive_id)}/items/{_seg(op.parent_id)}:/{name}:"
    if op.team_id is not None and op.channel_id is not None:
        folder = await ctx.graph.request(
            "GET", f"/teams/{_seg(op.team_id)}/channels/{_seg(op.channel_id)}/filesFolder", resource="files"
        )
        item = folder.json()
        return f"/drives/{_seg(item['parentReference']['driveId'])}/items/{_seg(item['id'])}:/{name}:"
    return f"/me/drive/root:/{ONEDRIVE_FOLDER}/{name}:"


async def _upload_small(
    ctx: GraphContext, op: AttachmentOperation, path: Path, resource: str, key: str | None, token: TokenKind
) -> str | None:
    data = await asyncio.to_thread(path.read_bytes)  # file I/O off the event loop
    if op.source == "outlook":
        assert op.user_id is not None and op.message_id is not None  # the payload checks this
        response = await ctx.graph.request(
            "POST",
            f"/users/{_seg(ctx.mailbox(op.user_id))}/messages/{_seg(op.message_id)}/attachments",
            resource=resource,
            key=key,
            token=token,
            json={
                "@odata.type": "#microsoft.graph.fileAttachment",
                "name": op.file_name,
                "contentType": op.content_type,
                "contentBytes": base64.b64encode(data).decode(),
            },
        )
    else:
        target = await _drive_target(ctx, op)
        response = await ctx.graph.request(
            "PUT",
            f"{target}/content",
            resource=resource,
            key=key,
            token=token,
            data=data,
            headers={"Content-Type": op.content_type},
        )
    return _id_of(response)


async def _upload_session(
    ctx: GraphContext,
    job: Job,
    op: AttachmentOperation,
    path: Path,
    size: int,
    resource: str,
    key: str | None,
    token: TokenKind,
) -> str | None:
    url, offset = await _resume(ctx, job, size)
    if url is None:
        url = await _open_session(ctx, op, size, resource, key, token)
        offset = 0
        await ctx.store.graph.save_upload(job.id, url, size, 0, None)
    while True:
        chunk = await asyncio.to_thread(_read_chunk, path, offset, min(CHUNK_BYTES, size - offset))
        if op.source == "outlook" and key is not None:
            await ctx.limiters.upload_bytes(key, len(chunk))  # Outlook: 150 MB per 5 min per mailbox
        end = offset + len(chunk) - 1
        response = await ctx.graph.request(
            "PUT",
            url,
            resource="uploads",
            token=None,
            data=chunk,
            headers={"Content-Range": f"bytes {offset}-{end}/{size}", "Content-Type": "application/octet-stream"},
        )
        if response.status == 201 or end + 1 >= size:
            await ctx.store.graph.forget_upload(job.id)
            return _id_of(response)
        offset = _next_offset(response.json(), end + 1)
        await ctx.store.graph.upload_progress(job.id, offset)


def _read_chunk(path: Path, offset: int, length: int) -> bytes:
    with path.open("rb") as file:
        file.seek(offset)
        return file.read(length)


async def _open_session(
    ctx: GraphContext, op: AttachmentOperation, size: int, resource: str, key: str | None, token: TokenKind
) -> str:
    if op.source == "outlook":
        assert op.message_id is not None  # the payload checks this
        messages = f"/users/{_seg(ctx.mailbox(op.user_id))}/messages"
        response = await ctx.graph.request(
            "POST",
            f"{messages}/{_seg(op.message_id)}/attachments/createUploadSession",
            resource=resource,
            key=key,
            token=token,
            json={
                "AttachmentItem": {
                    "attachmentType": "file",
                    "name": op.file_name,
                    "size": size,
                    "contentType": op.content_type,
                }
            },
        )
    else:
        target = await _drive_target(ctx, op)
        response = await ctx.graph.request(
            "POST",
            f"{target}/createUploadSession",
            resource=resource,
            key=key,
            token=token,
            json={"item": {"@microsoft.graph.conflictBehavior": "rename"}},
        )
    upload_url = response.json().get("uploadUrl")
    if not isinstance(upload_url, str):
        raise TransientError("Graph opened an upload session without an uploadUrl")
    return upload_url


async def _resume(ctx: GraphContext, job: Job, size: int) -> tuple[str | None, int]:
    """The session an earlier attempt left, and where Graph wants the next byte."""
    upload = await ctx.store.graph.upload(job.id)
    if upload is None:
        return None, 0
    if upload.total_bytes != size:
        await ctx.store.graph.forget_upload(job.id)  # the file changed: start over
        return None, 0
    url = upload.url
    try:
        status = await ctx.graph.request("GET", url, resource="uploads", token=None)
    except PermanentError:
        # The session expired or was cancelled (404), or this service does not report progress:
        # a new session is the only way on.
        await ctx.store.graph.forget_upload(job.id)
        return None, 0
    return url, _next_offset(status.json(), upload.next_offset)


def _next_offset(body: Any, fallback: int) -> int:
    ranges = body.get("nextExpectedRanges") or body.get("NextExpectedRanges") if isinstance(body, dict) else None
    if not ranges:
        return fallback
    first = str(ranges[0])
    try:
        return int(first.split("-", 1)[0])
    except ValueError:
        return fallback


def _id_of(response: GraphResponse) -> str | None:
    location = response.headers.get("Location")
    if response.body:
        with contextlib.suppress(ValueError):
            body = response.json()
            if isinstance(body, dict) and body.get("id"):
                return str(body["id"])
    if location:
        # Outlook's final chunk answers 201 with the attachment's URL: .../Attachments('<id>')
        return location.rsplit("('", 1)[-1].rstrip("')") if "('" in location else location
    return None


# -- download -----------------------------------------------------------------------------


async def _download(ctx: GraphContext, op: AttachmentOperation) -> int:
    target = ctx.file_path(op.file_id)
    if op.source == "teams":
        assert op.drive_id is not None and op.item_id is not None  # the payload checks this
        redirect = await ctx.graph.request(
            "GET",
            f"/drives/{_seg(op.drive_id)}/items/{_seg(op.item_id)}/content",
            resource="files",
            allow_redirects=False,
        )
        location = redirect.headers.get("Location")
        if redirect.status in (301, 302, 303, 307, 308) and location:
            # The pre-authenticated download URL: no bearer token goes there.
            response = await ctx.graph.request("GET", location, resource="uploads", token=None)
        else:
            response = redirect
    else:
        assert op.message_id is not None and op.attachment_id is not None  # the payload checks this
        mailbox = ctx.mailbox(op.user_id)
        response = await ctx.graph.request(
            "GET",
            f"/users/{_seg(mailbox)}/messages/{_seg(op.message_id)}/attachments/{_seg(op.attachment_id)}/$value",
            resource="outlook",
            key=mailbox,
        )
    await asyncio.to_thread(_write_atomically, target, response.body)
    return len(response.body)


def _write_atomically(target: Path, data: bytes) -> None:
    """Write a downloaded file owner-only (0600, in a 0700 directory): attachments are private."""
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        # Created 0600 from the first byte (no window in which it is readable by others), whatever
        # the umask; O_NOFOLLOW: a symlink planted at the partial name is not followed.
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.chmod(partial, 0o600)  # an older partial file of the same name kept its mode
        os.replace(partial, target)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise JobError(f"cannot write {target.name}: {exc.strerror}") from None
