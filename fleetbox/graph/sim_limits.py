"""Outlook's service limits in the Graph simulator: enforced as Graph does, and observed for tests.

Per app and mailbox, Graph allows 4 concurrent requests and 150 MB of uploads (the bodies of
POST, PUT and PATCH, and upload-session chunks) per 5 minutes; per app, 4 concurrent Outlook
requests whichever the mailboxes. Over a limit the request gets 429 ``ApplicationThrottled`` (the
upload budget with a Retry-After for when the bytes fit). :class:`OutlookLoad` keeps the peaks and
every accepted upload, so a test can assert a client never went over them.

The per-app concurrency is observed but not enforced by default (``concurrent_per_app=None``):
tests of other parts send to many mailboxes at once with bare clients.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from fleetbox.graph.sim_common import GraphError, UploadSession

#: Outlook applies its limits per app and mailbox; these routes belong to a mailbox
MAILBOX_ROUTE = re.compile(r"^/v1\.0/users/([^/]+)/(?:messages|sendMail|mailFolders)", re.IGNORECASE)
_UPLOAD_ROUTE = re.compile(r"^/_upload/([^/?]+)$")
_UPLOADS = frozenset({"POST", "PUT", "PATCH"})


@dataclass
class OutlookLimits:
    """The limits the simulator enforces (Graph's by default; tests scale them down)."""

    concurrent_per_mailbox: int = 4
    #: None: observed only
    concurrent_per_app: int | None = None
    upload_bytes: int = 150 * 1024 * 1024
    upload_period_seconds: float = 300.0


@dataclass
class OutlookLoad:
    """Outlook requests in flight and uploads accepted, per mailbox (lower case)."""

    limits: OutlookLimits = field(default_factory=OutlookLimits)
    in_flight: dict[str, int] = field(default_factory=dict)
    app_in_flight: int = 0
    #: the most requests to one mailbox at once, per mailbox
    peak_per_mailbox: dict[str, int] = field(default_factory=dict)
    #: the most Outlook requests at once, all mailboxes
    peak_app: int = 0
    #: mailbox -> (arrival, bytes) of every accepted upload, oldest first
    uploads: dict[str, list[tuple[float, int]]] = field(default_factory=dict)
    _window: dict[str, deque[tuple[float, int]]] = field(default_factory=dict)

    def enter(
        self, method: str, path: str, size: int, at: float, sessions: Mapping[str, UploadSession], *, enforce: bool
    ) -> str | None:
        """Admit one request arriving at ``at`` (or raise Graph's 429); return the mailbox it holds a
        slot of (give it back with :meth:`leave`), None when it holds none."""
        if (upload := _UPLOAD_ROUTE.match(path)) is not None:
            session = sessions.get(upload.group(1))
            if session is not None and session.kind == "outlook" and method == "PUT":
                self._upload(session.mailbox.lower(), size, at, enforce=enforce)
            return None
        match = MAILBOX_ROUTE.match(path)
        if match is None:
            return None
        mailbox = match.group(1).lower()
        limits = self.limits
        if enforce and self.in_flight.get(mailbox, 0) >= limits.concurrent_per_mailbox:
            raise GraphError(
                429, "ApplicationThrottled", "Application is over its MailboxConcurrency limit.", inner_error=False
            )
        if enforce and limits.concurrent_per_app is not None and self.app_in_flight >= limits.concurrent_per_app:
            raise GraphError(
                429, "ApplicationThrottled", "Application is over its concurrency limit.", inner_error=False
            )
        if method in _UPLOADS and size:
            self._upload(mailbox, size, at, enforce=enforce)
        self.in_flight[mailbox] = now = self.in_flight.get(mailbox, 0) + 1
        self.peak_per_mailbox[mailbox] = max(self.peak_per_mailbox.get(mailbox, 0), now)
        self.app_in_flight += 1
        self.peak_app = max(self.peak_app, self.app_in_flight)
        return mailbox

    def leave(self, mailbox: str | None) -> None:
        """The request :meth:`enter` admitted for ``mailbox`` has been answered."""
        if mailbox is not None:
            self.in_flight[mailbox] -= 1
            self.app_in_flight -= 1

    def _upload(self, mailbox: str, size: int, at: float, *, enforce: bool) -> None:
        window = self._window.setdefault(mailbox, deque())
        period = self.limits.upload_period_seconds
        while window and window[0][0] <= at - period:
            window.popleft()
        used = sum(n for _, n in window)
        if enforce and used + size > self.limits.upload_bytes:
            over, retry = used + size - self.limits.upload_bytes, period
            for sent, n in window:
                over -= n
                if over <= 0:
                    retry = sent + period - at
                    break
            raise GraphError(
                429,
                "ApplicationThrottled",
                "Application is over its upload limit for this mailbox.",
                inner_error=False,
                retry_after=str(max(1, round(retry + 0.5))),
            )
        window.append((at, size))
        self.uploads.setdefault(mailbox, []).append((at, size))

    def most_uploaded(self, mailbox: str, period: float) -> int:
        """The most bytes accepted into ``mailbox`` within any ``period`` seconds."""
        sent = self.uploads.get(mailbox.lower(), [])
        most, start, total = 0, 0, 0
        for at, size in sent:
            total += size
            while sent[start][0] <= at - period:
                total -= sent[start][1]
                start += 1
            most = max(most, total)
        return most
