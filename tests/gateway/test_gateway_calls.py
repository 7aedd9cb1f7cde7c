"""The PBX endpoint against a fake core: what core is asked, what the PBX is answered."""

# ruff: noqa: RUF001 - Cyrillic look-alikes are what these tests are about.
from __future__ import annotations

import json

import grpc
import pytest
from falcon.testing import ASGIConductor

from gateway.app import create_app
from gateway.config import Config
from telephony.v1 import call_pb2, call_service_pb2
from tests.gateway.gateway_fakes import (
    SERVICE_TOKEN,
    Failure,
    FakeCore,
    multipart,
    raw_multipart,
    sample_call,
)

URL = "/api/v2/telephony/calls/@demo-key"
FORM = "application/x-www-form-urlencoded"
CREATE = "action=create_call&direction=outgoing&phone=777777777&call_status=ringing&comment=start"


async def test_published_curl_example_creates_a_call(
    gateway: ASGIConductor, fake_core: FakeCore
) -> None:
    body, content_type = multipart(
        [
            ("action", "create_call"),
            ("direction", "outgoing"),
            ("phone", "777777777"),
            ("call_status", "ringing"),
            ("comment", "start"),
        ]
    )
    result = await gateway.simulate_post(URL, body=body, content_type=content_type)

    assert result.status_code == 200
    assert result.json == {
        "data": {
            "call_id": 725,
            "pbx_call_id": None,
            "user_id": None,
            "pbx_user_id": None,
            "call_status": "ringing",
            "audio_record": None,
            "ticket_id": 8592,
        }
    }
    # The reply needs only what a brief outcome carries.
    assert fake_core.calls.brief_batches == [True]
    (request,) = fake_core.calls.received
    assert request == call_service_pb2.CreateCallRequest(
        channel=call_service_pb2.ChannelRef(channel_key="demo-key"),
        direction=call_pb2.DIRECTION_OUTGOING,
        phone="777777777",
        state=call_pb2.Call.STATE_RINGING,
        comment="start",
    )
    assert fake_core.calls.metadata[0]["authorization"] == f"Bearer {SERVICE_TOKEN}"


async def test_update_with_every_field_reaches_core_as_given(
    gateway: ASGIConductor, fake_core: FakeCore
) -> None:
    recording = call_pb2.Recording(recording_id="r", signed_path="/api/v2/telephony/records/r?x=1")
    fake_core.calls.reply = sample_call(
        pbx_call_id="p-1", user_id=1, pbx_user_id="101", recording=recording
    )
    result = await gateway.simulate_post(
        "/api/v2/telephony/calls/demo-key",
        body="action=update_call&call_id=725&pbx_call_id=p-1&call_status=in-progress"
        "&user_id=1&pbx_user_id=101&comment=hi",
        content_type=FORM,
        headers={"Idempotency-Key": "k-1"},
    )

    assert result.status_code == 200
    assert result.json["data"] == {
        "call_id": 725,
        "pbx_call_id": "p-1",
        "user_id": 1,
        "pbx_user_id": "101",
        "call_status": "ringing",
        "audio_record": "http://gw.test/api/v2/telephony/records/r?x=1",
        "ticket_id": 8592,
    }
    (request,) = fake_core.calls.received
    assert request == call_service_pb2.UpdateCallRequest(
        channel=call_service_pb2.ChannelRef(channel_key="demo-key"),
        call_id=725,
        pbx_call_id="p-1",
        state=call_pb2.Call.STATE_IN_PROGRESS,
        user_id=1,
        pbx_user_id="101",
        comment="hi",
        idempotency_key="k-1",
    )


async def test_json_body_with_charset_is_accepted(
    gateway: ASGIConductor, fake_core: FakeCore
) -> None:
    result = await gateway.simulate_post(
        URL,
        body=json.dumps({"action": "create_call", "phone": 123, "user_ids": [1, "2"]}),
        content_type="application/json; charset=UTF-8",
    )
    assert result.status_code == 200
    (request,) = fake_core.calls.received
    assert (request.phone, list(request.user_ids)) == ("123", [1, 2])


async def test_cyrillic_names_in_multipart_reach_core(
    gateway: ASGIConductor, fake_core: FakeCore
) -> None:
    body = raw_multipart(
        [("action", None, b"update_call"), ("саll_id", None, b"7"), ("соmment", None, b"ok")]
    )
    result = await gateway.simulate_post(
        URL, body=body, content_type="multipart/form-data; boundary=b0und"
    )
    assert result.status_code == 200
    (request,) = fake_core.calls.received
    assert (request.call_id, request.comment) == (7, "ok")


