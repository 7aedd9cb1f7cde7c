"""How the gateway reads PBX bodies: cut-off and refused ones keep no recording in core; JSON sent
as a form is named as such; which text is acceptable is left to core."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
import pytest
from falcon.testing import ASGIConductor
from grpc_health.v1 import health, health_pb2_grpc

from gateway import bodies
from gateway.app import create_app
from gateway.config import Config
from telephony.v1 import call_service_pb2, call_service_pb2_grpc
from tests.gateway.gateway_fakes import SERVICE_TOKEN, Failure, FakeCallService, raw_multipart

PATH = "/api/v2/telephony/calls/demo-key"
MULTIPART = "multipart/form-data; boundary=b0und"
FORM = "application/x-www-form-urlencoded"


class WatchedCalls(FakeCallService):
    """Tells uploads core would keep (the gateway finished them) from those it cancelled."""

    def __init__(self) -> None:
        super().__init__()
        self.finished = 0
        self.cancelled = 0
        self.upload_ended = asyncio.Event()

    async def UploadRecord(
        self, request_iterator: AsyncIterator[call_service_pb2.UploadRecordRequest], context: Any
    ) -> call_service_pb2.UploadRecordResponse:
        try:
            reply = await super().UploadRecord(request_iterator, context)
            # grpc.aio ends the request stream as if complete when the client cancels while
            # the server waits for the next message; the cancellation lands a moment later.
            await asyncio.sleep(0.5)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        else:
            self.finished += 1
            return reply
        finally:
            self.upload_ended.set()


@pytest.fixture
async def core() -> AsyncIterator[tuple[WatchedCalls, str]]:
    calls = WatchedCalls()
    server = grpc.aio.server()
    call_service_pb2_grpc.add_CallServiceServicer_to_server(calls, server)
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield calls, f"127.0.0.1:{port}"
    finally:
        await server.stop(grace=None)


@pytest.fixture
def calls(core: tuple[WatchedCalls, str]) -> WatchedCalls:
    return core[0]


@pytest.fixture
def app(core: tuple[WatchedCalls, str]) -> Any:
    return create_app(
        Config(
            {
                "VATS_CORE_TARGET": core[1],
                "VATS_SERVICE_TOKEN": SERVICE_TOKEN,
                "VATS_MAX_RECORD_MB": "1",
                "VATS_CORE_TIMEOUT": "5",
            }
        )
    )


async def cut_off(
    app: Any, content_type: str, body: bytes, sent: int
) -> tuple[int, dict[str, Any]]:
    """POSTs `body`, of which only the first `sent` bytes arrive before the client goes away."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": PATH,
        "raw_path": PATH.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"gw.test"),
            (b"content-type", content_type.encode()),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8080),
    }
    events: list[dict[str, Any]] = [
        {"type": "http.request", "body": body[i : min(i + 4096, sent)], "more_body": True}
        for i in range(0, sent, 4096)
    ]

    async def receive() -> dict[str, Any]:
        if events:
            return events.pop(0)
        return {"type": "http.disconnect"}

    sent_messages: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent_messages.append(message)

    await asyncio.wait_for(app(scope, receive, send), timeout=30)
    start = next(m for m in sent_messages if m["type"] == "http.response.start")
    content = b"".join(
        m.get("body", b"") for m in sent_messages if m["type"] == "http.response.body"
    )
    return start["status"], json.loads(content)


async def upload_ended(calls: WatchedCalls) -> None:
    # The gateway answers once it has cancelled; core's side of it may end a moment later.
    await asyncio.wait_for(calls.upload_ended.wait(), timeout=10)


RECORDING = b"\x01" * (300 * 1024)
# A create_call whose recording comes before its fields: the upload starts at once.
RECORDING_THEN_FIELDS: list[tuple[str, str | None, bytes]] = [
    ("audio_record", "call.wav", RECORDING),
    ("action", None, b"create_call"),
    ("direction", None, b"incoming"),
    ("phone", None, b"+74951234567"),
]


