"""Settings: command-line flags > environment > TOML file > defaults, built with pydantic-settings.

Environment variables are ``FLEETBOX_<SECTION>__<KEY>`` (for example ``FLEETBOX_POOLS__HIGH=40``)
plus the spec's own names (``DB_HOST``, ``DB_PORT``, ``DB_NAME``, ``DB_USER``, ``DB_PASSWORD``,
``DATABASE_URL``, ``ADMIN_KEY``, ``QUEUE_ARCHIVE_HOURS``, ``QUEUE_DELETE_DAYS``,
``QUEUE_MONITOR_INTERVAL``); a ``FLEETBOX_`` variable wins over the spec's name for the same key.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, quote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from fleetbox import cron as fleetbox_cron
from fleetbox import redaction, rules
from fleetbox.errors import ConfigError, InvalidInput
from fleetbox.logs import redact_dsn as redact_dsn  # the one DSN redaction, re-exported for callers
from fleetbox.models import Thresholds
from fleetbox.protocol import SOCKET_NAME

ENV_PREFIX = "FLEETBOX_"
DEFAULT_CONFIG_FILES = ("fleetbox.toml",)

#: The spec's environment variables and the setting each one sets.
SPEC_ENV: dict[str, tuple[str, ...]] = {
    "DATABASE_URL": ("database", "dsn"),
    "DB_HOST": ("database", "host"),
    "DB_PORT": ("database", "port"),
    "DB_NAME": ("database", "name"),
    "DB_USER": ("database", "user"),
    "DB_PASSWORD": ("database", "password"),
    "ADMIN_KEY": ("admin", "key"),
    "QUEUE_ARCHIVE_HOURS": ("retention", "archive_hours"),
    "QUEUE_DELETE_DAYS": ("retention", "delete_days"),
    "QUEUE_MONITOR_INTERVAL": ("monitor", "interval_seconds"),
    # The Azure SDKs' names for an app registration.
    "AZURE_TENANT_ID": ("graph", "tenant_id"),
    "AZURE_CLIENT_ID": ("graph", "client_id"),
    "AZURE_CLIENT_SECRET": ("graph", "client_secret"),
}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseSettings(_Section):
    """Where PostgreSQL is. With neither ``dsn`` nor ``host`` set, an embedded server is used."""

    dsn: SecretStr | None = None
    host: str | None = None
    port: int = Field(5432, ge=1, le=65535)
    name: str = "postgres"
    user: str = "postgres"
    password: SecretStr | None = None
    schema_name: str = Field("fleetbox", pattern=rf"^{rules.SCHEMA_NAME.pattern}$")
    pool_min: int = Field(2, ge=1)
    pool_max: int = Field(10, ge=2)
    #: the longest a call waits for a free pooled connection before it fails with a retryable
    #: error (a database at its connection limit must not hang an enqueue)
    acquire_timeout_seconds: float = Field(10.0, gt=0, le=600)
    #: the longest one statement may run (None: the server's statement_timeout)
    statement_timeout_seconds: float | None = Field(None, gt=0, le=3600)

    @field_validator("dsn")
    @classmethod
    def _valid_dsn(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_dsn(value.get_secret_value())
        return value

    @property
    def configured(self) -> bool:
        return self.dsn is not None or self.host is not None

    def resolved_dsn(self) -> str | None:
        """The DSN to connect with (holds the password: never log it)."""
        if self.dsn is not None:
            return self.dsn.get_secret_value()
        if self.host is None:
            return None
        auth = quote(self.user, safe="")
        if self.password is not None:
            auth += ":" + quote(self.password.get_secret_value(), safe="")
        # An IPv6 address goes in brackets, or its colons would read as a port.
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"postgresql://{auth}@{host}:{self.port}/{quote(self.name, safe='')}"


def _check_port(text: str) -> None:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"port must be a number from 1 to 65535, got {text[:12]!r}")


def check_dsn(dsn: str) -> str:
    """A ``postgresql://`` URL the driver can use; ValueError says what is wrong without echoing
    the DSN (it may hold a password)."""
    if not dsn.startswith(("postgresql://", "postgres://")):
        raise ValueError(
            "must be a URL such as postgresql://user:password@host:5432/dbname (a key=value DSN is not supported)"
        )
    try:
        parts = urlsplit(dsn)
    except ValueError as exc:  # "Invalid IPv6 URL": an unclosed bracket
        raise ValueError(
            f"malformed URL: {exc} (an IPv6 host goes in brackets: postgresql://u@[::1]:5432/db)"
        ) from None
    hostspec = parts.netloc.rpartition("@")[2]
    for host in hostspec.split(",") if hostspec else []:
        if host.startswith("["):
            inside, bracket, rest = host[1:].partition("]")
            if not bracket or not inside or (rest and not rest.startswith(":")):
                raise ValueError("malformed IPv6 host: write it in brackets, as [::1] or [::1]:5432")
            port = rest[1:]
        else:
            name, colon, port = host.rpartition(":")
            if colon and ":" in name:
                raise ValueError("an IPv6 host must be written in brackets, as [::1]:5432")
            if not colon:
                port = ""
        if port:
            _check_port(port)
    if parts.query:
        try:
            query = parse_qs(parts.query, strict_parsing=True)
        except ValueError:
            raise ValueError("malformed query string (expected key=value pairs joined by &)") from None
        for port in query.get("port", [])[-1:]:
            for one in port.split(","):
                _check_port(one)
    return dsn


def default_data_dir() -> Path:
    """Where the embedded PostgreSQL lives unless configured.

    As root it is /var/lib/fleetbox: the embedded server then runs as a separate system user that
    must be able to reach the directory, and a home directory is private.
    """
    if os.geteuid() == 0:
        return Path("/var/lib/fleetbox")
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "fleetbox"


class ApplianceSettings(_Section):
    """The appliance process."""

    name: str = Field(default_factory=lambda: os.uname().nodename)
    data_dir: Path = Field(default_factory=lambda: default_data_dir())
    lease_seconds: float = Field(30.0, gt=0)
    heartbeat_seconds: float = Field(10.0, gt=0)
    poll_seconds: float = Field(1.0, gt=0)
    reap_seconds: float = Field(5.0, gt=0)
    shutdown_grace_seconds: float = Field(30.0, ge=0)
    claim_batch: int = Field(100, ge=1)
    completion_batch: int = Field(500, ge=1)
    completion_flush_ms: float = Field(5.0, ge=0)
    #: the largest payload, as JSON text (every entry path: Python, CLI, HTTP, the SQL function)
    max_payload_bytes: int = Field(rules.DEFAULT_MAX_PAYLOAD_BYTES, ge=64, le=64 * 1_048_576)
    #: the deepest nesting of objects and arrays in a payload (every entry path)
    max_payload_depth: int = Field(rules.DEFAULT_MAX_PAYLOAD_DEPTH, ge=2, le=512)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"

    @model_validator(mode="after")
    def _heartbeat_within_lease(self) -> ApplianceSettings:
        if self.heartbeat_seconds >= self.lease_seconds:
            raise ValueError("heartbeat_seconds must be shorter than lease_seconds")
        return self

    def limits(self) -> rules.Limits:
        """The payload limits in force (written to the database for the SQL function too)."""
        return rules.Limits(max_payload_bytes=self.max_payload_bytes, max_payload_depth=self.max_payload_depth)


class PoolSettings(_Section):
    """Worker slots per priority tier: a flood in one tier never takes another tier's slots."""

    high: int = Field(20, ge=1, le=10_000)
    medium: int = Field(10, ge=1, le=10_000)
    low: int = Field(5, ge=1, le=10_000)


