"""Core's structured logs: see vats_logs."""

from __future__ import annotations

import contextvars

from vats_logs import REQUEST_ID, JsonFormatter, redact, setup

__all__ = ["REQUEST_ID", "RPC_FIELDS", "JsonFormatter", "note_rpc", "redact", "setup"]

# What a servicer adds to the line its RPC ends with (set for each RPC by core.metrics).
RPC_FIELDS: contextvars.ContextVar[dict[str, object] | None] = contextvars.ContextVar(
    "rpc_fields", default=None
)


def note_rpc(**fields: object) -> None:
    """Add fields to the log line of the RPC being served (nothing outside one)."""
    noted = RPC_FIELDS.get()
    if noted is not None:
        noted.update(fields)
