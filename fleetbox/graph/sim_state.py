"""What the simulator's route modules may use of the simulator: its state and a few helpers.

The route modules (``sim_entra``, ``sim_teams``, ``sim_mail``, ``sim_files``, ``sim_webhooks``,
``sim_delta``) type their ``sim`` argument with this protocol, not with
:class:`~fleetbox.graph.simulator.GraphSimulator`, which imports them to build its routes: so no
module of the simulator imports another in a circle. mypy checks that ``GraphSimulator`` has all
of it where the routes are bound.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable
from typing import Any, Protocol

import aiohttp
from aiohttp import web

from fleetbox.graph.sim_common import (
    ActivityNotification,
    Delivery,
    DeltaState,
    DeviceFlow,
    DriveFile,
    MailAttachment,
    RefreshGrant,
    SentMail,
    TeamsLimits,
    TokenInfo,
    UploadSession,
)


class SimState(Protocol):
    """The simulator as its routes see it (see :class:`~fleetbox.graph.simulator.GraphSimulator`)."""

    tenant: str
    client_id: str
    client_secret: str
    user: str
    authority_host: str
    base_url: str
    pre_auth_origin: str
    audience: str
    token_lifetime_seconds: int
    min_upload_session_bytes: int
    notify_on_change: bool
    validation_timeout_seconds: float
    delivery_timeout_seconds: float
    notification_redeliveries: int
    device_code_interval_seconds: int
    auto_approve_device_codes: bool
    allow_http_notification_urls: bool
    teams_limits: TeamsLimits

    chat_messages: dict[str, list[dict[str, Any]]]
    channel_messages: dict[tuple[str, str], list[dict[str, Any]]]
    mailboxes: dict[str, dict[str, dict[str, dict[str, Any]]]]
    mail_attachments: dict[str, list[MailAttachment]]
    sent_mail: list[SentMail]
    drive_items: dict[str, DriveFile]
    upload_sessions: dict[str, UploadSession]
    subscriptions: dict[str, dict[str, Any]]
    activity_notifications: list[ActivityNotification]
    deliveries: list[Delivery]
    device_flows: dict[str, DeviceFlow]
    reauthorization_required: set[str]
    tokens: dict[str, TokenInfo]
    refresh_tokens: dict[str, RefreshGrant]
    delta: DeltaState
    teams_drives: dict[str, str]
    downloads: dict[str, tuple[str, float]]

    @property
    def http(self) -> aiohttp.ClientSession: ...

    def notification_ssl_context(self) -> ssl.SSLContext: ...

    def authorize(self, request: web.Request) -> TokenInfo: ...

    def refuse_authorization_header(self, request: web.Request) -> None: ...

    def rate_check(self, keys: list[tuple[tuple[str, ...], int]], at: float) -> None: ...

    def rate_accept(self, keys: list[tuple[tuple[str, ...], int]], at: float) -> None: ...

    def next_message_id(self) -> str: ...

    def new_token(self) -> str: ...

    def spawn(self, coro: Awaitable[None], name: str) -> None: ...
