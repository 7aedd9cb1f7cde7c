"""The gateway's structured logs: see vats_logs; stream tickets are scrubbed as tokens are.

The gateway logs requests by route template (never a raw path or query string) and
uvicorn's own access log is off: this is the last line of defence behind that, for a
`?ticket=` or `?access_token=` quoted in any other message.
"""

from __future__ import annotations

import logging
import re

import vats_logs
from vats_logs import REQUEST_ID

__all__ = ["REQUEST_ID", "JsonFormatter", "redact", "setup"]

_TICKET = re.compile(r"(?i)(ticket=)[^&\s\"'\\]+")


def redact(text: str) -> str:
    return _redact_tickets(vats_logs.redact(text))


def _redact_tickets(text: str) -> str:
    # Most lines name no ticket: one quick scan instead of the pattern.
    return _TICKET.sub(r"\1[redacted]", text) if "ticket=" in text.lower() else text


class JsonFormatter(vats_logs.JsonFormatter):
    """vats_logs' JSON lines (scrubbed by vats_logs.redact), with stream tickets redacted too."""

    def format(self, record: logging.LogRecord) -> str:
        return _redact_tickets(super().format(record))


def setup(level: str = "INFO") -> None:
    """Route every logger of the process to stderr as JSON lines (see vats_logs.setup)."""
    vats_logs.setup(level)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(JsonFormatter())
