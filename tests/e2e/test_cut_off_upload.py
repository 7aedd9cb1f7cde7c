"""A PBX whose upload is cut off mid-body (connection closed or reset) leaves nothing behind."""

from __future__ import annotations

import contextlib
import json
import socket
import sqlite3
import struct
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveStack, running_stack
from tests.e2e.test_recordings_http import wav_bytes

pytestmark = pytest.mark.e2e

BOUNDARY = "cut-off-boundary-7f3a"
# Long enough that the cut falls well inside it: 60 s of 8 kHz 16-bit mono, ~960 KB.
RECORDING = wav_bytes(60.0)
CUT_INSIDE = 480 * 1024
PIECE = 64 * 1024


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    with running_stack(tmp_path_factory.mktemp("cut-off")) as stack:
        yield stack


def field(name: str, value: str) -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
    ).encode()


def recording_part() -> bytes:
    head = (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="audio_record"; filename="call.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()
    return head + RECORDING + b"\r\n"


def create_fields(pbx_call_id: str) -> bytes:
    return b"".join(
        field(name, value)
        for name, value in (
            ("action", "create_call"),
            ("direction", "incoming"),
            ("phone", "+74951234567"),
            ("pbx_call_id", pbx_call_id),
        )
    )


def head(stack: LiveStack, length: int, request_id: str) -> bytes:
    return (
        f"POST /api/v2/telephony/calls/{stack.channel_key} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{stack.http_port}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {length}\r\n"
        f"X-Request-ID: {request_id}\r\n\r\n"
    ).encode()


def recording_files(stack: LiveStack) -> set[Path]:
    root = stack.data_dir / "recordings"
    return {p for p in root.rglob("*") if p.is_file()}


def recording_records(stack: LiveStack) -> set[str]:
    database = f"file:{stack.data_dir / 'vats.db'}?mode=ro"
    with contextlib.closing(sqlite3.connect(database, uri=True)) as db:
        rows = db.execute("SELECT recording_id FROM recordings").fetchall()
    return {row[0] for row in rows}


def wait_for(condition: str, check: Callable[[], object], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {condition}")
        time.sleep(0.05)


def logged_request(stack: LiveStack, request_id: str) -> dict[str, object] | None:
    for line in stack.log("gateway").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("request_id") == request_id and entry.get("message") == "request":
            return dict(entry)
    return None


def send_and_cut(stack: LiveStack, body: bytes, cut: int, reset: bool) -> str:
    """Sends the first `cut` bytes of `body` and closes (or resets) the connection, once
    core is writing the recording if it gets to. Returns the request's id."""
    request_id = uuid.uuid4().hex
    before = recording_files(stack)

    def writing() -> bool:
        return any(p.exists() and p.stat().st_size for p in recording_files(stack) - before)

    with socket.create_connection(("127.0.0.1", stack.http_port), timeout=30) as client:
        client.sendall(head(stack, len(body), request_id))
        # In pieces: Falcon's multipart reader passes bytes on only once more arrive.
        for start in range(0, cut, PIECE):
            client.sendall(body[start : min(start + PIECE, cut)])
            time.sleep(0.01)
        # The cut comes either way; waiting lets it land while core writes the recording.
        deadline = time.monotonic() + 10
        while not writing() and time.monotonic() < deadline:
            time.sleep(0.02)
        if reset:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    wait_for("the gateway to finish the request", lambda: logged_request(stack, request_id))
    return request_id


@contextlib.contextmanager
def nothing_kept(stack: LiveStack, pbx_call_id: str) -> Iterator[None]:
    files, records = recording_files(stack), recording_records(stack)
    yield
    # Core drops the upload once the gateway cancels it: give it time, then it must be gone.
    deadline = time.monotonic() + 10
    while recording_files(stack) != files and time.monotonic() < deadline:
        time.sleep(0.05)
    assert recording_files(stack) == files
    assert recording_records(stack) == records
    update = {"action": "update_call", "pbx_call_id": pbx_call_id, "call_status": "missed"}
    assert httpx.post(stack.calls_url, json=update, timeout=30).status_code == 404


def whole_body(pbx_call_id: str) -> bytes:
    return create_fields(pbx_call_id) + recording_part() + f"--{BOUNDARY}--\r\n".encode()


@pytest.mark.parametrize("reset", [False, True], ids=["closed", "reset"])
def test_a_recording_cut_off_midway_is_not_kept(stack: LiveStack, reset: bool) -> None:
    pbx_call_id = f"cut-inside-{reset}"
    sent = len(create_fields(pbx_call_id)) + CUT_INSIDE
    with nothing_kept(stack, pbx_call_id):
        send_and_cut(stack, whole_body(pbx_call_id), sent, reset=reset)


def test_a_body_cut_off_after_the_whole_recording_keeps_nothing(stack: LiveStack) -> None:
    # The recording arrived whole, but the form after it never ended: the request is incomplete.
    pbx_call_id = "cut-after"
    rest = create_fields(pbx_call_id)
    body = recording_part() + rest + f"--{BOUNDARY}--\r\n".encode()
    cut = len(recording_part()) + len(rest) // 2
    with nothing_kept(stack, pbx_call_id):
        request_id = send_and_cut(stack, body, cut, reset=False)
    entry = logged_request(stack, request_id)
    assert entry is not None and entry["status"] == 400


def test_a_whole_upload_after_a_cut_off_one_is_kept(stack: LiveStack) -> None:
    body = whole_body("whole-after-cut")
    with nothing_kept(stack, "whole-after-cut"):
        send_and_cut(stack, body, len(body) // 2, reset=True)
    files, records = recording_files(stack), recording_records(stack)

    response = httpx.post(
        stack.calls_url,
        content=body,
        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    download = httpx.get(response.json()["data"]["audio_record"], timeout=30)
    assert download.status_code == 200 and download.content == RECORDING
    assert len(recording_files(stack) - files) == 1
    assert len(recording_records(stack) - records) == 1


def test_a_form_cut_off_creates_no_call(stack: LiveStack) -> None:
    # Cut after a whole field, the part that came would still parse as a form of its own.
    sent = b"action=create_call&direction=incoming&phone=%2B74951234567&pbx_call_id=cut-form"
    body = sent + b"&user_ids[]=1&comment=" + b"x" * 4000
    request_id = uuid.uuid4().hex
    with socket.create_connection(("127.0.0.1", stack.http_port), timeout=30) as client:
        client.sendall(
            (
                f"POST /api/v2/telephony/calls/{stack.channel_key} HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{stack.http_port}\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\n"
                f"Content-Length: {len(body)}\r\n"
                f"X-Request-ID: {request_id}\r\n\r\n"
            ).encode()
            + sent
        )
    wait_for("the gateway to finish the request", lambda: logged_request(stack, request_id))
    entry = logged_request(stack, request_id)
    assert entry is not None and entry["status"] == 400
    update = {"action": "update_call", "pbx_call_id": "cut-form", "call_status": "missed"}
    assert httpx.post(stack.calls_url, json=update, timeout=30).status_code == 404