class RetryRule(_Section):
    """Retries for one error class: delay = base * factor**(retry-1), capped at max_seconds."""

    max_retries: int = Field(ge=0, le=100)
    base_seconds: float = Field(ge=0)
    factor: float = Field(2.0, ge=1)
    max_seconds: float = Field(3600.0, ge=0)


class RetryRuleOverride(_Section):
    max_retries: int | None = Field(None, ge=0, le=100)
    base_seconds: float | None = Field(None, ge=0)
    factor: float | None = Field(None, ge=1)
    max_seconds: float | None = Field(None, ge=0)


class RetrySettings(_Section):
    """The spec's retry rules by error class (validation/permanent errors never retry)."""

    rate_limited: RetryRule = RetryRule(max_retries=5, base_seconds=2, factor=2, max_seconds=300)
    transient: RetryRule = RetryRule(max_retries=5, base_seconds=1, factor=2, max_seconds=16)
    authentication: RetryRule = RetryRule(max_retries=1, base_seconds=0, factor=1, max_seconds=0)
    lease_expired: RetryRule = RetryRule(max_retries=3, base_seconds=0, factor=1, max_seconds=0)

    @model_validator(mode="before")
    @classmethod
    def _partial_rules(cls, data: Any) -> Any:
        # A rule given in part (say only max_retries) keeps this class's defaults for the rest.
        if not isinstance(data, Mapping):
            return data
        out = dict(data)
        for name, value in data.items():
            default = cls.model_fields[name].default if name in cls.model_fields else None
            if isinstance(value, Mapping) and isinstance(default, RetryRule):
                out[name] = {**default.model_dump(), **value}
        return out


class RetryOverrides(_Section):
    rate_limited: RetryRuleOverride | None = None
    transient: RetryRuleOverride | None = None
    authentication: RetryRuleOverride | None = None
    lease_expired: RetryRuleOverride | None = None


_HANDLER = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class RetryVariantSettings(_Section):
    """One arm of a queue's retry experiment (``[queues.<name>.retry_variants.<label>]``)."""

    #: its share of the queue's new jobs (weights are relative)
    weight: float = Field(1.0, gt=0, le=1000)
    #: the error classes its rules apply to (empty: every retried class); other classes follow the queue
    error_classes: list[Literal["rate_limited", "transient", "authentication", "lease_expired"]] = []
    #: its rules, over the queue's own (same keys as [retry])
    retry: RetryOverrides = RetryOverrides()


