"""The PBX endpoint end to end: core and gateway as real processes over real sockets."""

from __future__ import annotations

import concurrent.futures
import json
import shlex
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveStack

pytestmark = pytest.mark.e2e

REPLY_KEYS = {
    "call_id",
    "pbx_call_id",
    "user_id",
    "pbx_user_id",
    "call_status",
    "audio_record",
    "ticket_id",
}

# The original contract's two examples, word for word but for the address.
ORIGINAL_CREATE = (
    "curl --location --request POST 'https://your_domain/api/v2/telephony/calls/@channelKey' "
    "--form 'action=create_call' --form 'direction=outgoing' --form 'phone=777777777' "
    "--form 'call_status=ringing' --form 'comment=start'"
)
ORIGINAL_UPDATE = (
    "curl --location --request POST 'https://your_domain/api/v2/telephony/calls/@channelKey' "
    "--form 'action=update_call' --form 'call_id=725' --form 'call_status=canceled' "
    "--form 'user_id=1' --form 'comment=missed'"
)


def run_curl(command: str, stack: LiveStack, call_id: int | None = None) -> dict[str, Any]:
    command = command.replace(
        "https://your_domain/api/v2/telephony/calls/@channelKey",
        f"{stack.http_url}/api/v2/telephony/calls/@{stack.channel_key}",
    )
    if call_id is not None:
        # The example names call 725; this deployment's call has its own id.
        command = command.replace("call_id=725", f"call_id={call_id}")
    out = subprocess.run(
        [*shlex.split(command), "--silent", "--show-error"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return json.loads(out.stdout)


def post(stack: LiveStack, **kwargs: Any) -> httpx.Response:
    return httpx.post(stack.calls_url, timeout=10, **kwargs)


def form(fields: list[tuple[str, str]]) -> list[tuple[str, tuple[None, str]]]:
    """Fields as multipart/form-data parts, as curl --form sends them."""
    return [(name, (None, value)) for name, value in fields]


def create(stack: LiveStack, **fields: Any) -> dict[str, Any]:
    body = {"action": "create_call", "direction": "incoming", "phone": "+74951234567", **fields}
    response = post(stack, json=body)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def get_call(stack: LiveStack, call_id: int) -> Any:
    import grpc

    from telephony.v1 import call_service_pb2, call_service_pb2_grpc

    with grpc.insecure_channel(stack.grpc_target) as channel:
        stub = call_service_pb2_grpc.CallServiceStub(channel)
        return stub.GetCall(
            call_service_pb2.GetCallRequest(call_id=call_id),
            metadata=[("authorization", f"Bearer {stack.admin_token}")],
            timeout=5,
        ).call


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert {"code", "message"} <= set(body["error"])
    return body["error"]


def test_original_curl_examples(live_stack: LiveStack) -> None:
    created = run_curl(ORIGINAL_CREATE, live_stack)
    data = created["data"]
    assert set(created) == {"data"} and set(data) == REPLY_KEYS
    assert isinstance(data["call_id"], int) and isinstance(data["ticket_id"], int)
    assert data["call_status"] == "ringing"
    assert data["pbx_call_id"] is None and data["audio_record"] is None
    updated = run_curl(ORIGINAL_UPDATE, live_stack, call_id=data["call_id"])["data"]
    assert set(updated) == REPLY_KEYS
    assert updated["call_id"] == data["call_id"] and updated["ticket_id"] == data["ticket_id"]
    assert updated["call_status"] == "canceled" and updated["user_id"] == 1
    call = get_call(live_stack, data["call_id"])
    assert [c.text for c in call.ticket.comments] == ["start", "missed"]
    assert call.ticket.executor_employee_id == 1


def test_urlencoded_body_with_php_arrays(live_stack: LiveStack) -> None:
    response = post(
        live_stack,
        content="action=create_call&direction=incoming&phone=%2B7+495+"
        "111-22-33&user_ids%5B0%5D=1&user_ids%5B1%5D=2&pbx_call_id=777",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["pbx_call_id"] == "777" and data["user_id"] is None
    assert list(get_call(live_stack, data["call_id"]).audience_employee_ids) == [1, 2]


def test_multipart_with_bracket_and_repeated_arrays(live_stack: LiveStack) -> None:
    for fields in (
        [("group_ids[]", "10")],
        [("pbx_user_ids", "101"), ("pbx_user_ids", "103")],
    ):
        response = post(
            live_stack,
            files=form(
                [
                    ("action", "create_call"),
                    ("direction", "incoming"),
                    ("phone", "84951112233"),
                    *fields,
                ]
            ),
        )
        assert response.status_code == 200, response.text
        call = get_call(live_stack, response.json()["data"]["call_id"])
        expected = [1, 2] if fields[0][0] == "group_ids[]" else [1, 3]
        assert list(call.audience_employee_ids) == expected


def test_json_body_with_numbers_and_arrays(live_stack: LiveStack) -> None:
    data = create(live_stack, phone=74951234567, pbx_call_id=12345, user_ids=[3])
    assert data["pbx_call_id"] == "12345" and data["user_id"] == 3
    updated = post(
        live_stack,
        json={
            "action": "update_call",
            "pbx_call_id": 12345,
            "call_status": "in-progress",
            "pbx_user_id": 101,
        },
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["data"]["pbx_user_id"] == "101"
    assert updated.json()["data"]["user_id"] == 1


def test_cyrillic_look_alike_field_names(live_stack: LiveStack) -> None:
    data = create(live_stack)
    # call_id and comment with Cyrillic es, a and o, as published copies spell them.
    response = post(
        live_stack,
        files=form(
            [
                ("action", "update_call"),
                ("\u0441\u0430ll_id", str(data["call_id"])),
                ("call_status", "answered"),
                ("\u0441\u043emment", "ok"),
            ]
        ),
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"]["call_status"] == "answered"
    assert [c.text for c in get_call(live_stack, data["call_id"]).ticket.comments] == ["ok"]


def test_status_moved_backwards_is_409_and_unchanged(live_stack: LiveStack) -> None:
    data = create(live_stack)
    ok = post(
        live_stack,
        json={"action": "update_call", "call_id": data["call_id"], "call_status": "answered"},
    )
    assert ok.status_code == 200
    back = post(
        live_stack,
        json={
            "action": "update_call",
            "call_id": data["call_id"],
            "call_status": "ringing",
            "comment": "late",
        },
    )
    assert back.status_code == 409
    assert error_of(back)["code"] == "final_status"
    call = get_call(live_stack, data["call_id"])
    assert call.state == call.STATE_ANSWERED and list(call.ticket.comments) == []


def test_32_concurrent_creates_with_one_pbx_call_id(live_stack: LiveStack) -> None:
    body = {
        "action": "create_call",
        "direction": "incoming",
        "phone": "+74950000032",
        "pbx_call_id": "concurrent-32",
    }
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        responses = list(pool.map(lambda _: post(live_stack, json=body), range(32)))
    assert [r.status_code for r in responses] == [200] * 32
    assert len({r.json()["data"]["call_id"] for r in responses}) == 1
    assert len({r.json()["data"]["ticket_id"] for r in responses}) == 1


def test_idempotency_key_replays_the_first_reply(live_stack: LiveStack) -> None:
    body = {"action": "create_call", "direction": "incoming", "phone": "+74950000033"}
    headers = {"Idempotency-Key": "retry-1"}
    first = post(live_stack, json=body, headers=headers)
    second = post(live_stack, json=body, headers=headers)
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"content": b"{not json", "headers": {"Content-Type": "application/json"}}, 400, None),
        ({"content": b"[1, 2]", "headers": {"Content-Type": "application/json"}}, 400, None),
        ({"content": b"action=create_call", "headers": {"Content-Type": "text/plain"}}, 415, None),
        ({"json": {"action": "create_call"}}, 422, "invalid_request"),
        ({"json": {"action": "explode"}}, 422, "invalid_request"),
        ({"json": {}}, 422, "invalid_request"),
        (
            {"json": {"action": "create_call", "direction": "sideways", "phone": "1"}},
            422,
            "invalid_request",
        ),
        (
            {
                "json": {
                    "action": "create_call",
                    "direction": "incoming",
                    "phone": "1",
                    "user_ids": [1],
                    "group_ids": [10],
                }
            },
            422,
            "invalid_request",
        ),
        (
            {
                "json": {
                    "action": "create_call",
                    "direction": "incoming",
                    "phone": "1",
                    "user_ids": ["x"],
                }
            },
            422,
            "invalid_request",
        ),
        (
            {
                "json": {
                    "action": "update_call",
                    "call_id": 1,
                    "pbx_call_id": "a",
                    "call_status": "answered",
                }
            },
            422,
            "invalid_request",
        ),
        (
            {"json": {"action": "update_call", "call_id": 99999999, "call_status": "answered"}},
            404,
            "not_found",
        ),
        (
            {"json": {"action": "update_call", "call_id": -5, "call_status": "answered"}},
            422,
            "invalid_request",
        ),
        (
            {"json": {"action": "update_call", "call_id": 10**30, "call_status": "answered"}},
            422,
            "invalid_request",
        ),
    ],
)
def test_bad_inputs_get_clear_errors(
    live_stack: LiveStack, kwargs: dict[str, Any], status: int, code: str | None
) -> None:
    response = post(live_stack, **kwargs)
    assert response.status_code == status, response.text
    error = error_of(response)
    if code is not None:
        assert error["code"] == code
    if status == 422 and "json" in kwargs and kwargs["json"].get("action") == "create_call":
        assert error.get("fields"), error


def test_missing_fields_are_named(live_stack: LiveStack) -> None:
    response = post(live_stack, json={"action": "create_call"})
    assert set(error_of(response)["fields"]) == {"direction", "phone"}


def test_unknown_and_rotated_keys_are_404_without_a_hint(live_stack: LiveStack) -> None:
    body = {"action": "create_call", "direction": "incoming", "phone": "1"}
    unknown = httpx.post(f"{live_stack.http_url}/api/v2/telephony/calls/no-such-key", json=body)
    assert unknown.status_code == 404
    assert "no-such-key" not in unknown.text


def test_oversize_body_is_413(live_stack: LiveStack) -> None:
    response = post(
        live_stack,
        json={
            "action": "create_call",
            "direction": "incoming",
            "phone": "1",
            "comment": "x" * (2 * 1024 * 1024),
        },
    )
    assert response.status_code == 413
    error_of(response)


def test_nothing_changes_on_error(live_stack: LiveStack) -> None:
    import grpc

    from telephony.v1 import call_service_pb2, call_service_pb2_grpc

    def count() -> int:
        with grpc.insecure_channel(live_stack.grpc_target) as channel:
            stub = call_service_pb2_grpc.CallServiceStub(channel)
            reply = stub.ListCalls(
                call_service_pb2.ListCallsRequest(page_size=500),
                metadata=[("authorization", f"Bearer {live_stack.admin_token}")],
            )
            return len(reply.calls)

    before = count()
    for body in (
        {"action": "create_call", "direction": "incoming"},
        {
            "action": "create_call",
            "direction": "incoming",
            "phone": "1",
            "user_ids": [1],
            "pbx_user_ids": ["101"],
        },
    ):
        assert post(live_stack, json=body).status_code == 422
    assert count() == before


def test_healthz_and_openapi(live_stack: LiveStack) -> None:
    health = httpx.get(f"{live_stack.http_url}/healthz")
    assert health.status_code == 200 and health.json()["core"] == "ok"
    spec = httpx.get(f"{live_stack.http_url}/openapi.json").json()
    assert spec["openapi"].startswith("3.1")
    assert "/api/v2/telephony/calls/{channel_key}" in spec["paths"]


def test_core_down_gives_503_and_service_resumes(tmp_path: Path) -> None:
    stack = LiveStack(tmp_path)
    try:
        stack.start_core()
        stack.start_gateway()
        body = {"action": "create_call", "direction": "incoming", "phone": "1"}
        assert post(stack, json=body).status_code == 200
        stack.stop_core()
        down = post(stack, json=body)
        assert down.status_code == 503
        assert down.headers.get("Retry-After")
        assert error_of(down)["code"]
        health = httpx.get(f"{stack.http_url}/healthz")
        assert health.status_code == 503
        stack.start_core()
        # The gateway reconnects by itself within about a second.
        deadline = time.monotonic() + 10
        while httpx.get(f"{stack.http_url}/healthz").status_code != 200:
            assert time.monotonic() < deadline, "the gateway did not reconnect to core"
            time.sleep(0.1)
        assert post(stack, json=body).status_code == 200
    finally:
        stack.stop()