async def test_type_error_is_422_with_fields_and_core_is_not_called(
    gateway: ASGIConductor, fake_core: FakeCore
) -> None:
    result = await gateway.simulate_post(
        URL, body="action=create_call&user_ids[]=abc", content_type=FORM
    )
    assert result.status_code == 422
    assert result.json == {
        "error": {
            "code": "invalid_request",
            "message": "invalid fields: user_ids",
            "fields": {"user_ids": "must be a list of integers"},
        }
    }
    assert fake_core.calls.received == []


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [
        ("application/json", b"{not json", 400),
        ("application/json", b"[]", 400),
        ("multipart/form-data", b"--x\r\n", 400),
        ("multipart/form-data; boundary=zz", b"garbage without boundary", 400),
        ("text/plain", b"action=create_call", 415),
        (None, b"action=create_call", 415),
        ("application/x-www-form-urlencoded; charset=klingon", b"a=b", 415),
    ],
)
async def test_bodies_that_are_not_forms_are_refused(
    gateway: ASGIConductor, fake_core: FakeCore, content_type: str | None, body: bytes, status: int
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    result = await gateway.simulate_post(URL, body=body, headers=headers)
    assert result.status_code == status
    assert set(result.json["error"]) >= {"code", "message"}
    assert fake_core.calls.received == []


async def test_body_over_the_limit_is_413(gateway: ASGIConductor) -> None:
    result = await gateway.simulate_post(
        URL, body="action=create_call&comment=" + "x" * 20000, content_type=FORM
    )
    assert result.status_code == 413
    assert result.json["error"]["code"] == "payload_too_large"


async def test_multipart_field_over_the_limit_is_413(gateway: ASGIConductor) -> None:
    body = raw_multipart([("action", None, b"create_call"), ("comment", None, b"x" * 5000)])
    result = await gateway.simulate_post(
        URL, body=body, content_type="multipart/form-data; boundary=b0und"
    )
    assert result.status_code == 413


@pytest.mark.parametrize(
    ("failure", "status", "code"),
    [
        (Failure(grpc.StatusCode.NOT_FOUND, "not_found"), 404, "not_found"),
        (Failure(grpc.StatusCode.FAILED_PRECONDITION, "final_status"), 409, "final_status"),
        (Failure(grpc.StatusCode.ABORTED, "idempotency_conflict"), 409, "idempotency_conflict"),
        (Failure(grpc.StatusCode.ABORTED, "conflict"), 503, "conflict"),
        (Failure(grpc.StatusCode.UNAUTHENTICATED, "unauthenticated"), 503, "unavailable"),
        (Failure(grpc.StatusCode.PERMISSION_DENIED, "permission_denied"), 503, "unavailable"),
        (Failure(grpc.StatusCode.INTERNAL), 502, "core_error"),
    ],
)
async def test_core_errors_map_to_http(
    gateway: ASGIConductor, fake_core: FakeCore, failure: Failure, status: int, code: str
) -> None:
    fake_core.calls.failure = failure
    result = await gateway.simulate_post(URL, body=CREATE, content_type=FORM)
    assert result.status_code == status
    assert result.json["error"]["code"] == code
    if status == 503:
        assert result.headers["Retry-After"] == "1"


async def test_core_field_violations_become_fields(
    gateway: ASGIConductor, fake_core: FakeCore
) -> None:
    fake_core.calls.failure = Failure(
        grpc.StatusCode.INVALID_ARGUMENT,
        "invalid_request",
        "call_id and pbx_call_id exclude each other",
        {"call_id": "give one of call_id, pbx_call_id"},
    )
    result = await gateway.simulate_post(
        URL, body="action=update_call&call_id=1&pbx_call_id=2", content_type=FORM
    )
    assert result.status_code == 422
    assert result.json == {
        "error": {
            "code": "invalid_request",
            "message": "call_id and pbx_call_id exclude each other",
            "fields": {"call_id": "give one of call_id, pbx_call_id"},
        }
    }
    (request,) = fake_core.calls.received
    assert request.HasField("call_id") and request.HasField("pbx_call_id")


async def test_unreachable_core_is_503_with_retry_after() -> None:
    config = Config({"VATS_CORE_TARGET": "127.0.0.1:1", "VATS_CORE_TIMEOUT": "1"})
    async with ASGIConductor(create_app(config)) as gateway:
        result = await gateway.simulate_post(URL, body=CREATE, content_type=FORM)
    assert result.status_code == 503
    assert result.headers["Retry-After"] == "1"
    assert result.json["error"]["code"] == "unavailable"


async def test_slow_core_is_503_after_the_deadline(config: Config, fake_core: FakeCore) -> None:
    config.core_timeout = 0.2
    fake_core.calls.delay = 1.0
    async with ASGIConductor(create_app(config)) as gateway:
        result = await gateway.simulate_post(URL, body=CREATE, content_type=FORM)
    assert result.status_code == 503


async def test_recording_is_streamed_in_64k_chunks_and_attached(
    gateway: ASGIConductor, fake_core: FakeCore
) -> None:
    audio = b"\x01" * (200 * 1024 + 5)
    body = raw_multipart(
        [
            ("action", None, b"update_call"),
            ("audio_record", "call.mp3", audio),
            ("call_id", None, b"725"),
            ("call_status", None, b"answered"),
        ]
    )
    result = await gateway.simulate_post(
        URL, body=body, content_type="multipart/form-data; boundary=b0und"
    )
    assert result.status_code == 200
    assert fake_core.calls.upload_chunks == [65536, 65536, 65536, 8197]
    (metadata,) = fake_core.calls.upload_metadata
    assert (metadata.channel.channel_key, metadata.file_name) == ("demo-key", "call.mp3")
    (request,) = fake_core.calls.received
    assert (request.recording_id, request.call_id) == ("rec-1", 725)


async def test_recording_before_the_other_fields_is_attached_too(
    gateway: ASGIConductor, fake_core: FakeCore
) -> None:
    body, content_type = multipart(
        [("action", "create_call"), ("phone", "1")], [("audio_record", "a.ogg", b"OggS" * 10)]
    )
    result = await gateway.simulate_post(URL, body=body, content_type=content_type)
    assert result.status_code == 200
    assert fake_core.calls.received[0].recording_id == "rec-1"


async def test_empty_recording_is_422(gateway: ASGIConductor, fake_core: FakeCore) -> None:
    body = raw_multipart([("action", None, b"create_call"), ("audio_record", "a.mp3", b"")])
    result = await gateway.simulate_post(
        URL, body=body, content_type="multipart/form-data; boundary=b0und"
    )
    assert result.status_code == 422
    assert "audio_record" in result.json["error"]["fields"]
    assert fake_core.calls.upload_metadata == []


async def test_recording_over_the_limit_is_413_and_the_upload_is_cancelled(
    gateway: ASGIConductor, fake_core: FakeCore
) -> None:
    body = raw_multipart(
        [("action", None, b"create_call"), ("audio_record", "a.mp3", b"\0" * (1024 * 1024 + 1))]
    )
    result = await gateway.simulate_post(
        URL, body=body, content_type="multipart/form-data; boundary=b0und"
    )
    assert result.status_code == 413
    assert fake_core.calls.received == []


@pytest.mark.parametrize(
    ("failure", "status"),
    [
        (Failure(grpc.StatusCode.INVALID_ARGUMENT, "unsupported_media_type"), 415),
        (Failure(grpc.StatusCode.RESOURCE_EXHAUSTED, "payload_too_large"), 413),
        (Failure(grpc.StatusCode.NOT_FOUND, "not_found"), 404),
    ],
)
async def test_recording_refused_by_core_maps_to_http(
    gateway: ASGIConductor, fake_core: FakeCore, failure: Failure, status: int
) -> None:
    fake_core.calls.upload_failure = failure
    body = raw_multipart(
        [("audio_record", "a.txt", b"x" * 300_000), ("action", None, b"create_call")]
    )
    result = await gateway.simulate_post(
        URL, body=body, content_type="multipart/form-data; boundary=b0und"
    )
    assert result.status_code == status
    assert fake_core.calls.received == []


async def test_audio_record_outside_multipart_is_422(gateway: ASGIConductor) -> None:
    result = await gateway.simulate_post(
        URL, body="action=create_call&audio_record=http://x/y.mp3", content_type=FORM
    )
    assert result.status_code == 422
    assert "audio_record" in result.json["error"]["fields"]


async def test_unrouted_path_and_wrong_method_answer_the_error_shape(
    gateway: ASGIConductor,
) -> None:
    missing = await gateway.simulate_get("/nowhere", headers={"Accept": "text/html"})
    assert missing.status_code == 404
    assert missing.json["error"]["code"] == "not_found"
    wrong = await gateway.simulate_get(URL)
    assert wrong.status_code == 405
    assert wrong.json["error"]["code"] == "method_not_allowed"


async def test_request_id_is_echoed_and_sent_to_core(
    gateway: ASGIConductor, fake_core: FakeCore
) -> None:
    result = await gateway.simulate_post(
        URL, body=CREATE, content_type=FORM, headers={"X-Request-ID": "abc-123"}
    )
    assert result.headers["X-Request-ID"] == "abc-123"
    assert fake_core.calls.metadata[0]["x-request-id"] == "abc-123"