class QueueSettings(_Section):
    """A queue declared in the config file (a custom queue, or settings for one of the spec's)."""

    tier: Literal["high", "medium", "low"] | None = None
    #: ``package.module:function``, an ``async def handler(job)``
    handler: str | None = None
    max_attempts: int | None = Field(None, ge=1)
    retry: RetryOverrides = RetryOverrides()
    #: a retry experiment: each new job gets one variant, by a hash of its id (or of variant_key)
    retry_variants: dict[str, RetryVariantSettings] = {}
    #: a payload key whose value picks the variant (jobs of one user, say, all get the same one)
    variant_key: str | None = Field(None, min_length=1, max_length=200)
    #: fixed: the configured weights; bandit: weights follow Thompson sampling of the success rates
    variant_mode: Literal["fixed", "bandit"] = "fixed"
    #: a variant whose dead-letter rate passes this (with guardrail_min_jobs finished) is stopped
    guardrail_dead_rate: float = Field(0.5, gt=0, le=1)
    guardrail_min_jobs: int = Field(50, ge=1)
    #: JSON paths masked wherever this queue's payloads leave the appliance (None: the built-in
    #: default of a spec queue, if it has one; [] masks nothing). See fleetbox.redaction.
    redact: list[str] | None = None

    @field_validator("redact")
    @classmethod
    def _redact_paths(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        try:
            return list(redaction.check_paths(value))
        except redaction.PathError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("retry_variants")
    @classmethod
    def _labels(cls, value: dict[str, RetryVariantSettings]) -> dict[str, RetryVariantSettings]:
        for label in value:
            if not rules.valid_queue_name(label) or label == "default":
                raise ValueError(f"variant label {label!r:.40}: 1-63 of a-z, 0-9, '-', '_', '.' (not 'default')")
        return value

    @field_validator("handler")
    @classmethod
    def _handler_path(cls, value: str | None) -> str | None:
        if value is not None and not _HANDLER.match(value):
            raise ValueError("must look like package.module:function")
        return value


class AdminSettings(_Section):
    """The admin HTTP API (``fleetbox.admin``), served by the appliance process."""

    #: serve the admin API from `fleetbox run` and embedded appliances
    enabled: bool = True
    key: SecretStr | None = None
    read_key: SecretStr | None = None
    host: str = "127.0.0.1"
    #: 0: an ephemeral port (the bound one is logged and on ``Appliance.admin.port``)
    port: int = Field(8080, ge=0, le=65535)
    #: GET /api/queue/health without a key (every other read needs the admin or read-only key)
    health_public: bool = True
    #: the local control socket (the terminal UI attaches here); file permissions are its access
    #: control, so it is created owner-only. Unset: ``<appliance.data_dir>/admin.sock``.
    socket_path: Path | None = None
    #: serve the admin application on the unix socket too
    socket_enabled: bool = True
    #: where a reverse proxy mounts the admin API and dashboard (``/ops/fleetbox``); empty: the
    #: ``X-Forwarded-Prefix`` header, else the root. Only the dashboard's cookie path depends on it.
    path_prefix: str = Field("", pattern=r"^(/[A-Za-z0-9._~-]{1,64}){0,8}$")

    @field_validator("socket_path")
    @classmethod
    def _short_socket_path(cls, value: Path | None) -> Path | None:
        if value is not None and len(os.fsencode(value)) > 107:
            raise ValueError(f"a unix socket path may have at most 107 bytes, {value} has {len(os.fsencode(value))}")
        return value

    def control_socket(self, data_dir: Path) -> Path | None:
        """Where the control socket is (None when ``socket_enabled`` is false)."""
        if not self.socket_enabled:
            return None
        return self.socket_path if self.socket_path is not None else data_dir / SOCKET_NAME


def _check_cron(value: str) -> str:
    if not croniter.is_valid(value):
        raise ValueError(f"not a cron expression (minute hour day-of-month month day-of-week): {value!r}")
    return value


class RetentionSettings(_Section):
    """Keeping the job tables small: archive completed jobs, then delete them from the archive."""

    archive_hours: float = Field(24, gt=0)
    delete_days: float = Field(7, gt=0)
    #: when completed jobs older than archive_hours are archived (cron, in monitor.timezone)
    archive_cron: str = "30 * * * *"
    #: the weekly job-record cleanup: archive, then delete archived jobs older than delete_days
    cleanup_cron: str = "0 0 * * 0"
    #: rows moved or deleted per transaction
    batch: int = Field(10_000, ge=1, le=1_000_000)
    #: the daily cleanup of every other table that grows with traffic (ages below)
    prune_cron: str = "15 3 * * *"
    #: rate-limit waits and 429s (rate_limit_tracking)
    rate_events_days: float = Field(7, gt=0)
    #: alerts, once resolved (open ones stay)
    resolved_alerts_days: float = Field(90, gt=0)
    #: operator actions (audit_log)
    audit_days: float = Field(365, gt=0)
    #: dead letters an operator retried or discarded, with their job's record and attempts
    resolved_dead_letters_days: float = Field(90, gt=0)
    #: sync rounds (the latest complete one of each resource is always kept)
    sync_history_days: float = Field(30, gt=0)
    #: messages fetched from Graph, after their last change
    inbound_days: float = Field(30, gt=0)
    #: daily performance reports
    reports_days: float = Field(365, gt=0)
    #: appliances not seen since
    appliances_days: float = Field(7, gt=0)
    #: Graph subscriptions after they were removed, and upload sessions of finished jobs
    graph_days: float = Field(7, gt=0)
    #: schedule runs (what each cron tick did); a schedule's last tick and job stay on the schedule
    schedule_runs_days: float = Field(30, gt=0)
    #: what was sent to alert webhooks (alert_notifications)
    alert_notifications_days: float = Field(30, gt=0)

    _crons = field_validator("archive_cron", "cleanup_cron", "prune_cron")(_check_cron)


class MonitorSettings(_Section):
    """The monitoring schedule, the health figures and the alert thresholds."""

    interval_seconds: float = Field(60, gt=0)
    #: failure rate and processing time are taken over the attempts of this many last seconds
    window_seconds: float = Field(300, gt=0)
    #: queue depth is counted at most this often per process (health, stats)
    depth_cache_seconds: float = Field(2.0, ge=0)
    snapshot_seconds: float = Field(300, gt=0)
    report_cron: str = "0 0 * * *"
    stats_cleanup_cron: str = "0 2 * * *"
    stats_keep_days: float = Field(30, gt=0)
    #: the time zone the cron expressions are read in (an IANA name)
    timezone: str = "UTC"
    #: run the schedule in this process (each tick runs once across all processes that do)
    schedule: bool = True
    #: alert when a queue's due jobs have waited this long with no live appliance able to run them
    no_consumer_seconds: float = Field(300.0, gt=0)
    #: alert when a background task of an appliance has been failing (and restarting) this long
    task_failing_seconds: float = Field(60.0, gt=0)
    max_backlog: int = 1000
    max_failure_rate: float = 10.0
    max_processing_time: float = 60_000.0
    max_dead_letter_jobs: int = 50

    _crons = field_validator("report_cron", "stats_cleanup_cron")(_check_cron)

    @field_validator("max_backlog", "max_failure_rate", "max_processing_time", "max_dead_letter_jobs")
    @classmethod
    def _threshold(cls, value: object, info: Any) -> object:
        # The bounds of fleetbox.rules, as the API checks them.
        try:
            return rules.check_threshold(info.field_name, info.field_name, value)
        except InvalidInput as exc:
            raise ValueError(str(exc).removeprefix(f"{info.field_name}: ")) from None

    def thresholds(self) -> Thresholds:
        """The configured alert thresholds."""
        return Thresholds(
            max_backlog=self.max_backlog,
            max_failure_rate=self.max_failure_rate,
            max_processing_time=self.max_processing_time,
            max_dead_letter_jobs=self.max_dead_letter_jobs,
        )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as UTC or Europe/Berlin)") from None
        return value


