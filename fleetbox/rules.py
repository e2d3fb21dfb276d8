"""Every limit and validation rule of fleetbox, defined once.

Python checks values here before anything is written, and the SQL function ``fleetbox.enqueue``
enforces the same numbers: they are written to the ``limits`` table at migrate time and at every
appliance start or reload (``store.migrations.write_limits``), and the function reads them from
there. Both paths answer a bad value with the same ``field: reason`` text (tested side by side).

============================  ==========================================  ======================
rule                          limit                                        configurable
============================  ==========================================  ======================
priority                      an integer from 1 to 10                      no
max_attempts                  an integer from 1 to 1000                    no
singleton key                 1 to 255 characters, no NUL, valid Unicode   no
queue name                    ``[a-z0-9][a-z0-9_.-]{0,62}``                 no
payload                       a JSON object                                no
payload size                  1 MiB of JSON text                           appliance.max_payload_bytes
payload nesting               64 levels of objects and arrays              appliance.max_payload_depth
delay                         0 to ten years                               no
operator names, notes, text   200 / 10,000 / 200 characters                no
job result                    any JSON value, 1 MiB, 64 levels             no
depends_on                    1 to 1,000 existing job ids                  no
on_failure                    cancel, ignore or hold                       no
workflow                      1 to 100,000 steps, names of 1-100 chars     no
============================  ==========================================  ======================
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fleetbox.errors import InvalidInput
from fleetbox.models import JsonText, Thresholds

PRIORITY_MIN = 1
PRIORITY_MAX = 10
MAX_ATTEMPTS_MAX = 1000
SINGLETON_KEY_MAX = 255
#: What a queue name can be: it appears in URLs, metrics labels and log lines as it is.
QUEUE_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
#: What a schema name can be: spliced into DDL and NOTIFY channel names, so a plain identifier.
SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
DEFAULT_MAX_PAYLOAD_BYTES = 1_048_576
#: Deep enough for any real document; far below where a recursive decoder (Python's json, the
#: TUI, a browser) runs out of stack, which is what a "poison" payload aims at.
DEFAULT_MAX_PAYLOAD_DEPTH = 64
MAX_DELAY_SECONDS = 10 * 365 * 86400
#: When a job may be due: a day inside Python's datetime range, so every reader (Python's datetime
#: ends at year 9999) can hold it and show it in any time zone. The SQL functions check the same
#: bounds (the limits table); PostgreSQL itself would take 'infinity' or the year 294276.
RUN_AT_MIN = dt.datetime(1, 1, 2, tzinfo=dt.UTC)
RUN_AT_MAX = dt.datetime(9999, 12, 30, tzinfo=dt.UTC)
MAX_ACTOR = 200
MAX_NOTES = 10_000
MAX_TEXT_FILTER = 200
#: The longest payload filter of a job search (JSON text of an object the payloads must contain).
MAX_PAYLOAD_FILTER = 2000
MAX_ERROR_CLASS = 100
#: The largest id PostgreSQL's bigint holds.
MAX_ID = 2**63 - 1
#: A handler's result (stored with the job, read by its dependents): any JSON value this large.
MAX_RESULT_BYTES = 1_048_576
MAX_PARENTS = 1000
MAX_WORKFLOW_STEPS = 100_000
#: What a parent's failure does to its dependents.
ON_FAILURE = ("cancel", "ignore", "hold")
#: A workflow step's name: it keys ``job.parents`` and appears in logs and URLs as it is.
STEP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """The configurable limits in force (``[appliance]`` settings); the SQL function reads the same."""

    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    max_payload_depth: int = DEFAULT_MAX_PAYLOAD_DEPTH


def is_int(value: object) -> bool:
    """An int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_priority(value: object, field: str = "priority") -> int:
    # type() first: the plain int of nearly every call skips the isinstance checks (hot path).
    if (type(value) is int or is_int(value)) and PRIORITY_MIN <= value <= PRIORITY_MAX:  # type: ignore[operator]
        return value  # type: ignore[return-value]
    raise InvalidInput(f"must be an integer from {PRIORITY_MIN} to {PRIORITY_MAX}, got {value!r:.40}", field=field)


def check_max_attempts(value: object, field: str = "max_attempts") -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_ATTEMPTS_MAX:
        return value
    raise InvalidInput(f"must be an integer from 1 to {MAX_ATTEMPTS_MAX}, got {value!r:.40}", field=field)


def check_singleton_key(value: object, field: str = "singleton_key") -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= SINGLETON_KEY_MAX:
        raise InvalidInput(f"must be a string of 1 to {SINGLETON_KEY_MAX} characters", field=field)
    if not storable(value):
        raise InvalidInput("must be valid Unicode without NUL", field=field)
    return value


