"""Who may call what: the ``x-admin-key`` header against ``admin.key`` and ``admin.read_key``.

Three access levels:

- ``PUBLIC``: no key (the OpenAPI document; /api/queue/health while ``admin.health_public``).
- ``READ``: the admin key or the read-only key (every other GET: job lists and details, dead
  letters, stats, metrics, alerts, thresholds).
- ``ADMIN``: the admin key (everything that changes state).

Requests that arrive on the unix control socket are not checked: the socket file is owner-only,
so its permissions are the access control (``fleetbox.admin.server``).

Outcomes, the same on every endpoint: no key configured for the level → 403
``admin_key_not_configured`` (the API is closed, not open); header missing or empty → 401
``missing_key``; a key that matches nothing → 403 ``invalid_key``; the read-only key on an
ADMIN operation → 403 ``read_only_key``. Keys are compared with :func:`hmac.compare_digest`
and never logged or echoed.
"""

from __future__ import annotations

import hmac
import math
from dataclasses import dataclass
from enum import Enum

from aiolimiter import AsyncLimiter
from pydantic import SecretStr

from fleetbox.admin.errors import AccessError, MissingKey, NoKeyConfigured, ReadOnlyKey, TooManyWrongKeys, WrongKey
from fleetbox.config import AdminSettings

HEADER = "x-admin-key"


class Access(Enum):
    """What an endpoint needs."""

    PUBLIC = "public"
    READ = "read"
    ADMIN = "admin"


def _secret(value: SecretStr | None) -> bytes | None:
    if value is None:
        return None
    raw = value.get_secret_value()
    return raw.encode("utf-8", "surrogateescape") if raw else None


def _same(given: bytes, key: bytes | None) -> bool:
    # Compare against a key of the same length when none is set, so both paths take the same time.
    return hmac.compare_digest(given, key if key is not None else given + b"\x00") and key is not None


class KeyCheck:
    """Checks the ``x-admin-key`` header of a request for an access level."""

    def __init__(self, settings: AdminSettings) -> None:
        self._admin = _secret(settings.key)
        self._read = _secret(settings.read_key)

    @property
    def admin_key_configured(self) -> bool:
        return self._admin is not None

    @property
    def any_configured(self) -> bool:
        """Whether any key is configured (with none there is nothing to guess)."""
        return self._admin is not None or self._read is not None

    def matches(self, header: str) -> bool:
        """Whether ``header`` is one of the configured keys (either)."""
        given = header.encode("utf-8", "surrogateescape")
        return _same(given, self._admin) | _same(given, self._read)

    def grants(self, level: Access, header: str | None) -> bool:
        """Whether ``header`` grants ``level`` (:meth:`check` without the error)."""
        try:
            self.check(level, header)
        except AccessError:
            return False
        return True

    def check(self, level: Access, header: str | None) -> None:
        """Return if ``header`` grants ``level``; raise an :class:`AccessError` otherwise."""
        if level is Access.PUBLIC:
            return
        if self._admin is None and (level is Access.ADMIN or self._read is None):
            raise NoKeyConfigured(
                "no admin key is configured, so admin operations are refused: set admin.key "
                "(environment ADMIN_KEY)" + (" or admin.read_key for reads" if level is Access.READ else "")
            )
        if not header:
            raise MissingKey(f"this operation needs the {HEADER} header")
        given = header.encode("utf-8", "surrogateescape")
        is_admin = _same(given, self._admin)
        is_read = _same(given, self._read)
        if is_admin:
            return
        if is_read:
            if level is Access.READ:
                return
            raise ReadOnlyKey(f"the read-only key cannot change state; send the admin key in {HEADER}")
        raise WrongKey(f"the {HEADER} header does not match a configured key")


@dataclass(frozen=True, slots=True)
class ThrottleRule:
    """How many wrong keys an address may send at once, and how fast it earns one more."""

    burst: int = 30
    #: one more wrong key is allowed every this many seconds
    every_seconds: float = 2.0


class KeyThrottle:
    """Wrong keys, counted per client address in a leaky bucket (aiolimiter): ``burst`` at once,
    then one every ``every_seconds``. While an address's bucket is full, every request it sends
    with a key is refused (429 ``too_many_wrong_keys``, with Retry-After) before the key is
    compared, so a right guess cannot be told from a wrong one; requests without a key are not
    affected. At most ``max_addresses`` are remembered (drained buckets are forgotten first)."""

    def __init__(self, rule: ThrottleRule | None = None, *, max_addresses: int = 10_000) -> None:
        self.rule = rule or ThrottleRule()
        self._max = max_addresses
        self._buckets: dict[str, AsyncLimiter] = {}

    def _retry_after(self) -> int:
        return max(1, math.ceil(self.rule.every_seconds))

    def admit(self, address: str) -> None:
        """Raise :class:`TooManyWrongKeys` while ``address`` may send no key."""
        bucket = self._buckets.get(address)
        if bucket is not None and not bucket.has_capacity():
            raise TooManyWrongKeys(
                f"too many wrong keys from this address: try again in {self._retry_after()} s",
                retry_after=self._retry_after(),
            )

    async def wrong(self, address: str) -> None:
        """Count one wrong key from ``address`` (admit() said there was room)."""
        bucket = self._buckets.get(address)
        if bucket is None:
            self._forget_drained()
            rule = self.rule
            bucket = AsyncLimiter(rule.burst, rule.burst * rule.every_seconds)
            self._buckets[address] = bucket
        if bucket.has_capacity():
            await bucket.acquire()  # there is room: returns at once

    def _forget_drained(self) -> None:
        if len(self._buckets) < self._max:
            return
        for address in [a for a, b in self._buckets.items() if b.has_capacity(self.rule.burst)]:
            del self._buckets[address]
        while len(self._buckets) >= self._max:  # all busy: the oldest go
            del self._buckets[next(iter(self._buckets))]