async def test_multipart_cut_off_inside_the_recording_is_400_and_keeps_nothing(
    app: Any, calls: WatchedCalls
) -> None:
    body = raw_multipart(
        [
            ("action", None, b"create_call"),
            ("direction", None, b"incoming"),
            ("phone", None, b"+74951234567"),
            ("audio_record", "call.wav", RECORDING),
        ]
    )
    status, answer = await cut_off(app, MULTIPART, body, len(body) // 2)
    assert status == 400
    assert "ended early" in answer["error"]["message"]
    await upload_ended(calls)
    assert (calls.finished, calls.cancelled) == (0, 1)
    assert calls.received == []


async def test_multipart_cut_off_after_the_recording_is_400_and_keeps_nothing(
    app: Any, calls: WatchedCalls
) -> None:
    body = raw_multipart(RECORDING_THEN_FIELDS)
    status, answer = await cut_off(app, MULTIPART, body, len(body) - 40)
    assert status == 400
    assert "ended early" in answer["error"]["message"]
    await upload_ended(calls)
    assert (calls.finished, calls.cancelled) == (0, 1)
    assert calls.received == []


async def test_form_cut_off_is_400_and_reaches_no_core(app: Any, calls: WatchedCalls) -> None:
    body = b"action=create_call&direction=incoming&phone=%2B74951234567&comment=" + b"x" * 500
    status, answer = await cut_off(app, FORM, body, 60)
    assert status == 400
    assert "ended early" in answer["error"]["message"]
    assert calls.received == []


@pytest.mark.parametrize(
    ("after", "field"),
    [
        ([("call_status", None, b"dreaming")], "call_status"),
        ([("audio_record", None, b"http://elsewhere/a.mp3")], "audio_record"),
        ([("audio_record", "second.wav", b"RIFF")], "audio_record"),
    ],
)
async def test_form_refused_after_its_recording_keeps_nothing(
    app: Any, calls: WatchedCalls, after: list[tuple[str, str | None, bytes]], field: str
) -> None:
    body = raw_multipart(
        [
            ("action", None, b"create_call"),
            ("direction", None, b"incoming"),
            ("audio_record", "call.wav", RECORDING),
            ("phone", None, b"+74951234567"),
            *after,
        ]
    )
    async with ASGIConductor(app) as gateway:
        result = await gateway.simulate_post(PATH, body=body, content_type=MULTIPART)
    assert result.status_code == 422, result.text
    assert field in result.json["error"]["fields"]
    await upload_ended(calls)
    assert (calls.finished, calls.cancelled) == (0, 1)
    assert calls.received == []


async def test_whole_multipart_upload_is_finished_and_attached(
    app: Any, calls: WatchedCalls
) -> None:
    body = raw_multipart(RECORDING_THEN_FIELDS)
    async with ASGIConductor(app) as gateway:
        result = await gateway.simulate_post(PATH, body=body, content_type=MULTIPART)
    assert result.status_code == 200, result.text
    assert (calls.finished, calls.cancelled) == (1, 0)
    (request,) = calls.received
    assert request.recording_id == "rec-1"


@pytest.mark.parametrize(
    "body",
    [
        '{"action": "create_call", "direction": "incoming", "phone": "+74951234567"}',
        ' \r\n{"action":"update_call","call_id":725,"call_status":"answered"}\n',
        "{}",
    ],
)
async def test_json_sent_as_a_form_is_400_naming_the_content_type(
    app: Any, calls: WatchedCalls, body: str
) -> None:
    # What `curl -d '{...}'` sends: curl's default type is the urlencoded form.
    async with ASGIConductor(app) as gateway:
        result = await gateway.simulate_post(PATH, body=body, content_type=FORM)
    assert result.status_code == 400, result.text
    assert result.json["error"]["code"] == "bad_request"
    assert "Content-Type: application/json" in result.json["error"]["message"]
    assert calls.received == []


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ("action=create_call&direction=incoming&phone=1&comment=%7B%22a%22%3A1%7D", 200),
        ('{"action": "create_call"', 422),
        ("[1, 2]", 422),
    ],
)
async def test_forms_that_only_look_like_json_are_read_as_forms(
    app: Any, body: str, status: int
) -> None:
    async with ASGIConductor(app) as gateway:
        result = await gateway.simulate_post(PATH, body=body, content_type=FORM)
    assert result.status_code == status, result.text


async def test_nul_characters_are_left_to_core_rules(app: Any, calls: WatchedCalls) -> None:
    # Which text is acceptable is core's rule, applied the same to gRPC callers: the
    # gateway passes the fields on as sent, and core's field violations come back as 422.
    calls.failure = Failure(
        grpc.StatusCode.INVALID_ARGUMENT,
        "invalid_request",
        fields={"comment": "must not contain NUL characters"},
    )
    body = {"action": "create_call", "direction": "incoming", "phone": "1", "comment": "a\x00b"}
    async with ASGIConductor(app) as gateway:
        result = await gateway.simulate_post(PATH, json=body)
    assert result.status_code == 422, result.text
    assert result.json["error"]["fields"] == {"comment": "must not contain NUL characters"}
    (request,) = calls.received
    assert request.comment == "a\x00b"


async def test_unpaired_surrogates_cannot_travel_to_core(app: Any, calls: WatchedCalls) -> None:
    body = '{"action": "create_call", "direction": "incoming", "phone": "1", "comment": "\\udfff"}'
    async with ASGIConductor(app) as gateway:
        result = await gateway.simulate_post(PATH, body=body, content_type="application/json")
    assert result.status_code == 422, result.text
    assert set(result.json["error"]["fields"]) == {"comment"}
    assert calls.received == []


# --- a multipart body read whole (small) or as it streams in: the same answers ---------------

SMALL_RECORDING = b"RIFF" + b"\x02" * 4000
CREATE_FIELDS: list[tuple[str, str | None, bytes]] = [
    ("action", None, b"create_call"),
    ("direction", None, b"incoming"),
    ("phone", None, b"+74951234567"),
]