def valid_queue_name(name: object) -> bool:
    return isinstance(name, str) and QUEUE_NAME.fullmatch(name) is not None


def storable(value: str) -> bool:
    """Whether PostgreSQL can store the text: no NUL, no lone surrogate (invalid Unicode)."""
    if "\x00" in value:
        return False
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_text(value: object, field: str, *, limit: int, required: bool = True) -> str | None:
    """A free-text value (an operator's name, notes, a filter) of 1 to ``limit`` characters."""
    if value is None:
        if required:
            raise InvalidInput("is required", field=field)
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= limit or not storable(value):
        raise InvalidInput(f"must be a string of 1 to {limit} characters of valid Unicode, without NUL", field=field)
    if required and not value.strip():
        raise InvalidInput("must not be blank", field=field)
    return value


def check_id(value: object, field: str = "id") -> int:
    """A job or dead-letter id: a positive 64-bit integer."""
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_ID:
        return value
    raise InvalidInput(f"must be a positive integer (at most {MAX_ID}), got {value!r:.40}", field=field)


_INT_TEXT = re.compile(r"-?[0-9]{1,20}")


def parse_id(text: str, field: str) -> int:
    """An id from its decimal text (a URL path, a command line)."""
    if not _INT_TEXT.fullmatch(text) or not 1 <= int(text) <= MAX_ID:
        raise InvalidInput(f"must be a positive integer (at most {MAX_ID}), got {text[:40]!r}", field=field)
    return int(text)


#: An id in a URL path: a positive integer of at most 18 digits, leading zeros aside (every such
#: number fits PostgreSQL's bigint, so no id in a path can overflow a query).
MAX_PATH_ID_DIGITS = 18
PATH_ID_DIGITS = rf"0*[1-9][0-9]{{0,{MAX_PATH_ID_DIGITS - 1}}}"
PATH_ID_PATTERN = f"^{PATH_ID_DIGITS}$"
_PATH_ID = re.compile(PATH_ID_DIGITS)


def parse_path_id(text: str, field: str) -> int:
    """An id from a URL path: a positive integer of at most 18 digits."""
    if not _PATH_ID.fullmatch(text):
        raise InvalidInput(
            f"must be a positive integer of at most {MAX_PATH_ID_DIGITS} digits, got {text[:40]!r}", field=field
        )
    return int(text)


#: Yes/no words a filter takes (``reviewed``), as the CLI and the TUI spell them too.
YES_NO = {"true": True, "yes": True, "false": False, "no": False}


def parse_yes_no(text: str, field: str) -> bool:
    """``true``/``yes`` or ``false``/``no``."""
    try:
        return YES_NO[text]
    except KeyError:
        raise InvalidInput(f"must be one of {', '.join(YES_NO)}, got {text[:40]!r}", field=field) from None


# -- payloads -------------------------------------------------------------------------------------

#: json.dumps(data, allow_nan=False, separators=(",", ":"), ensure_ascii=False), built once
#: (json.dumps builds a new encoder on every call that passes options)
_JSON = json.JSONEncoder(allow_nan=False, separators=(",", ":"), ensure_ascii=False)
_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)


def _json_text(data: object) -> str:
    """``_JSON.encode(data)`` for a dict, straight to the C encoder it would build.

    Hot path (every enqueue, on every entry path, which is why it is here and not in the store):
    measured 2026-12-06 (docs/performance.md, "What the hot-path tricks buy"), a four-field payload
    takes 1.17 µs against 1.59 µs through ``JSONEncoder.encode`` (``encode_payload`` 1.78 against
    2.18 µs), about 1 % of ``fleetbox bench``'s bulk enqueue time per job (~40 µs at 25k jobs/s on
    the shared machine). The bench's own jobs have empty payloads, which never reach this
    function (``"{}"`` is written as it is), so its figures do not move with it.
    """
    if _c_make_encoder is None:
        return _JSON.encode(data)
    # The arguments JSONEncoder.iterencode passes; a fresh markers dict per call, as there.
    encoder = _c_make_encoder({}, _JSON.default, json.encoder.encode_basestring, None, ":", ",", False, False, False)
    return "".join(encoder(data, 0))


#: ``\u0000`` as an escape in JSON text, not a literal backslash followed by "u0000"
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")

_JSON_TYPE = {dict: "object", list: "array", tuple: "array", str: "string", bool: "boolean", type(None): "null"}


