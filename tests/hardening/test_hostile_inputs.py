"""Hand-written hostile requests against the live gateway and core.

Each gets a 4xx with a clear JSON error, changes nothing (core lists as many
calls after it as before), and no request ever gets a 5xx.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import LiveStack
from tests.hardening.support import Core, call_body, error_of, started

pytestmark = pytest.mark.e2e

B = "hostile-boundary"
MULTIPART = f"multipart/form-data; boundary={B}"
JSON = "application/json"
URLENCODED = "application/x-www-form-urlencoded"


@dataclass
class Live:
    stack: LiveStack
    core: Core
    client: httpx.Client


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with started(tmp_path_factory.mktemp("hostile"), {"VATS_RATE_LIMIT": "0"}) as stack:
        core = Core(stack)
        with httpx.Client(timeout=30) as client:
            yield Live(stack, core, client)
        core.close()
        for name in ("gateway", "core"):
            assert "Traceback" not in stack.log(name), stack.log(name)[-3000:]


def part(name: str | None, value: bytes | str, extra: str = "") -> bytes:
    data = value.encode() if isinstance(value, str) else value
    disposition = f'form-data; name="{name}"' if name is not None else "form-data"
    return f"--{B}\r\nContent-Disposition: {disposition}\r\n{extra}\r\n".encode() + data + b"\r\n"


def multipart(*parts: bytes, close: bool = True) -> bytes:
    return b"".join(parts) + (f"--{B}--\r\n".encode() if close else b"")


CREATE_PARTS = (
    part("action", "create_call"),
    part("direction", "incoming"),
    part("phone", "+74951234567"),
)
VALID_MULTIPART = multipart(*CREATE_PARTS)
VALID_JSON = json.dumps(call_body()).encode()


def raw_json(text: str | bytes) -> dict[str, Any]:
    body = text.encode() if isinstance(text, str) else text
    return {"content": body, "headers": {"Content-Type": JSON}}


def typed(body: bytes, content_type: str) -> dict[str, Any]:
    return {"content": body, "headers": {"Content-Type": content_type}}


def deep(depth: int) -> bytes:
    return b'{"action": "create_call", "comment": ' + b"[" * depth + b"]" * depth + b"}"


# (id, request keyword arguments, status, error code, field at fault or None)
CASES: list[tuple[str, dict[str, Any], int, str, str | None]] = [
    # Malformed multipart
    (
        "multipart-boundary-not-in-body",
        typed(VALID_MULTIPART, "multipart/form-data; boundary=other"),
        400,
        "bad_request",
        None,
    ),
    (
        "multipart-no-boundary",
        typed(VALID_MULTIPART, "multipart/form-data"),
        400,
        "bad_request",
        None,
    ),
    (
        "multipart-truncated-in-headers",
        typed(VALID_MULTIPART[:60], MULTIPART),
        400,
        "bad_request",
        None,
    ),
    (
        "multipart-truncated-in-value",
        typed(VALID_MULTIPART[: VALID_MULTIPART.index(b"incoming") + 3], MULTIPART),
        400,
        "bad_request",
        None,
    ),
    (
        "multipart-no-closing-boundary",
        typed(multipart(*CREATE_PARTS, close=False), MULTIPART),
        400,
        "bad_request",
        None,
    ),
    (
        "multipart-part-without-name",
        typed(multipart(part(None, "create_call")), MULTIPART),
        422,
        "invalid_request",
        "action",
    ),
    (
        "multipart-part-without-disposition",
        typed(f"--{B}\r\n\r\ncreate_call\r\n--{B}--\r\n".encode(), MULTIPART),
        400,
        "bad_request",
        None,
    ),
    (
        "multipart-part-headers-over-8k",
        typed(multipart(part("action", "create_call", "X-Pad: " + "p" * 9000 + "\r\n")), MULTIPART),
        400,
        "bad_request",
        None,
    ),
    # Thousands of fields
    (
        "multipart-5000-parts",
        typed(multipart(*CREATE_PARTS, *(part(f"f{i}", "v") for i in range(5000))), MULTIPART),
        413,
        "payload_too_large",
        None,
    ),
    (
        "urlencoded-5000-fields",
        typed(
            (
                "action=create_call&direction=incoming&phone=1&"
                + "&".join(f"f{i}=v" for i in range(5000))
            ).encode(),
            URLENCODED,
        ),
        413,
        "payload_too_large",
        None,
    ),
    (
        "json-5000-members",
        {"json": {**call_body(), **{f"f{i}": "v" for i in range(5000)}}},
        413,
        "payload_too_large",
        None,
    ),
    # A 10 MB comment, in every body type
    (
        "json-10mb-comment",
        {"json": call_body(comment="x" * 10_000_000)},
        413,
        "payload_too_large",
        None,
    ),
    (
        "multipart-10mb-comment",
        typed(multipart(*CREATE_PARTS, part("comment", "x" * 10_000_000)), MULTIPART),
        413,
        "payload_too_large",
        None,
    ),
    (
        # Each field under VATS_MAX_FIELD_KB (64 KB), together over VATS_MAX_BODY_KB (1 MB).
        "multipart-30-fields-of-60kb",
        typed(
            multipart(*CREATE_PARTS, *(part(f"x{i}", "x" * 60_000) for i in range(30))), MULTIPART
        ),
        413,
        "payload_too_large",
        None,
    ),
    (
        "urlencoded-10mb-comment",
        typed(
            b"action=create_call&direction=incoming&phone=1&comment=" + b"x" * 10_000_000,
            URLENCODED,
        ),
        413,
        "payload_too_large",
        None,
    ),
    # NUL bytes
    (
        "json-nul-in-phone",
        {"json": call_body(phone="+7495\x001234567")},
        422,
        "invalid_request",
        "phone",
    ),
    (
        "json-nul-in-comment",
        {"json": call_body(comment="a\x00b")},
        422,
        "invalid_request",
        "comment",
    ),
    (
        "json-nul-in-pbx-call-id",
        {"json": call_body(pbx_call_id="x\x00")},
        422,
        "invalid_request",
        "pbx_call_id",
    ),
    (
        "json-nul-in-pbx-user-ids",
        {"json": call_body(pbx_user_ids=["101\x00"])},
        422,
        "invalid_request",
        "pbx_user_ids",
    ),
    (
        "multipart-nul-in-phone",
        typed(
            multipart(
                part("action", "create_call"),
                part("direction", "incoming"),
                part("phone", b"12\x0034"),
            ),
            MULTIPART,
        ),
        422,
        "invalid_request",
        "phone",
    ),
    (
        "urlencoded-nul-in-comment",
        typed(b"action=create_call&direction=incoming&phone=1&comment=a%00b", URLENCODED),
        422,
        "invalid_request",
        "comment",
    ),
    # Invalid UTF-8 and unpaired surrogates
    (
        "json-invalid-utf8",
        raw_json(b'{"action": "create_call", "phone": "1\xff\xfe"}'),
        400,
        "bad_request",
        None,
    ),
    (
        "multipart-invalid-utf8-value",
        typed(multipart(part("action", "create_call"), part("phone", b"\xff\xfe")), MULTIPART),
        400,
        "bad_request",
        None,
    ),
    (
        "multipart-invalid-utf8-name",
        typed(
            multipart(
                part("action", "create_call"),
                b"--"
                + B.encode()
                + b'\r\nContent-Disposition: form-data; name="ph\xffone"\r\n\r\n1\r\n',
            ),
            MULTIPART,
        ),
        400,
        "bad_request",
        None,
    ),
    (
        "urlencoded-invalid-utf8",
        typed(b"action=create_call&phone=%ff%fe", URLENCODED),
        400,
        "bad_request",
        None,
    ),
    (
        "json-unpaired-surrogate-in-phone",
        raw_json('{"action": "create_call", "direction": "incoming", "phone": "1\\ud800"}'),
        422,
        "invalid_request",
        "phone",
    ),
    (
        "json-unpaired-surrogate-in-comment",
        raw_json(
            '{"action": "create_call", "direction": "incoming", "phone": "1", "comment": "\\udfff"}'
        ),
        422,
        "invalid_request",
        "comment",
    ),
    # Charsets that are no text encodings
    (
        "json-charset-base64",
        typed(VALID_JSON, "application/json; charset=base64"),
        415,
        "unsupported_media_type",
        None,
    ),
    (
        "json-charset-rot13",
        typed(VALID_JSON, "application/json; charset=rot13"),
        415,
        "unsupported_media_type",
        None,
    ),
    (
        "urlencoded-charset-zlib",
        typed(b"action=create_call", URLENCODED + "; charset=zlib"),
        415,
        "unsupported_media_type",
        None,
    ),
    (
        "multipart-part-charset-hex",
        typed(
            multipart(part("action", "create_call", "Content-Type: text/plain; charset=hex\r\n")),
            MULTIPART,
        ),
        415,
        "unsupported_media_type",
        None,
    ),
    # Negative and huge ids
    (
        "update-negative-call-id",
        {"json": {"action": "update_call", "call_id": -1, "call_status": "answered"}},
        422,
        "invalid_request",
        "call_id",
    ),
    (
        "update-call-id-over-int64",
        {"json": {"action": "update_call", "call_id": 2**63, "call_status": "answered"}},
        422,
        "invalid_request",
        "call_id",
    ),
    (
        "update-call-id-40-digits",
        {"json": {"action": "update_call", "call_id": "9" * 40, "call_status": "answered"}},
        422,
        "invalid_request",
        "call_id",
    ),
    (
        "update-negative-user-id",
        {"json": {"action": "update_call", "call_id": 1, "user_id": -7, "call_status": "answered"}},
        422,
        "invalid_request",
        "user_id",
    ),
    (
        "create-negative-user-ids",
        {"json": call_body(user_ids=[-1])},
        422,
        "invalid_request",
        "user_ids",
    ),
    (
        "create-negative-group-ids",
        {"json": call_body(group_ids=["-10"])},
        422,
        "invalid_request",
        "group_ids",
    ),
    (
        "create-user-ids-over-int64",
        {"json": call_body(user_ids=[2**64])},
        422,
        "invalid_request",
        "user_ids",
    ),
    (
        "json-number-of-5000-digits",
        raw_json(
            '{"action": "update_call", "call_status": "answered", "call_id": 1' + "0" * 5000 + "}"
        ),
        400,
        "bad_request",
        None,
    ),
    # Arrays of 100,000 ids
    (
        "create-100k-user-ids",
        {"json": call_body(user_ids=list(range(1, 100_001)))},
        422,
        "invalid_request",
        "user_ids",
    ),
    (
        "create-100k-group-ids",
        {"json": call_body(group_ids=[10] * 100_000)},
        422,
        "invalid_request",
        "group_ids",
    ),
    (
        "create-100k-pbx-user-ids",
        {"json": call_body(pbx_user_ids=["101"] * 100_000)},
        422,
        "invalid_request",
        "pbx_user_ids",
    ),
    # A phone of 10 KB
    ("json-10kb-phone", {"json": call_body(phone="7" * 10_240)}, 422, "invalid_request", "phone"),
    (
        "multipart-10kb-phone",
        typed(
            multipart(
                part("action", "create_call"),
                part("direction", "incoming"),
                part("phone", "7" * 10_240),
            ),
            MULTIPART,
        ),
        422,
        "invalid_request",
        "phone",
    ),
    # Deeply nested JSON
    ("json-nested-100k-deep", raw_json(deep(100_000)), 400, "bad_request", None),
    (
        "json-nested-objects-50k-deep",
        raw_json(b'{"action": ' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_000 + b"}"),
        400,
        "bad_request",
        None,
    ),
    ("json-nested-500-deep", raw_json(deep(500)), 422, "invalid_request", "comment"),
    # Wrong content type with a valid body
    (
        "json-body-as-text-plain",
        typed(VALID_JSON, "text/plain"),
        415,
        "unsupported_media_type",
        None,
    ),
    ("json-body-as-xml", typed(VALID_JSON, "application/xml"), 415, "unsupported_media_type", None),
    (
        "json-body-without-content-type",
        {"content": VALID_JSON},
        415,
        "unsupported_media_type",
        None,
    ),
    ("json-body-as-urlencoded", typed(VALID_JSON, URLENCODED), 400, "bad_request", None),
    ("json-body-as-multipart", typed(VALID_JSON, MULTIPART), 400, "bad_request", None),
    ("multipart-body-as-json", typed(VALID_MULTIPART, JSON), 400, "bad_request", None),
    ("json-array-body", raw_json("[1, 2, 3]"), 400, "bad_request", None),
    # Idempotency-Key abuse that HTTP lets through
    (
        "idempotency-key-of-5000-chars",
        {"json": call_body(), "headers": {"Idempotency-Key": "k" * 5000}},
        422,
        "invalid_request",
        "Idempotency-Key",
    ),
    # Unknown or malformed action
    (
        "unknown-action",
        {"json": {"action": "drop_calls", "call_id": 1}},
        422,
        "invalid_request",
        "action",
    ),
    (
        "action-as-array",
        {"json": {**call_body(), "action": ["create_call"]}},
        422,
        "invalid_request",
        "action",
    ),
    (
        "action-as-object",
        {"json": {**call_body(), "action": {"$ne": None}}},
        422,
        "invalid_request",
        "action",
    ),
    (
        "status-as-object",
        {"json": call_body(call_status={"$gt": ""})},
        422,
        "invalid_request",
        "call_status",
    ),
    (
        "phone-as-object",
        {"json": call_body(phone={"$regex": ".*"})},
        422,
        "invalid_request",
        "phone",
    ),
]


@pytest.mark.parametrize(
    ("kwargs", "status", "code", "field"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_hostile_request_gets_a_clear_4xx_and_changes_nothing(
    live: Live, kwargs: dict[str, Any], status: int, code: str, field: str | None
) -> None:
    before = live.core.count_calls()
    response = live.client.post(live.stack.calls_url, **kwargs)
    assert response.status_code == status, response.text[:500]
    error = error_of(response)
    assert error["code"] == code, error
    if field is not None:
        assert field in error.get("fields", {}), error
    assert live.core.count_calls() == before


def raw_request(stack: LiveStack, head: bytes, body: bytes = b"") -> bytes:
    """Sends bytes no HTTP client library would send; returns what came back."""
    with socket.create_connection(("127.0.0.1", stack.http_port), timeout=10) as sock:
        sock.sendall(head + b"\r\n\r\n" + body)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize(
    "header",
    [
        b"Idempotency-Key: a\r\nX-Injected: yes",
        b"Idempotency-Key: a\rX-Injected: yes",
        b"Idempotency-Key: a\r\n X-Injected: yes",
        b"Idempotency-Key: a\x00X-Injected: yes",
        b"Idempotency-Key: a\x01b",
    ],
    ids=["crlf", "bare-cr", "obs-fold", "nul", "control-char"],
)
def test_header_injection_in_idempotency_key_injects_nothing(live: Live, header: bytes) -> None:
    before = live.core.count_calls()
    path = f"/api/v2/telephony/calls/{live.stack.channel_key}".encode()
    head = (
        b"POST "
        + path
        + b" HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
        + header
        + b"\r\nContent-Length: "
        + str(len(VALID_JSON)).encode()
        + b"\r\nConnection: close"
    )
    reply = raw_request(live.stack, head, VALID_JSON)
    status_line, _, rest = reply.partition(b"\r\n")
    headers = rest.partition(b"\r\n\r\n")[0].lower()
    assert b"x-injected" not in headers
    if header.startswith(b"Idempotency-Key: a\r\nX-Injected"):
        # Two well-formed headers: the key is just "a", and X-Injected is a header
        # the gateway ignores. The call is made, and no reply header echoes either.
        assert status_line.startswith(b"HTTP/1.1 200"), reply[:300]
        assert live.core.count_calls() == before + 1
    else:
        # The HTTP parser refuses the request before the application sees it.
        assert status_line.startswith(b"HTTP/1.1 400"), reply[:300]
        assert live.core.count_calls() == before


def test_odd_but_legal_idempotency_key_replays_the_first_reply(live: Live) -> None:
    headers = {b"Idempotency-Key": "ключ-1 'x' \"y\" <z>; drop".encode()}
    first = live.client.post(live.stack.calls_url, json=call_body(), headers=headers)
    second = live.client.post(live.stack.calls_url, json=call_body(), headers=headers)
    assert first.status_code == second.status_code == 200, first.text
    assert first.json() == second.json()


def _records(live: Live, recording_id: str, **kwargs: Any) -> httpx.Response:
    url = f"{live.stack.http_url}/api/v2/telephony/records/{recording_id}"
    return live.client.get(url, **kwargs)


SERVICE = {"Authorization": "Bearer demo-service"}
GET_CASES: list[tuple[str, Callable[[Live], httpx.Response], int, str]] = [
    (
        "record-id-of-10k-chars",
        lambda lv: _records(lv, "a" * 10_000, headers=SERVICE),
        404,
        "not_found",
    ),
    (
        "record-id-encoded-surrogate",
        lambda lv: _records(lv, "%ED%A0%80", headers=SERVICE),
        404,
        "not_found",
    ),
    (
        "record-range-past-int64",
        lambda lv: _records(lv, "abc", headers={**SERVICE, "Range": "bytes=" + "9" * 30 + "-"}),
        404,
        "not_found",
    ),
    (
        "record-range-of-5000-digits",
        lambda lv: _records(lv, "abc", headers={**SERVICE, "Range": "bytes=0-" + "9" * 5000}),
        404,
        "not_found",
    ),
    (
        "record-signed-expires-past-int64",
        lambda lv: _records(lv, "abc", params={"expires": "9" * 30, "signature": "x"}),
        403,
        "permission_denied",
    ),
    (
        "record-token-of-20k-chars",
        lambda lv: _records(lv, "abc", headers={"Authorization": "Bearer " + "t" * 20_000}),
        401,
        "unauthenticated",
    ),
    (
        "stream-token-of-20k-chars",
        lambda lv: lv.client.get(
            f"{lv.stack.http_url}/api/v2/telephony/cards/stream",
            params={"access_token": "t" * 20_000},
        ),
        401,
        "unauthenticated",
    ),
    (
        "stream-token-with-nul",
        lambda lv: lv.client.get(
            f"{lv.stack.http_url}/api/v2/telephony/cards/stream",
            params={"access_token": "demo-anna\x00"},
        ),
        401,
        "unauthenticated",
    ),
    (
        "stream-negative-last-event-id",
        lambda lv: lv.client.get(
            f"{lv.stack.http_url}/api/v2/telephony/cards/stream",
            params={"access_token": "demo-anna", "last_event_id": "-1"},
        ),
        400,
        "bad_request",
    ),
    (
        "pbx-key-of-60k-chars",
        lambda lv: lv.client.post(
            f"{lv.stack.http_url}/api/v2/telephony/calls/{'k' * 60_000}", json=call_body()
        ),
        404,
        "not_found",
    ),
    ("pbx-get", lambda lv: lv.client.get(lv.stack.calls_url), 405, "method_not_allowed"),
]


@pytest.mark.parametrize(
    ("send", "status", "code"), [pytest.param(*case[1:], id=case[0]) for case in GET_CASES]
)
def test_hostile_lookups_get_a_clear_4xx(
    live: Live, send: Callable[[Live], httpx.Response], status: int, code: str
) -> None:
    before = live.core.count_calls()
    response = send(live)
    assert response.status_code == status, response.text[:500]
    assert error_of(response)["code"] == code
    assert live.core.count_calls() == before