class SubscriptionSettings(_Section):
    """A Graph change-notification subscription the appliance keeps alive."""

    source: Literal["teams", "outlook"]
    #: the Graph resource, e.g. "users/{id}/mailFolders('inbox')/messages" or "chats/getAllMessages"
    resource: str = Field(min_length=1)
    change_type: str = Field(
        "created,updated,deleted", pattern=r"^(created|updated|deleted)(,(created|updated|deleted))*$"
    )


#: The built-in fault profiles of ``[graph.simulator.faults]`` (``fleetbox run --simulate-faults``):
#: the value of every rate a profile sets; a key given in the table overrides its profile's value.
FAULT_PROFILES: dict[str, dict[str, float]] = {
    "none": {},
    # Graph throttles one request in ten, each time for the resource it was aimed at (a mailbox, a chat).
    "throttle": {"throttle_rate": 0.10, "retry_after_seconds": 3},
    # Entra stops issuing tokens for 90 s (a minute after start, then every 10 minutes) and Graph
    # answers every request 503 for 5 s every 2 minutes.
    "outage": {
        "entra_outage_seconds": 90,
        "entra_outage_after_seconds": 60,
        "entra_outage_every_seconds": 600,
        "unavailable_burst_seconds": 5,
        "unavailable_burst_every_seconds": 120,
    },
    # A bad day: all of the above at once, plus some of every per-request fault.
    "mixed": {
        "throttle_rate": 0.05,
        "retry_after_seconds": 3,
        "unavailable_rate": 0.02,
        "gateway_timeout_rate": 0.01,
        "unauthorized_rate": 0.01,
        "slow_rate": 0.02,
        "slow_seconds": 3,
        "drop_rate": 0.01,
        "entra_outage_seconds": 90,
        "entra_outage_after_seconds": 60,
        "entra_outage_every_seconds": 600,
        "unavailable_burst_seconds": 5,
        "unavailable_burst_every_seconds": 120,
    },
}
#: what a rate or window not set by the profile nor the table is
_FAULT_DEFAULTS: dict[str, float] = {
    "throttle_rate": 0.0,
    "retry_after_seconds": 2,
    "unavailable_rate": 0.0,
    "gateway_timeout_rate": 0.0,
    "unauthorized_rate": 0.0,
    "slow_rate": 0.0,
    "slow_seconds": 3,
    "drop_rate": 0.0,
    "entra_outage_seconds": 0,
    "entra_outage_after_seconds": 60,
    "entra_outage_every_seconds": 0,
    "unavailable_burst_seconds": 0,
    "unavailable_burst_every_seconds": 120,
}
#: the per-request faults together may hit at most this share of requests (more is no rehearsal:
#: nothing would get through)
MAX_FAULT_SHARE = 0.5


def _share() -> Any:
    """A share of requests: None (the profile's), or 0 to 1."""
    return Field(None, ge=0, le=1)


