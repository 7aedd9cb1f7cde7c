"""Recordings end to end: uploaded with the PBX's form, downloaded by their signed links."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from core.recordings import LinkSigner
from tests.conftest import LiveStack
from tests.recordings.recording_samples import pcm_wav

pytestmark = pytest.mark.e2e

FIXTURES = Path(__file__).resolve().parent.parent / "recordings" / "fixtures"
LINK_SECRET = b"e2e-link-secret-0123456789"


def wav_bytes(seconds: float, rate: int = 8000) -> bytes:
    return pcm_wav(seconds, rate, pattern=bytes(range(256)))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    stack = LiveStack(tmp_path_factory.mktemp("records"), {"VATS_MAX_RECORD_MB": "1"})
    try:
        stack.start_core()
        stack.start_gateway()
        yield stack
    finally:
        stack.stop()


def post(
    stack: LiveStack,
    fields: list[tuple[str, str]],
    record: tuple[str, bytes, str] | None = None,
    first: bool = False,
) -> httpx.Response:
    parts: list[tuple[str, Any]] = [(name, (None, value)) for name, value in fields]
    if record is not None:
        part = ("audio_record", record)
        parts = [part, *parts] if first else [*parts, part]
    return httpx.post(stack.calls_url, files=parts, timeout=30)


def count_calls(stack: LiveStack) -> int:
    import grpc

    from telephony.v1 import call_service_pb2, call_service_pb2_grpc

    with grpc.insecure_channel(stack.grpc_target) as channel:
        reply = call_service_pb2_grpc.CallServiceStub(channel).ListCalls(
            call_service_pb2.ListCallsRequest(page_size=500),
            metadata=[("authorization", f"Bearer {stack.admin_token}")],
        )
        return len(reply.calls)


CREATE = [("action", "create_call"), ("direction", "incoming"), ("phone", "+74951234567")]


@pytest.mark.parametrize("file_first", [False, True])
def test_recording_downloads_byte_identical(stack: LiveStack, file_first: bool) -> None:
    data = wav_bytes(3.0)
    response = post(stack, CREATE, ("call.wav", data, "audio/wav"), first=file_first)
    assert response.status_code == 200, response.text
    url = response.json()["data"]["audio_record"]
    assert url.startswith(f"{stack.http_url}/api/v2/telephony/records/")
    download = httpx.get(url, timeout=30)
    assert download.status_code == 200
    assert download.headers["content-type"] == "audio/wav"
    assert download.headers["accept-ranges"] == "bytes"
    assert hashlib.sha256(download.content).digest() == hashlib.sha256(data).digest()


def test_range_request_returns_the_exact_slice(stack: LiveStack) -> None:
    data = wav_bytes(2.0)
    url = post(stack, CREATE, ("c.wav", data, "audio/wav")).json()["data"]["audio_record"]
    part = httpx.get(url, headers={"Range": "bytes=100-199"}, timeout=30)
    assert part.status_code == 206
    assert part.content == data[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(data)}"
    suffix = httpx.get(url, headers={"Range": "bytes=-50"}, timeout=30)
    assert suffix.status_code == 206 and suffix.content == data[-50:]
    beyond = httpx.get(url, headers={"Range": f"bytes={len(data) + 10}-"}, timeout=30)
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{len(data)}"


def test_update_with_a_second_recording_becomes_current(stack: LiveStack) -> None:
    created = post(stack, CREATE, ("a.wav", wav_bytes(1.0), "audio/wav")).json()["data"]
    mp3 = (FIXTURES / "tone-cbr.mp3").read_bytes()
    updated = post(
        stack,
        [
            ("action", "update_call"),
            ("call_id", str(created["call_id"])),
            ("call_status", "answered"),
        ],
        ("b.mp3", mp3, "audio/mpeg"),
    )
    assert updated.status_code == 200, updated.text
    url = updated.json()["data"]["audio_record"]
    assert url != created["audio_record"]
    download = httpx.get(url, timeout=30)
    assert download.content == mp3 and download.headers["content-type"] == "audio/mpeg"
    # The first recording is still kept and still downloads.
    assert httpx.get(created["audio_record"], timeout=30).status_code == 200


@pytest.mark.parametrize(
    ("record", "status"),
    [
        (("fake.mp3", b"this is only text pretending to be audio\n" * 200, "audio/mpeg"), 415),
        (("p.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 4000, "image/png"), 415),
        (("big.wav", wav_bytes(70.0), "audio/wav"), 413),  # over VATS_MAX_RECORD_MB=1
        (("empty.wav", b"", "audio/wav"), 422),
    ],
)
def test_refused_recordings_change_nothing(
    stack: LiveStack, record: tuple[str, bytes, str], status: int
) -> None:
    before = count_calls(stack)
    response = post(stack, CREATE, record)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"]
    assert count_calls(stack) == before


def test_bad_and_expired_links_are_refused(stack: LiveStack) -> None:
    url = post(stack, CREATE, ("c.wav", wav_bytes(1.0), "audio/wav")).json()["data"]["audio_record"]
    parts = urlsplit(url)
    recording_id = parts.path.rsplit("/", 1)[1]
    query = parse_qs(parts.query)
    base = f"{stack.http_url}{parts.path}"
    tampered = httpx.get(
        base, params={"expires": query["expires"][0], "signature": "A" + query["signature"][0][1:]}
    )
    assert tampered.status_code == 403
    later = httpx.get(
        base, params={"expires": int(query["expires"][0]) + 60, "signature": query["signature"][0]}
    )
    assert later.status_code == 403
    signer = LinkSigner(hashlib.sha256(LINK_SECRET).digest(), 60)
    expires, signature = signer.sign(recording_id, time.time() - 3600)
    expired = httpx.get(base, params={"expires": expires, "signature": signature})
    assert expired.status_code == 403
    fresh_expires, fresh_signature = signer.sign(recording_id, time.time())
    assert (
        httpx.get(base, params={"expires": fresh_expires, "signature": fresh_signature}).status_code
        == 200
    )
    assert httpx.get(base).status_code == 401


def test_token_download_and_unknown_ids(stack: LiveStack) -> None:
    created = post(
        stack, [*CREATE, ("user_ids[]", "1")], ("c.wav", wav_bytes(1.0), "audio/wav")
    ).json()["data"]
    path = urlsplit(created["audio_record"]).path
    anna = httpx.get(f"{stack.http_url}{path}", headers={"Authorization": "Bearer demo-anna"})
    assert anna.status_code == 200
    boris = httpx.get(f"{stack.http_url}{path}", headers={"Authorization": "Bearer demo-boris"})
    assert boris.status_code == 404
    unknown = httpx.get(
        f"{stack.http_url}/api/v2/telephony/records/0123456789abcdef",
        headers={"Authorization": "Bearer demo-admin"},
    )
    assert unknown.status_code == 404