@pytest.fixture(params=["read whole", "streamed"])
def small_app(
    request: pytest.FixtureRequest, core: tuple[WatchedCalls, str], monkeypatch: pytest.MonkeyPatch
) -> Any:
    """The gateway with small form limits; its multipart bodies read whole before they are
    parsed (all of these are small), or, with no body small enough, parsed as they arrive."""
    if request.param == "streamed":
        monkeypatch.setattr(bodies, "BUFFERED_MULTIPART_BYTES", 0)
    return create_app(
        Config(
            {
                "VATS_CORE_TARGET": core[1],
                "VATS_SERVICE_TOKEN": SERVICE_TOKEN,
                "VATS_MAX_FIELD_KB": "1",
                "VATS_MAX_FORM_PARTS": "6",
                "VATS_CORE_TIMEOUT": "5",
            }
        )
    )


async def post_multipart(app: Any, parts: list[tuple[str, str | None, bytes]]) -> Any:
    async with ASGIConductor(app) as gateway:
        return await gateway.simulate_post(PATH, body=raw_multipart(parts), content_type=MULTIPART)


async def test_small_multipart_form_reaches_core_as_sent(
    small_app: Any, calls: WatchedCalls
) -> None:
    result = await post_multipart(
        small_app,
        [*CREATE_FIELDS, ("comment", None, "звонок".encode()), ("user_ids[]", None, b"7")],
    )
    assert result.status_code == 200, result.text
    (request,) = calls.received
    assert (request.phone, request.comment, list(request.user_ids)) == (
        "+74951234567",
        "звонок",
        [7],
    )
    assert calls.upload_metadata == []


@pytest.mark.parametrize("recording_first", [True, False])
async def test_small_recording_is_uploaded_whole_and_attached(
    small_app: Any, calls: WatchedCalls, recording_first: bool
) -> None:
    recording = ("audio_record", "call.wav", SMALL_RECORDING)
    parts = [recording, *CREATE_FIELDS] if recording_first else [*CREATE_FIELDS, recording]
    result = await post_multipart(small_app, parts)
    assert result.status_code == 200, result.text
    assert (calls.finished, calls.cancelled) == (1, 0)
    assert calls.upload_chunks == [len(SMALL_RECORDING)]
    (request,) = calls.received
    assert request.recording_id == "rec-1"


@pytest.mark.parametrize(
    ("parts", "status", "field"),
    [
        ([*CREATE_FIELDS, ("comment", None, b"x" * 1100)], 413, None),
        ([*CREATE_FIELDS, *[("comment", None, b"c")] * 4], 413, None),
        ([*CREATE_FIELDS, ("audio_record", "empty.wav", b"")], 422, "audio_record"),
        ([*CREATE_FIELDS, ("call_status", None, b"dreaming")], 422, "call_status"),
    ],
    ids=["field over the limit", "too many parts", "empty recording", "bad field"],
)
async def test_small_multipart_refusals_reach_no_core(
    small_app: Any,
    calls: WatchedCalls,
    parts: list[tuple[str, str | None, bytes]],
    status: int,
    field: str | None,
) -> None:
    result = await post_multipart(small_app, parts)
    assert result.status_code == status, result.text
    if field is not None:
        assert field in result.json["error"]["fields"]
    assert calls.received == []
    assert calls.upload_metadata == []


async def test_small_form_refused_after_its_recording_keeps_nothing(
    small_app: Any, calls: WatchedCalls
) -> None:
    parts = [
        ("audio_record", "call.wav", SMALL_RECORDING),
        *CREATE_FIELDS,
        ("audio_record", "second.wav", SMALL_RECORDING),
    ]
    result = await post_multipart(small_app, parts)
    assert result.status_code == 422, result.text
    assert "audio_record" in result.json["error"]["fields"]
    await upload_ended(calls)
    assert (calls.finished, calls.cancelled) == (0, 1)
    assert calls.received == []


@pytest.mark.parametrize(
    "body",
    [
        b'--b0und\r\nContent-Disposition: form-data; name="action"\r\n\r\ncreate_call',
        b"no boundary anywhere",
        b"--b0und\r\nContent-Transfer-Encoding: base64\r\n\r\nx\r\n--b0und--\r\n",
    ],
    ids=["unterminated", "no boundary", "encoded part"],
)
async def test_small_malformed_multipart_is_400(
    small_app: Any, calls: WatchedCalls, body: bytes
) -> None:
    async with ASGIConductor(small_app) as gateway:
        result = await gateway.simulate_post(PATH, body=body, content_type=MULTIPART)
    assert result.status_code == 400, result.text
    assert result.json["error"]["code"] == "bad_request"
    assert calls.received == []


async def test_small_multipart_cut_off_is_400(small_app: Any, calls: WatchedCalls) -> None:
    body = raw_multipart([*CREATE_FIELDS, ("audio_record", "call.wav", SMALL_RECORDING)])
    status, answer = await cut_off(small_app, MULTIPART, body, len(body) - 100)
    assert status == 400
    assert "ended early" in answer["error"]["message"]
    assert calls.received == []