def json_type(value: object) -> str:
    """What JSON calls a value's type (PostgreSQL's ``jsonb_typeof`` words)."""
    if isinstance(value, Mapping):
        return "object"
    found = _JSON_TYPE.get(type(value))
    if found is not None:
        return found
    return "number" if isinstance(value, int | float) else type(value).__name__


def depth_over(value: object, limit: int) -> bool:
    """Whether ``value`` nests objects and arrays more than ``limit`` levels deep (a JSON object
    holding only scalars is one level). Iterative, so no depth can exhaust the stack."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, Mapping):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if level > limit:
            return True
        stack.extend((child, level + 1) for child in children if isinstance(child, Mapping | list | tuple))
    return False


def encode_payload(data: object, limits: Limits, *, field: str = "data") -> JsonText:
    """The payload as JSON text: a JSON object PostgreSQL can store, within the limits."""
    if type(data) is not dict and not isinstance(data, Mapping):
        raise InvalidInput(f"must be a JSON object, got {json_type(data)}", field=field)
    try:
        # Not ASCII-escaped: the UTF-8 encoding below then catches lone surrogates, which
        # PostgreSQL rejects, and measures the size the server stores.
        text = (_json_text(data) if data else "{}") if type(data) is dict else _JSON.encode(data)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"not JSON-serialisable: {exc}", field=field) from None
    except RecursionError:
        raise InvalidInput(f"is nested more than {limits.max_payload_depth} levels deep", field=field) from None
    # Fewer brackets than the limit cannot nest deeper than it: the walk runs only for payloads
    # with many containers (str.count is a C loop; the walk visits every container).
    if text.count("{") + text.count("[") > limits.max_payload_depth and depth_over(data, limits.max_payload_depth):
        raise InvalidInput(f"is nested more than {limits.max_payload_depth} levels deep", field=field)
    if "\\u0000" in text and _NUL_ESCAPE.search(text):
        # PostgreSQL's jsonb cannot store the NUL character.
        raise InvalidInput("contains a NUL character (\\u0000), which cannot be stored", field=field)
    try:
        size = len(text) if text.isascii() else len(text.encode())
    except UnicodeEncodeError:
        raise InvalidInput("contains a lone surrogate (invalid Unicode), which cannot be stored", field=field) from None
    if size > limits.max_payload_bytes:
        raise InvalidInput(f"is larger than the limit of {limits.max_payload_bytes} bytes of JSON text", field=field)
    return JsonText(text)


def encode_result(value: object, *, field: str = "result") -> JsonText:
    """A handler's result (or an operator's stand-in for one) as JSON text: any JSON value of at
    most :data:`MAX_RESULT_BYTES`, nested at most the default payload depth."""
    try:
        text = _JSON.encode(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"not JSON-serialisable: {exc}", field=field) from None
    except RecursionError:
        raise InvalidInput(f"is nested more than {DEFAULT_MAX_PAYLOAD_DEPTH} levels deep", field=field) from None
    if depth_over(value, DEFAULT_MAX_PAYLOAD_DEPTH):
        raise InvalidInput(f"is nested more than {DEFAULT_MAX_PAYLOAD_DEPTH} levels deep", field=field)
    if "\\u0000" in text and _NUL_ESCAPE.search(text):
        raise InvalidInput("contains a NUL character (\\u0000), which cannot be stored", field=field)
    try:
        size = len(text.encode())
    except UnicodeEncodeError:
        raise InvalidInput("contains a lone surrogate (invalid Unicode), which cannot be stored", field=field) from None
    if size > MAX_RESULT_BYTES:
        raise InvalidInput(f"is larger than the limit of {MAX_RESULT_BYTES} bytes of JSON text", field=field)
    return JsonText(text)


def check_parents(value: object, field: str = "depends_on") -> list[int]:
    """Parent job ids: a non-empty list of ids, each once (duplicates are dropped), in order."""
    if isinstance(value, str | bytes) or not isinstance(value, list | tuple | set | frozenset):
        raise InvalidInput("must be a list of job ids", field=field)
    ids = list(dict.fromkeys(check_id(v, f"{field}[{i}]") for i, v in enumerate(value)))
    if not ids:
        raise InvalidInput("must name at least one job", field=field)
    if len(ids) > MAX_PARENTS:
        raise InvalidInput(f"names more than {MAX_PARENTS} jobs", field=field)
    return ids


def check_on_failure(value: object, field: str = "on_failure") -> str:
    """A dependency set's failure policy."""
    if value not in ON_FAILURE:
        raise InvalidInput(f"must be one of {', '.join(ON_FAILURE)}, got {value!r}", field=field)
    return str(value)


