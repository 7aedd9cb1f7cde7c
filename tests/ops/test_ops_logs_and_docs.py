"""The JSON log format of both processes, its scrubbing of secrets, and the OpenAPI
document of the operations and history endpoints."""

from __future__ import annotations

import json
import logging
import sys
from types import ModuleType
from typing import Any

import pytest

import core.logs
import gateway.logs
from gateway.openapi import build_document


def record(message: str, *args: object, **fields: Any) -> logging.LogRecord:
    made = logging.LogRecord("vats.test", logging.WARNING, __file__, 1, message, args, None)
    if fields:
        made.fields = fields
    return made


@pytest.mark.parametrize("logs", [core.logs, gateway.logs], ids=["core", "gateway"])
def test_a_log_line_is_one_json_object_with_the_request_id(logs: ModuleType) -> None:
    token = logs.REQUEST_ID.set("req-77")
    try:
        line = logs.JsonFormatter().format(record("took %d ms", 12, route="/healthz", status=200))
    finally:
        logs.REQUEST_ID.reset(token)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "warning"
    assert entry["logger"] == "vats.test"
    assert entry["message"] == "took 12 ms"
    assert entry["request_id"] == "req-77"
    assert entry["route"] == "/healthz" and entry["status"] == 200
    assert entry["time"].endswith("+00:00")


@pytest.mark.parametrize("logs", [core.logs, gateway.logs], ids=["core", "gateway"])
def test_secrets_in_messages_are_scrubbed(logs: ModuleType) -> None:
    formatter = logs.JsonFormatter()
    messages = [
        "unhandled error in POST /api/v2/telephony/calls/Zq9-secret-key_1?x=1",
        "GET /api/v2/telephony/cards/stream?access_token=anna-secret&last_event_id=4",
        "GET /api/v2/telephony/records/r1?expires=99&signature=sig-secret",
        "auth header was Bearer svc-secret, retry",
        "connect to mongodb://vats:db-secret@db1:27017/?replicaSet=rs0 failed",
        "token=tok-secret and key=other-secret",
        # In any case: the quick check before the patterns must not let these through.
        "PASSWORD=pw-secret; Access_Token=at-secret; BEARER up-secret",
    ]
    for message in messages:
        line = formatter.format(record(message))
        json.loads(line)
        for secret in (
            "Zq9-secret-key_1",
            "anna-secret",
            "sig-secret",
            "svc-secret",
            "db-secret",
            "tok-secret",
            "other-secret",
            "pw-secret",
            "at-secret",
            "up-secret",
        ):
            assert secret not in line
    kept = formatter.format(record("expired the cards of 3 stale calls; last_event_id=4"))
    assert json.loads(kept)["message"] == "expired the cards of 3 stale calls; last_event_id=4"


def test_tracebacks_go_in_one_field_of_the_same_line() -> None:
    try:
        raise ValueError("boom at /api/v2/telephony/calls/leaky-key")
    except ValueError:
        failed = record("failed")
        failed.exc_info = sys.exc_info()
    line = gateway.logs.JsonFormatter().format(failed)
    entry = json.loads(line)
    assert "ValueError" in entry["exception"]
    assert "leaky-key" not in line


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def test_openapi_documents_history_health_and_metrics() -> None:
    spec = build_document()
    for path in (
        "/api/v2/telephony/history",
        "/api/v2/telephony/history/{call_id}",
        "/livez",
        "/readyz",
        "/metrics",
    ):
        assert "get" in spec["paths"][path], path
    history = spec["paths"]["/api/v2/telephony/history"]["get"]
    assert {p.get("name") for p in history["parameters"]} >= {
        "phone",
        "status",
        "direction",
        "employee",
        "channel",
        "from",
        "to",
        "page_size",
        "page_token",
        "access_token",
    }
    assert set(history["responses"]) >= {"200", "401", "403", "422", "503"}
    for ref in _refs(spec):
        assert ref.startswith("#/components/"), ref
        node: Any = spec
        for part in ref[2:].split("/"):
            assert part in node, f"{ref} does not resolve"
            node = node[part]