class SimulatedFaultSettings(_Section):
    """Faults the built-in Graph simulator injects (``[graph.simulator.faults]``), for rehearsals.

    ``profile`` starts from a built-in set of rates (:data:`FAULT_PROFILES`); any key given here
    overrides it. Rates are the share of Graph requests (0 to 1) answered with that fault; windows
    are seconds of the appliance's clock, counted from its start. Only the built-in simulator
    injects faults: with a real Graph configured the table is refused.
    """

    profile: Literal["none", "throttle", "outage", "mixed"] = "none"
    #: a seed makes the random faults repeat from run to run (None: different each run)
    seed: int | None = None
    #: a regular expression searched in "METHOD /v1.0/path": only matching Graph requests get the
    #: per-request faults and the 503 bursts (unset: every Graph request)
    routes: str | None = Field(None, min_length=1, max_length=500)
    #: 429 TooManyRequests with Retry-After; the resource (mailbox, chat, channel, else the URL)
    #: then stays throttled for Retry-After, as Graph keeps it
    throttle_rate: float | None = _share()
    retry_after_seconds: int | None = Field(None, ge=1, le=300)
    #: 503 serviceNotAvailable without Retry-After
    unavailable_rate: float | None = _share()
    #: 504 GatewayTimeout without Retry-After
    gateway_timeout_rate: float | None = _share()
    #: 401 InvalidAuthenticationToken: the token (one over a minute old) is revoked early
    unauthorized_rate: float | None = _share()
    #: answers that take slow_seconds longer
    slow_rate: float | None = _share()
    slow_seconds: float | None = Field(None, gt=0, le=60)
    #: connections closed without an answer (before the request is acted on)
    drop_rate: float | None = _share()
    #: Entra's token endpoint answers 503 for this long (0: no outage) ...
    entra_outage_seconds: float | None = Field(None, ge=0, le=3600)
    #: ... starting this long after the appliance starts ...
    entra_outage_after_seconds: float | None = Field(None, ge=0, le=86_400)
    #: ... and again this often (0: once)
    entra_outage_every_seconds: float | None = Field(None, ge=0, le=86_400)
    #: every Graph request is answered 503 for this long (0: no bursts) ...
    unavailable_burst_seconds: float | None = Field(None, ge=0, le=60)
    #: ... once in every this many seconds (the first burst ends one period after start)
    unavailable_burst_every_seconds: float | None = Field(None, gt=0, le=86_400)

    def value(self, name: str) -> float:
        """A rate or window in effect: the table's, else the profile's, else none."""
        given = getattr(self, name)
        if given is not None:
            return float(given)
        return float(FAULT_PROFILES[self.profile].get(name, _FAULT_DEFAULTS[name]))

    @property
    def active(self) -> bool:
        """Whether any fault is injected at all."""
        faults = ("throttle_rate", "unavailable_rate", "gateway_timeout_rate", "unauthorized_rate", "slow_rate")
        windows = ("drop_rate", "entra_outage_seconds", "unavailable_burst_seconds")
        return any(self.value(name) > 0 for name in faults + windows)

    @field_validator("routes")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"routes is not a regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SimulatedFaultSettings:
        rates = ("throttle_rate", "unavailable_rate", "gateway_timeout_rate", "unauthorized_rate", "drop_rate")
        share = sum(self.value(name) for name in rates)
        if share > MAX_FAULT_SHARE:
            raise ValueError(
                f"the per-request fault rates ({', '.join(rates)}) add up to {share:g}; at most "
                f"{MAX_FAULT_SHARE:g}, or nothing gets through"
            )
        every = self.value("entra_outage_every_seconds")
        if every and every <= self.value("entra_outage_seconds"):
            raise ValueError("entra_outage_every_seconds must be longer than entra_outage_seconds (or 0: once)")
        if self.value("unavailable_burst_every_seconds") <= self.value("unavailable_burst_seconds"):
            raise ValueError("unavailable_burst_every_seconds must be longer than unavailable_burst_seconds")
        return self


class SimulatorSettings(_Section):
    """The built-in Graph simulator (``[graph.simulator]``): used when no credentials are configured."""

    faults: SimulatedFaultSettings = SimulatedFaultSettings()


class GraphSettings(_Section):
    """Microsoft Graph: the app registration, where Graph and Entra are, and the webhook receiver.

    With no ``tenant_id``/``client_id`` (and ``simulate`` not false), the Graph-backed queues are
    served by the built-in simulator and nothing leaves the machine.
    """

    #: serve the spec's Graph-backed queues (false: they run only handlers configured for them)
    enabled: bool = True
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    #: a PEM file holding the certificate's private key (instead of a client secret)
    certificate_path: Path | None = None
    certificate_thumbprint: str | None = None
    #: the Entra host (national clouds: https://login.microsoftonline.us, https://login.chinacloudapi.cn)
    authority_host: str = "https://login.microsoftonline.com"
    #: the Graph root (national clouds: https://graph.microsoft.us/v1.0, https://microsoftgraph.chinacloudapi.cn/v1.0)
    base_url: str = "https://graph.microsoft.com/v1.0"
    #: the app-token scope (``<resource>/.default``). Unset: the national cloud's Graph resource for
    #: Microsoft's Graph hosts, else https://graph.microsoft.com/.default (a proxy or gateway in front
    #: of Graph still needs Graph's audience)
    scope: str | None = None
    #: a CA bundle to trust instead of the system's (a corporate TLS proxy, a test CA)
    ca_bundle: Path | None = None
    timeout_seconds: float = Field(30.0, gt=0, le=600)
    #: where the delegated (Teams service account) token cache lives, owner-only.
    #: Unset: ``<appliance.data_dir>/graph-token-cache.json``
    token_cache_path: Path | None = None
    #: delegated scopes of the Teams service account (`fleetbox auth login`)
    delegated_scopes: list[str] = ["ChatMessage.Send", "ChannelMessage.Send"]
    #: the mailbox that sends mail when a job names no sender (a user id or userPrincipalName)
    sender: str | None = None
    #: the public HTTPS base under which Graph reaches this appliance's webhook receiver
    #: (``<webhook_base_url>/api/graph/notifications`` and ``/api/graph/lifecycle``)
    webhook_base_url: str | None = None
    #: the secret Graph echoes in every change notification (clientState)
    client_state: SecretStr | None = None
    #: None: simulate when no credentials are configured; true/false forces it
    simulate: bool | None = None
    #: change notifications to subscribe to (needs webhook_base_url and client_state)
    subscriptions: list[SubscriptionSettings] = []
    #: subscriptions are renewed when they have less than this left
    renew_before_hours: float = Field(24.0, gt=0, le=70)
    #: while Entra fails to issue tokens (5xx, timeouts), jobs wait without using attempts for up to
    #: this long; after that their attempts count again (and a longer outage dead-letters them)
    identity_outage_wait_seconds: float = Field(600.0, ge=0, le=86_400)
    #: where attachment files are read from and written to. Unset: ``<appliance.data_dir>/attachments``
    files_dir: Path | None = None
    #: the built-in simulator: fault injection for rehearsals (``[graph.simulator.faults]``)
    simulator: SimulatorSettings = SimulatorSettings()

    @property
    def configured(self) -> bool:
        return self.tenant_id is not None and self.client_id is not None

    @property
    def simulated(self) -> bool:
        return self.simulate if self.simulate is not None else not self.configured

    @model_validator(mode="after")
    def _credentials(self) -> GraphSettings:
        if self.simulate is False and not self.configured:
            raise ValueError("simulate = false needs tenant_id and client_id")
        if self.configured and not self.simulated and self.client_secret is None and self.certificate_path is None:
            raise ValueError("give client_secret or certificate_path (with certificate_thumbprint)")
        if self.certificate_path is not None and not self.certificate_thumbprint:
            raise ValueError("certificate_path needs certificate_thumbprint")
        if self.simulator.faults.active and not (self.enabled and self.simulated):
            why = (
                "Graph delivery is off (enabled = false)"
                if not self.enabled
                else "a real Microsoft Graph is configured"
            )
            raise ValueError(
                f"simulator.faults (fleetbox run --simulate-faults) works only with the built-in simulator, and {why}"
                "; rehearse on an appliance without tenant_id and client_id, or with simulate = true"
            )
        if self.scope is not None and not self.scope.endswith("/.default"):
            raise ValueError(f"scope must be a resource followed by /.default, not {self.scope!r}")
        for key in ("authority_host", "base_url", "webhook_base_url"):
            value = getattr(self, key)
            if value is not None and urlsplit(value).scheme not in ("https", "http"):
                raise ValueError(f"{key} must be an http(s) URL")
        return self