def check_step_name(value: object, field: str = "step") -> str:
    """A workflow step's name."""
    if not isinstance(value, str) or not STEP_NAME.fullmatch(value):
        raise InvalidInput(
            "a step name is 1-100 letters, digits, '_', '.', ':' or '-', starting with a letter or digit", field=field
        )
    return value


def parse_json_text(text: str, limits: Limits, *, field: str = "data") -> Any:
    """JSON text from outside (a command line, a file, an HTTP body): parsed without letting its
    nesting exhaust the stack; ``NaN`` and ``Infinity`` are not JSON."""
    if len(text) > limits.max_payload_bytes * 2:
        raise InvalidInput(f"is larger than the limit of {limits.max_payload_bytes} bytes of JSON text", field=field)
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise InvalidInput(f"is nested more than {limits.max_payload_depth} levels deep", field=field) from None
    except ValueError as exc:  # JSONDecodeError is a ValueError
        raise InvalidInput(f"not valid JSON: {exc}", field=field) from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# -- when a job runs ------------------------------------------------------------------------------


def resolve_run_at(run_at: object, delay: object, now: dt.datetime, *, prefix: str = "") -> dt.datetime | None:
    """The due time from ``run_at`` (aware datetime) or ``delay`` (ms or timedelta)."""
    if run_at is not None and delay is not None:
        raise InvalidInput("give run_at or delay, not both", field=f"{prefix}run_at")
    if run_at is not None:
        if not isinstance(run_at, dt.datetime):
            raise InvalidInput("must be a datetime", field=f"{prefix}run_at")
        if run_at.tzinfo is None or run_at.utcoffset() is None:
            raise InvalidInput("must carry a time zone (for example UTC)", field=f"{prefix}run_at")
        try:
            in_utc = run_at.astimezone(dt.UTC)  # the database stores UTC: years 1 and 9999 can overflow
        except OverflowError:
            in_utc = None
        if in_utc is None or not RUN_AT_MIN <= in_utc <= RUN_AT_MAX:
            raise InvalidInput(
                f"must be from {RUN_AT_MIN.date().isoformat()} to {RUN_AT_MAX.date().isoformat()} (UTC)",
                field=f"{prefix}run_at",
            )
        return run_at
    if delay is not None:
        if isinstance(delay, dt.timedelta):
            seconds = delay.total_seconds()
        elif isinstance(delay, float) and math.isfinite(delay):
            seconds = delay / 1000
        elif isinstance(delay, int) and not isinstance(delay, bool):
            # a huge int is past any limit below (and would overflow the float division)
            seconds = delay / 1000 if abs(delay) < 10**15 else (math.inf if delay > 0 else -math.inf)
        else:
            raise InvalidInput("must be milliseconds (a finite number) or a timedelta", field=f"{prefix}delay")
        if seconds < 0:
            raise InvalidInput("must not be negative", field=f"{prefix}delay")
        if seconds > MAX_DELAY_SECONDS:
            raise InvalidInput("must be less than ten years", field=f"{prefix}delay")
        return now + dt.timedelta(seconds=seconds)
    return None


def later(now: dt.datetime, seconds: float) -> dt.datetime:
    """``now`` plus ``seconds``, put off no further than a delay may be (MAX_DELAY_SECONDS).

    For a deferral (:class:`~fleetbox.errors.Deferred`, which a handler may raise too): 1e12
    seconds gives ten years, not an OverflowError that would leave the job's outcome unwritten.
    Retries are capped the same way by their policy (fleetbox.worker.retry).
    """
    return now + dt.timedelta(seconds=min(max(0.0, seconds), MAX_DELAY_SECONDS))


# -- alert thresholds -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ThresholdRule:
    """The bounds of one alert threshold (the config file, the API and the table check these)."""

    camel: str
    integer: bool
    low: float
    high: float
    #: whether ``low`` itself is allowed
    low_ok: bool


THRESHOLDS: dict[str, ThresholdRule] = {
    "max_backlog": ThresholdRule("maxBacklog", True, 0, 10**12, True),
    "max_failure_rate": ThresholdRule("maxFailureRate", False, 0, 100, True),
    "max_processing_time": ThresholdRule("maxProcessingTime", False, 0, 10**12, False),
    "max_dead_letter_jobs": ThresholdRule("maxDeadLetterJobs", True, 0, 10**12, True),
}
_THRESHOLD_BY_KEY = {r.camel: name for name, r in THRESHOLDS.items()} | {name: name for name in THRESHOLDS}


