"""The one exception tree of fleetbox.

::

    FleetboxError                    unexpected fleetbox error
    ├── ConfigError                  a configuration value is wrong (names the key)
    ├── DatabaseError                the database failed or is unreachable (driver error in __cause__)
    │   └── SchemaNotReady           migrations have not been applied
    ├── InvalidInput                 a caller gave a bad value (names the field); nothing was written
    │   └── UnknownQueue             no queue by that name
    ├── NotFound                     no job or dead letter with that id
    ├── Conflict                     the object is not in a state that allows the action
    ├── Deferred                     raised by a handler that cannot start yet (a rate limit's wait):
    │                                the job waits until ``until`` without using an attempt
    └── JobError                     raised by handlers: says how the attempt failed
        ├── RateLimitError           throttled; retried after retry_after or with backoff (5 retries)
        ├── TransientError           network or server hiccup; backoff 1, 2, 4, 8, 16 s (5 retries),
        │   │                        or retry_after when the server gave one
        │   └── NetworkError
        ├── AuthenticationError      token rejected; the token-refresh hook runs, then one retry
        └── PermanentError           retrying cannot help: straight to the dead-letter queue
            ├── ValidationError      the payload is wrong (also: Graph answered 400)
            ├── NoProcessorError     the queue has no handler configured
            ├── PoisonError          the job cannot be decoded or keeps killing its workers
            └── SyncStateLost        Graph forgot a delta link (410, syncStateNotFound, resyncRequired):
                                     start over with a full sync

Handlers raise the ``JobError`` classes; any other exception a handler raises counts as transient.
Driver errors are translated to ``DatabaseError`` in ``fleetbox.store`` and nowhere else.

A ``JobError`` raised for a Microsoft Graph answer carries what Graph said in ``graph``
(:class:`GraphErrorDetail`: status, error codes, message, request-id); its message says the same,
so the dead letter keeps it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class FleetboxError(Exception):
    """Unexpected fleetbox error."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class ConfigError(FleetboxError):
    """The configuration is invalid."""


class DatabaseError(FleetboxError):
    """The database failed or could not be reached."""


class SchemaNotReady(DatabaseError):
    """The fleetbox schema is missing or out of date: run `fleetbox migrate`."""


class InvalidInput(FleetboxError):
    """A value given by the caller is invalid; nothing was written."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        #: the message without the field's name
        self.reason = message
        super().__init__(f"{field}: {message}" if field else message)

    def within(self, prefix: str) -> InvalidInput:
        """The same error about a field of an item (``jobs[3].`` and ``priority``): callers that
        check many items name the item only when one is wrong, not for every item checked."""
        return InvalidInput(self.reason, field=f"{prefix}{self.field}" if self.field else prefix.rstrip("."))


class UnknownQueue(InvalidInput):
    """No queue by that name."""

    def __init__(self, queue: str, known: list[str] | None = None, *, field: str = "queue") -> None:
        self.queue = queue
        hint = f" (known queues: {', '.join(known)})" if known else ""
        super().__init__(f"unknown queue {queue!r}{hint}", field=field)


class NotFound(FleetboxError):
    """No such object."""


class Conflict(FleetboxError):
    """The object is not in a state that allows this action."""


class ErrorClass(StrEnum):
    """How an attempt failed; decides the retry policy."""

    RATE_LIMITED = "rate_limited"  #: throttled by the remote side
    TRANSIENT = "transient"  #: network error, timeout, 5xx, or any unexpected exception
    AUTHENTICATION = "authentication"  #: credentials rejected; refresh and retry once
    PERMANENT = "permanent"  #: retrying cannot help (validation, no processor, 4xx)
    LEASE_EXPIRED = "lease_expired"  #: the process running the attempt stopped heartbeating
    POISON = "poison"  #: the job cannot be decoded, or keeps crashing or stalling its workers


@dataclass(frozen=True, slots=True)
class GraphErrorDetail:
    """What Microsoft Graph said when it refused a request (its error envelope and headers)."""

    status: int
    #: ``error.code`` first, then each nested ``innerError.code`` (outer to inner); may be empty
    codes: tuple[str, ...]
    message: str | None
    #: Graph's ``request-id`` (response header, else ``innerError``): what Microsoft support asks for
    request_id: str | None
    #: the ``client-request-id`` fleetbox sent
    client_request_id: str | None
    #: ``innerError.date`` as Graph wrote it (UTC, no zone)
    date: str | None = None

    @property
    def code(self) -> str | None:
        """The outermost error code."""
        return self.codes[0] if self.codes else None

    def has_code(self, *codes: str) -> bool:
        """Whether any of Graph's codes (at any depth) is one of ``codes``, ignoring case."""
        wanted = {c.casefold() for c in codes}
        return any(c.casefold() in wanted for c in self.codes)


class Deferred(FleetboxError):
    """The job cannot start yet (its rate limit has no token for a while): it goes back to wait
    until ``seconds`` from now, freeing its worker slot, and the attempt does not count."""

    def __init__(self, seconds: float, message: str | None = None) -> None:
        if not seconds >= 0:
            raise ValueError("seconds must be a non-negative number")
        self.seconds = seconds
        super().__init__(message or f"deferred for {seconds:g} s")


class JobError(FleetboxError):
    """A job attempt failed."""

    error_class: ErrorClass = ErrorClass.TRANSIENT
    #: set when the failure is Microsoft Graph's answer
    graph: GraphErrorDetail | None = None
    #: seconds the remote side asked to wait before the next attempt (Retry-After), if it said
    retry_after: float | None = None

    def __init__(self, message: str | None = None, *, retry_after: float | None = None) -> None:
        if retry_after is not None and not retry_after >= 0:
            raise ValueError("retry_after must be a non-negative number of seconds")
        self.retry_after = retry_after
        super().__init__(message)


class RateLimitError(JobError):
    """The remote service throttled the request."""

    error_class = ErrorClass.RATE_LIMITED


class TransientError(JobError):
    """A transient failure; the attempt may succeed later."""

    error_class = ErrorClass.TRANSIENT


class NetworkError(TransientError):
    """The network failed (connection refused, reset, timeout)."""


class AuthenticationError(JobError):
    """Authentication was rejected; the token will be refreshed and the job retried once."""

    error_class = ErrorClass.AUTHENTICATION


class PermanentError(JobError):
    """A permanent failure; the job goes to the dead-letter queue without retry."""

    error_class = ErrorClass.PERMANENT


class ValidationError(PermanentError):
    """The job payload is invalid."""


class NoProcessorError(PermanentError):
    """No processor is configured for this queue."""


class PoisonError(PermanentError):
    """The job cannot be run: its payload cannot be decoded, or it keeps killing its workers."""

    error_class = ErrorClass.POISON


class SyncStateLost(PermanentError):
    """Graph no longer knows the delta link (410 Gone, syncStateNotFound, resyncRequired).

    Retrying the same link cannot help; the sync processor catches this and starts a full sync.
    """


def classify(exc: BaseException) -> ErrorClass:
    """The error class of an exception raised by a handler (unknown exceptions are transient)."""
    if isinstance(exc, JobError):
        return exc.error_class
    return ErrorClass.TRANSIENT