class RateLimitSettings(_Section):
    """Limits on calls to Microsoft Graph, per resource (defaults: the spec's and Graph's own)."""

    #: every Graph request of the appliance, of any resource, per period (Graph's global limit per
    #: app across all tenants: 130,000 per 10 seconds)
    graph_requests: int = Field(130_000, ge=1)
    graph_period_seconds: float = Field(10.0, gt=0)
    #: Teams requests per second across the appliance (the spec: 50/s)
    teams_per_second: float = Field(50.0, gt=0)
    #: Teams message posts per second into one chat or channel (Graph: 1/s per chat)
    teams_per_chat_per_second: float = Field(1.0, gt=0)
    #: Teams message posts per second by the service account (Graph: 1/s per user for delegated posts)
    teams_per_user_per_second: float = Field(1.0, gt=0)
    #: Outlook requests per period (the spec: 10,000 per 10 minutes)
    outlook_requests: int = Field(10_000, ge=1)
    outlook_period_seconds: float = Field(600.0, gt=0)
    #: concurrent requests per mailbox (Graph: 4)
    outlook_concurrent_per_mailbox: int = Field(4, ge=1)
    #: Outlook requests at once across all mailboxes (Graph: 4 per app ID, whichever mailboxes)
    outlook_concurrent: int = Field(4, ge=1)
    #: bytes uploaded per period into one mailbox: attachment chunks and the bodies of POST, PUT
    #: and PATCH requests to it (Graph: 150 MB per 5 minutes)
    outlook_upload_bytes: int = Field(150 * 1024 * 1024, ge=4 * 1024 * 1024)
    outlook_upload_period_seconds: float = Field(300.0, gt=0)
    #: attachment transfers at once (the spec: 5)
    attachments_concurrent: int = Field(5, ge=1)
    #: the longest Retry-After honoured before a 429 is treated as a transient error (seconds)
    max_retry_after_seconds: float = Field(3600.0, gt=0)
    #: a job whose limiter predicts a longer wait gives its worker slot back and is rescheduled for
    #: its turn (no attempt used); shorter waits are waited in the slot
    defer_after_seconds: float = Field(0.5, ge=0)


class ScheduleSettings(_Section):
    """A cron schedule of the config file (``[[schedules]]``), applied at start and on reload."""

    name: str = Field(pattern=rf"^{rules.QUEUE_NAME.pattern}$")
    #: 5 fields (minute hour day-of-month month day-of-week), 6 with seconds first, or @hourly etc.
    cron: str
    queue: str
    data: dict[str, Any] = {}
    #: the IANA time zone the expression is read in
    timezone: str = "UTC"
    priority: int = Field(5, ge=rules.PRIORITY_MIN, le=rules.PRIORITY_MAX)
    enabled: bool = True
    #: a local time the fall-back day repeats runs once, or at both
    dst: Literal["once", "both"] = "once"
    #: runs missed while no appliance ran: none, the latest one, or all (up to catch_up_max)
    catch_up: Literal["none", "latest", "all"] = "latest"
    catch_up_max: int = Field(100, ge=1, le=10_000)
    #: when the previous run is still waiting or running
    overlap: Literal["allow", "skip", "queue", "cancel_previous"] = "allow"
    #: the dead-man alert: a job of this schedule must have succeeded within this many seconds
    alert_after_seconds: float | None = Field(None, gt=0)

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        try:
            return fleetbox_cron.check(value)
        except InvalidInput as exc:
            raise ValueError(str(exc).removeprefix("cron: ")) from None

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            fleetbox_cron.zone(value)
        except InvalidInput as exc:
            raise ValueError(str(exc).removeprefix("timezone: ")) from None
        return value