def check_threshold(name: str, key: str, value: object) -> int | float:
    """One threshold value within its bounds (InvalidInput naming ``key`` as the caller spelled it)."""
    rule = THRESHOLDS[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        kind = "an integer" if rule.integer else "a number"
        raise InvalidInput(f"must be {kind}, got {type(value).__name__}", field=key)
    if rule.integer and not isinstance(value, int):
        if not (math.isfinite(value) and value == int(value)):
            raise InvalidInput(f"must be an integer, got {value!r}", field=key)
        value = int(value)
    if not math.isfinite(value):
        raise InvalidInput(f"must be a finite number, got {value!r}", field=key)
    if value > rule.high or value < rule.low or (value == rule.low and not rule.low_ok):
        bound = f"at least {rule.low:g}" if rule.low_ok else f"greater than {rule.low:g}"
        raise InvalidInput(f"must be {bound} and at most {rule.high:g}, got {value!r}", field=key)
    return int(value) if rule.integer else float(value)


def parse_threshold_changes(mapping: object) -> dict[str, int | float]:
    """Validated threshold values by field name, from the spec's camelCase keys or snake_case."""
    if not isinstance(mapping, Mapping):
        raise InvalidInput(f"must be an object, got {type(mapping).__name__}", field="thresholds")
    out: dict[str, int | float] = {}
    seen: dict[str, str] = {}
    for key, value in mapping.items():
        name = _THRESHOLD_BY_KEY.get(key) if isinstance(key, str) else None
        if name is None:
            known = ", ".join(r.camel for r in THRESHOLDS.values())
            raise InvalidInput(f"unknown threshold (known: {known})", field=str(key)[:80])
        if name in seen:
            raise InvalidInput(f"given twice (also as {seen[name]})", field=key)
        seen[name] = key
        out[name] = check_threshold(name, key, value)
    return out


def parse_thresholds(mapping: object) -> Thresholds:
    """Thresholds from a mapping with camelCase or snake_case keys; missing keys keep the defaults."""
    return Thresholds(**parse_threshold_changes(mapping))  # type: ignore[arg-type]


# -- HTTP ----------------------------------------------------------------------------------------

_RETRY_AFTER_NUMBER = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(?:,\s*\d+\s*)?$")


def parse_retry_after(value: str | None, *, now: dt.datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: integer or fractional seconds, or an HTTP date.

    ``"5,5"`` (seen from some gateways) counts as 5. A date in the past is 0. Anything else
    (empty, negative, garbage) is None: the caller falls back to its own backoff.
    """
    if value is None:
        return None
    match = _RETRY_AFTER_NUMBER.match(value)
    if match:
        seconds = float(match.group(1))
        return seconds if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP date is always GMT
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - (now or dt.datetime.now(dt.UTC))).total_seconds())


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def check_payload_filter(text: object, field: str = "data") -> JsonText:
    """A job search's payload filter: the JSON text of an object (``{"userId": "u1"}``) that a
    payload must contain (PostgreSQL's ``@>``), at most :data:`MAX_PAYLOAD_FILTER` characters."""
    if not isinstance(text, str) or not 1 <= len(text) <= MAX_PAYLOAD_FILTER or not storable(text):
        raise InvalidInput(
            f"must be the JSON text of an object, 1 to {MAX_PAYLOAD_FILTER} characters, without NUL", field=field
        )
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except ValueError as exc:
        raise InvalidInput(f"not JSON: {exc}", field=field) from None
    except RecursionError:
        raise InvalidInput("is nested too deeply", field=field) from None
    if not isinstance(value, dict):
        raise InvalidInput(
            f"must be a JSON object (the keys and values a payload contains), got {json_type(value)}", field=field
        )
    return JsonText(json.dumps(value, separators=(",", ":"), ensure_ascii=False))


# -- retry experiments --------------------------------------------------------------------------


def variant_bucket(job_id: int, key: object = None) -> float:
    """Where a job falls in its queue's retry-variant weights, in [0, 1): a hash of the payload
    key's value when the queue names one and the job has it, else of the job's id. The worker
    choosing a job's rules and the report counting it both use this, so they always agree."""
    text = str(job_id) if key is None else json.dumps(key, sort_keys=True, separators=(",", ":"))
    digest = hashlib.blake2b(text.encode(), digest_size=8, person=b"fbvariant").digest()
    return int.from_bytes(digest, "big") / 2**64


def pick_variant(weights: Mapping[str, float], bucket: float) -> str | None:
    """The label whose share of ``weights`` (labels in sorted order) holds ``bucket``; None when
    there is no experiment (no weights)."""
    total = sum(weights.values())
    if not weights or total <= 0:
        return None
    upper = 0.0
    labels = sorted(label for label, weight in weights.items() if weight > 0)
    for label in labels:
        upper += weights[label] / total
        if bucket < upper:
            return label
    return labels[-1]  # rounding: the last share ends at 1
