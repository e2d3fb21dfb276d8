"""Structured logs: one JSON object per line, with a stable ``event`` name on every record.

Call sites pass ``extra={"event": "job_failed", "job_id": ..., ...}``; the formatter writes the
event, the message and every extra field. Secrets are never passed to a log call.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sys
from typing import Any

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}

#: The password of a URL's user-info (``scheme://user:PASSWORD@host``): everything up to the last
#: ``@`` before the path, since an unencoded password may itself hold an ``@``.
_USERINFO_PASSWORD = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^\s/?#:@]*:)[^\s/?#]+@")
#: ``password=``, ``sslpassword=`` (and ``PGPASSWORD=``, ``DB_PASSWORD=``) in a URL's query or a key=value DSN,
#: quoted (libpq's ``'...'`` with backslash escapes) or bare.
_PARAM_PASSWORD = re.compile(r"""(?i)((?:pg|ssl|_)?password\s*=\s*)('(?:[^'\\]|\\.)*'?|\\?"[^"]*"?|[^\s&;,"'\\]*)""")


def redact_dsn(text: str) -> str:
    """``text`` with every DSN secret replaced by ``***``: the user-info password of a URL and
    ``password=`` / ``sslpassword=`` in a URL's query or a key=value DSN. A DSN on its own or
    inside a message, a log line or a traceback; the one redaction every printer and logger uses.
    (A ``passfile`` is a path: its contents are never read into fleetbox's output.)"""
    if "://" not in text and "assword" not in text.lower():
        return text  # the common case: nothing that could hold a secret
    text = _USERINFO_PASSWORD.sub(r"\1***@", text)
    return _PARAM_PASSWORD.sub(r"\1***", text)


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": getattr(record, "event", None) or record.getMessage(),
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in _extras(record).items() if k != "event"})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        # Redacted as a whole: a DSN secret in a message, an extra field or a traceback.
        return redact_dsn(json.dumps(entry, default=str))


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(f"{k}={v}" for k, v in _extras(record).items() if k != "event")
        event = getattr(record, "event", "")
        line = f"{record.levelname:<7} {event} {record.getMessage()} {extras}".rstrip()
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return redact_dsn(line)


def setup(level: str = "INFO", fmt: str = "json") -> None:
    """Send fleetbox's logs to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger("fleetbox")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