class AlertWebhookSettings(_Section):
    """Where alerts are POSTed (``[[alerts.webhooks]]``): every alert that opens or resolves, grouped."""

    #: names the webhook in logs, metrics and the delivery jobs (the URL may hold a token: never shown)
    name: str = Field(pattern=rf"^{rules.QUEUE_NAME.pattern}$")
    #: the receiver; for slack and teams the URL itself is the secret, so it is redacted like one
    url: SecretStr
    #: json: the Standard Webhooks signing secret (``whsec_<base64>``); pagerduty: the integration's
    #: routing key; slack, teams: not used
    secret: SecretStr | None = None
    #: json (Standard Webhooks), slack (incoming webhook), teams (Workflows, Adaptive Card),
    #: pagerduty (Events API v2)
    format: Literal["json", "slack", "teams", "pagerduty"] = "json"
    #: which changes are sent: opened, resolved (a repeat counts as opened)
    events: list[Literal["opened", "resolved"]] = ["opened", "resolved"]
    #: alert kinds sent (backlog, failure_rate, processing_time, dead_letters, no_consumer,
    #: task_failing, schedule_late, ...); empty: all
    kinds: list[str] = []
    #: an alert still open is sent again after this long
    repeat_interval_seconds: float = Field(14_400, ge=60)
    #: changes within this long of the first one go out in one message
    group_seconds: float = Field(30, ge=0, le=3600)
    timeout_seconds: float = Field(10, gt=0, le=120)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: SecretStr) -> SecretStr:
        from urllib.parse import urlsplit

        parts = urlsplit(value.get_secret_value())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        return value

    @model_validator(mode="after")
    def _secret_for_format(self) -> AlertWebhookSettings:
        secret = self.secret.get_secret_value() if self.secret is not None else None
        if self.format == "json":
            if secret is None or not _is_whsec(secret):
                raise ValueError('format json needs secret = "whsec_<base64 of 24 to 64 random bytes>"')
        elif self.format == "pagerduty" and not secret:
            raise ValueError("format pagerduty needs secret = the integration's routing key")
        return self


def _is_whsec(secret: str) -> bool:
    import base64
    import binascii

    if not secret.startswith("whsec_"):
        return False
    try:
        return 24 <= len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) <= 64
    except binascii.Error:
        return False


class AlertSettings(_Section):
    """Alert notifications sent out (``[alerts]``)."""

    webhooks: list[AlertWebhookSettings] = []

    @model_validator(mode="after")
    def _unique(self) -> AlertSettings:
        names = [w.name for w in self.webhooks]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"webhook names must be unique: {', '.join(duplicates)} given twice")
        return self


def redaction_of(settings: Settings) -> redaction.Redaction:
    """The redaction policy of every queue: the built-in defaults, with ``[queues.<name>] redact``
    over them."""
    return redaction.Redaction.of({name: q.redact for name, q in settings.queues.items()})


class Settings(BaseSettings):
    """The effective configuration. Build it with :func:`load_settings` (or directly in tests)."""

    model_config = SettingsConfigDict(extra="forbid", frozen=True)

    database: DatabaseSettings = DatabaseSettings()
    appliance: ApplianceSettings = ApplianceSettings()
    pools: PoolSettings = PoolSettings()
    retry: RetrySettings = RetrySettings()
    queues: dict[str, QueueSettings] = {}
    admin: AdminSettings = AdminSettings()
    retention: RetentionSettings = RetentionSettings()
    monitor: MonitorSettings = MonitorSettings()
    graph: GraphSettings = GraphSettings()
    rate_limits: RateLimitSettings = RateLimitSettings()
    schedules: list[ScheduleSettings] = []
    alerts: AlertSettings = AlertSettings()

    @model_validator(mode="after")
    def _unique_schedules(self) -> Settings:
        names = [s.name for s in self.schedules]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"schedule names must be unique: {', '.join(duplicates)} given twice")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # load_settings() merges the layers itself (to know each value's source) and passes the
        # result as keyword arguments; Settings(...) in code reads nothing else.
        return (init_settings,)


