"""Structured logs for core and gateway: one JSON object per line on stderr, secrets scrubbed.

Every record carries the id of the request it belongs to (set by core's RPC
interceptor or the gateway's request middleware); extra fields go in
`extra={"fields": {...}}`. Shared by both processes, which share no other code.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from datetime import UTC, datetime

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

# Last line of defence: whatever a message says, these never reach a log line.
_SECRETS = (
    (
        re.compile(
            r"(?i)((?:access_token|signature|token|secret|password|channel_key|key)=)"
            r"[^&\s\"'\\]+"
        ),
        r"\1[redacted]",
    ),
    (re.compile(r"(?i)(bearer\s+)[^\s\"'\\]+"), r"\1[redacted]"),
    (re.compile(r"(/api/v2/telephony/calls/)[^/?#\s\"'\\]+"), r"\1{channel_key}"),
    (re.compile(r"(mongodb(?:\+srv)?://)[^@/\s\"'\\]+@"), r"\1[redacted]@"),
)


# Whatever any pattern above would change contains one of these (in lower case): most
# lines (every RPC's and request's, the PBX's route template too) contain none. Matched
# against the lowered text, without (?i), it is one quick scan; the patterns cost about
# 20 us a line.
_MAY_HOLD_SECRETS = re.compile(
    r"token=|signature=|secret=|password=|key=|bearer\s"
    r"|/api/v2/telephony/calls/(?!\{channel_key\})|mongodb"
)


def redact(text: str) -> str:
    if not _MAY_HOLD_SECRETS.search(text.lower()):
        return text
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class JsonFormatter(logging.Formatter):
    """{"time", "level", "logger", "message", "request_id"?, ...fields, "exception"?}."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = REQUEST_ID.get()
        if request_id:
            entry["request_id"] = request_id
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(entry, ensure_ascii=False, default=str))


def setup(level: str = "INFO") -> None:
    """Route every logger of the process to stderr as JSON lines."""
    # The lines carry none of these: a record need not look them up (a system call each).
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
