"""Tokens at the gateway with real core and gateway processes: readiness with a
service token core refuses, the Authorization scheme, and `?employee_id=` on the
card stream for service and admin tokens."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveStack
from tests.e2e.sse import SSEReader

pytestmark = pytest.mark.e2e


def test_gateway_with_a_service_token_core_refuses_is_not_ready(tmp_path: Path) -> None:
    stack = LiveStack(tmp_path, {"VATS_SERVICE_TOKEN": "not-the-service-token"})
    try:
        stack.start_core()
        stack.start_gateway()
        ready = httpx.get(f"{stack.http_url}/readyz", timeout=10)
        pbx = httpx.post(
            stack.calls_url,
            json={"action": "create_call", "direction": "incoming", "phone": "+74951234567"},
            timeout=10,
        )
    finally:
        stack.stop()
    assert pbx.status_code == 503
    assert ready.status_code == 503
    body = ready.json()
    assert (body["status"], body["core"], body["core_auth"]) == ("not_ready", "serving", "refused")
    assert "VATS_SERVICE_TOKEN" in body["message"]


def test_gateway_is_ready_with_the_right_service_token(live_stack: LiveStack) -> None:
    ready = httpx.get(f"{live_stack.http_url}/readyz", timeout=10)
    assert ready.status_code == 200, ready.text


@pytest.mark.parametrize(
    "path",
    [
        "/api/v2/telephony/history",
        "/api/v2/telephony/history/1",
        "/api/v2/telephony/records/some-recording",
        "/api/v2/telephony/cards/stream",
    ],
)
def test_token_scheme_other_than_bearer_is_named(live_stack: LiveStack, path: str) -> None:
    response = httpx.get(
        live_stack.http_url + path, headers={"Authorization": "Token demo-anna"}, timeout=10
    )
    assert response.status_code == 401
    message = response.json()["error"]["message"]
    assert "Bearer" in message and "missing" not in message


@pytest.mark.parametrize("token", ["demo-admin", "demo-service"])
def test_stream_of_a_service_or_admin_token_names_employee_id(
    live_stack: LiveStack, token: str
) -> None:
    url = f"{live_stack.http_url}/api/v2/telephony/cards/stream"
    refused = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert refused.status_code == 422
    assert "?employee_id=" in refused.json()["error"]["message"]

    reader = SSEReader(f"{url}?employee_id=1", {"Authorization": f"Bearer {token}"})
    try:
        assert reader.status == 200
        while not reader.nothing_more(0.3):  # the snapshot left by other tests
            while not reader.events.empty():
                reader.events.get_nowait()
        created = httpx.post(
            live_stack.calls_url,
            json={
                "action": "create_call",
                "direction": "incoming",
                "phone": "+74951234568",
                "user_ids": [1],
            },
            timeout=10,
        )
        assert created.status_code == 200, created.text
        event = reader.next()
        assert event.event == "show"
        assert event.json["call_id"] == created.json()["data"]["call_id"]
    finally:
        reader.close()