class SpecEnvSource(PydanticBaseSettingsSource):
    """The spec's environment variable names (DB_HOST, ADMIN_KEY, ...)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self._environ = environ

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        raise NotImplementedError  # __call__ below builds the whole mapping at once

    def __call__(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for var, (section, key) in SPEC_ENV.items():
            if var in self._environ and self._environ[var] != "":
                data.setdefault(section, {})[key] = self._environ[var]
        return data


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_assignment(text: str) -> dict[str, Any]:
    """``section.key=value`` (from ``--set``) as a nested mapping; the value is parsed as TOML."""
    path, sep, raw = text.partition("=")
    keys = path.strip().split(".")
    if len(keys) > 8:
        raise ConfigError(f"--set {path.strip()[:60]!r}: at most 8 levels (section.key or section.name.key)")
    if not sep:
        # Without '=', key and value cannot be told apart: echo nothing (it may hold a secret).
        raise ConfigError("--set: expected section.key=value (no '=' found)")
    if not all(re.fullmatch(r"[A-Za-z0-9_-]+", k) for k in keys):
        raise ConfigError(f"--set {path.strip()!r}: expected section.key=value")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare word is a string
    except RecursionError:
        raise ConfigError(f"--set {path.strip()[:60]!r}: the value is nested too deeply") from None
    nested: dict[str, Any] = {keys[-1]: value}
    for key in reversed(keys[:-1]):
        nested = {key: nested}
    return nested


class LoadedSettings:
    """Settings plus where each value came from (for ``fleetbox config show``)."""

    def __init__(
        self, settings: Settings, sources: dict[str, str], config_file: Path | None, config_origin: str | None = None
    ) -> None:
        self.settings = settings
        self.sources = sources
        self.config_file = config_file
        #: how the file was chosen: "--config", "FLEETBOX_CONFIG" or "the working directory"
        self.config_origin = config_origin


def _config_origin(explicit: str | Path | None, environ: Mapping[str, str]) -> str:
    if explicit is not None:
        return "--config"
    return "FLEETBOX_CONFIG" if environ.get("FLEETBOX_CONFIG") else "the working directory"


def config_file_notes(loaded: LoadedSettings) -> list[str]:
    """What an operator should know about the config file in use (printed on stderr): where a
    ``fleetbox.toml`` found in the working directory came from, and a file holding secrets that
    users other than its owner can read."""
    path = loaded.config_file
    if path is None:
        return []
    notes = []
    if loaded.config_origin == "the working directory":
        notes.append(f"using the config file {path} (found in the working directory; --config FILE to choose another)")
    label = f"file {path}"
    secrets = sorted(
        key
        for key, value in _flatten(loaded.settings.model_dump(mode="python")).items()
        if isinstance(value, SecretStr) and loaded.sources.get(key) == label
    )
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        return notes
    if secrets and mode & 0o044:
        notes.append(
            f"warning: {path} holds secrets ({', '.join(secrets)}) and other users can read it "
            f"(mode {mode:04o}); make it private: chmod 600 {path}"
        )
    return notes


def find_config_file(explicit: str | Path | None, environ: Mapping[str, str]) -> Path | None:
    if explicit is not None:
        return Path(explicit)
    if environ.get("FLEETBOX_CONFIG"):
        return Path(environ["FLEETBOX_CONFIG"])
    for name in DEFAULT_CONFIG_FILES:
        if Path(name).is_file():
            return Path(name).absolute()  # said in full: which directory it came from matters
    return None


#: The largest config file read (a real one is a few kB; /dev/zero must not fill the memory).
MAX_CONFIG_BYTES = 4 * 1_048_576


def load_settings(
    config_file: str | Path | None = None,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> LoadedSettings:
    """Build the settings from every layer; a bad value raises ConfigError naming key and source."""
    try:
        return _load_settings(config_file, flags, environ)
    except RecursionError:
        # TOML, JSON in a FLEETBOX_ variable or --set nested thousands deep: no real setting is.
        raise ConfigError(
            "invalid configuration: a value is nested too deeply (config file, environment or --set)"
        ) from None


def _read_config(path: Path) -> str:
    with path.open("rb") as f:
        raw = f.read(MAX_CONFIG_BYTES + 1)
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {path} is larger than {MAX_CONFIG_BYTES} bytes")
    return raw.decode("utf-8")


def _load_settings(
    config_file: str | Path | None, flags: Mapping[str, Any] | None, environ: Mapping[str, str] | None
) -> LoadedSettings:
    environ = os.environ if environ is None else environ
    path = find_config_file(config_file, environ)
    layers: list[tuple[str, dict[str, Any]]] = []
    if path is not None:
        try:
            file_data = tomllib.loads(_read_config(path))
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {path} cannot be read: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        layers.append((f"file {path}", file_data))
    layers.append(("environment (spec name)", SpecEnvSource(Settings, environ)()))
    fleetbox_env = {k: v for k, v in environ.items() if k.startswith(ENV_PREFIX) and k != "FLEETBOX_CONFIG"}
    env_source = EnvSettingsSource(Settings, env_prefix=ENV_PREFIX, env_nested_delimiter="__", case_sensitive=False)
    env_source.env_vars = {k.lower(): v for k, v in fleetbox_env.items()}  # injected, not os.environ
    for var in fleetbox_env:
        section = var[len(ENV_PREFIX) :].partition("__")[0].lower()
        if "__" in var[len(ENV_PREFIX) :] and section not in Settings.model_fields:
            raise ConfigError(f"{var}: unknown setting section {section!r} (from environment)")
    try:
        layers.append(("environment", env_source()))
    except SettingsError as exc:
        # pydantic-settings names the field, never the value (which may be a secret).
        raise ConfigError(f"environment: {exc} (FLEETBOX_ values of a whole section must be JSON)") from None
    if flags:
        layers.append(("flag", dict(flags)))

    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for label, data in layers:
        merged = _merge(merged, data)
        for key in _flatten(data):
            sources[key] = label
    try:
        settings = Settings(**merged)
    except PydanticValidationError as exc:
        raise ConfigError(_describe(exc, sources)) from None
    return LoadedSettings(settings, sources, path, _config_origin(config_file, environ) if path else None)


def _describe(exc: PydanticValidationError, sources: Mapping[str, str]) -> str:
    lines = []
    for error in exc.errors(include_input=False):
        key = ".".join(str(part) for part in error["loc"])
        origin = next(
            (src for k, src in sources.items() if k == key or k.startswith(key + ".") or key.startswith(k + ".")),
            "default",
        )
        lines.append(f"{key}: {error['msg'].removeprefix('Value error, ')} (from {origin})")
    if len(lines) == 1:
        return f"invalid configuration: {lines[0]}"
    return "invalid configuration:\n  " + "\n  ".join(lines)


def effective_values(loaded: LoadedSettings) -> list[tuple[str, str, str]]:
    """``(key, value, source)`` for every setting, secrets redacted."""
    dumped = loaded.settings.model_dump(mode="python")
    rows = []
    for key, value in sorted(_flatten(dumped).items()):
        if isinstance(value, SecretStr):
            shown = "(set, redacted)"
        elif value is None:
            shown = "(not set)"
        else:
            shown = str(_redact_nested(value))
        rows.append((key, shown, loaded.sources.get(key, "default")))
    return rows


def _redact_nested(value: Any) -> Any:
    """Secrets inside lists and tables (a webhook's URL and secret) shown as ``(redacted)``."""
    if isinstance(value, SecretStr):
        return "(redacted)"
    if isinstance(value, dict):
        return {k: _redact_nested(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_nested(v) for v in value]
    return value
