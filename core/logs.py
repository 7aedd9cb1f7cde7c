"""Core's structured logs: see vats_logs."""

from vats_logs import REQUEST_ID, JsonFormatter, redact, setup

__all__ = ["REQUEST_ID", "JsonFormatter", "redact", "setup"]
