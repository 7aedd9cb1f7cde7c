"""connectors/kamailio/relay.py as a real process against a real local HTTP server.

The server plays the channel URL and misbehaves on purpose (503 and 429 with
Retry-After, refused connections, a dropped reply, a refusal for good); the
tests check what it finally received: each event applied once, in order per
Call-ID, with the pauses the server asked for. Timings are only lower bounds.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.sip

CONNECTOR = ROOT / "connectors" / "kamailio"
RELAY = CONNECTOR / "relay.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Received:
    at: float
    key: str
    fields: dict[str, list[str]]
    files: dict[str, bytes]
    status: int = 0

    @property
    def call(self) -> str:
        return self.fields["pbx_call_id"][0]

    @property
    def call_status(self) -> str:
        return self.fields.get("call_status", ["ringing"])[0]


def parse_multipart(
    content_type: str, body: bytes
) -> tuple[dict[str, list[str]], dict[str, bytes]]:
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    fields: dict[str, list[str]] = {}
    files: dict[str, bytes] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        assert isinstance(name, str) and isinstance(payload, bytes)
        if part.get_filename():
            files[name] = payload
        else:
            fields.setdefault(name.removesuffix("[]"), []).append(payload.decode())
    return fields, files


# What the channel does with a request: a status with headers, or None to drop the
# connection without answering (the reply lost after the request was applied).
Behaviour = Callable[["Received", int], "tuple[int, dict[str, str]] | None"]


@dataclass
class Channel:
    """A stand-in for the bridge's channel URL that records every request."""

    behaviour: Behaviour
    port: int = field(default_factory=free_port)
    received: list[Received] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v2/telephony/calls/test-key"

    def start(self) -> Channel:
        channel = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                fields, files = parse_multipart(self.headers["Content-Type"], body)
                request = Received(time.monotonic(), self.headers["Idempotency-Key"], fields, files)
                attempt = sum(1 for r in channel.received if r.key == request.key)
                channel.received.append(request)
                answer = channel.behaviour(request, attempt)
                if answer is None:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                request.status, headers = answer
                data = json.dumps({"data": {}}).encode()
                self.send_response(request.status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def applied(self) -> list[Received]:
        """Requests answered 2xx, in the order they arrived."""
        return [r for r in self.received if 200 <= r.status < 300]

    def wait_applied(self, count: int, timeout: float = 15) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.applied()) < count:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(self.applied())} of {count} applied; received: "
                    + repr([(r.call, r.call_status, r.status) for r in self.received])
                )
            time.sleep(0.05)
        return self.applied()


def always_ok(request: Received, attempt: int) -> tuple[int, dict[str, str]]:
    return 200, {}


class RelayProcess:
    def __init__(self, channel_url: str, workdir: Path, *args: str) -> None:
        self.log_path = workdir / f"relay-{time.monotonic_ns()}.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    str(RELAY),
                    "--listen",
                    "127.0.0.1:0",
                    "--channel-url",
                    channel_url,
                    "--retry-base",
                    "0.2",
                    "--retry-max",
                    "1",
                    *args,
                ],
                stdout=subprocess.PIPE,
                stderr=log,
                env={k: v for k, v in os.environ.items() if not k.startswith("VATS_")},
            )
        assert self.process.stdout is not None
        lines: queue.Queue[bytes] = queue.Queue()
        stdout = self.process.stdout

        def pump() -> None:
            for line in iter(stdout.readline, b""):
                lines.put(line)

        threading.Thread(target=pump, daemon=True).start()
        try:
            line = lines.get(timeout=10).decode().strip()
        except queue.Empty:
            self.stop()
            raise AssertionError("relay did not start: " + self.log()) from None
        self.url = line.removeprefix("vats-relay listening on ")
        assert self.url.startswith("http://127.0.0.1:"), line

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def post(self, fields: dict[str, Any], *, as_json: bool = False) -> int:
        if as_json:
            data = json.dumps(fields).encode()
            content_type = "application/json"
        else:
            data = urllib.parse.urlencode(fields).encode()
            content_type = "application/x-www-form-urlencoded"
        request = urllib.request.Request(
            f"{self.url}/events", data=data, headers={"Content-Type": content_type}
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    def status(self) -> dict[str, int]:
        with urllib.request.urlopen(f"{self.url}/status", timeout=5) as response:
            return dict(json.load(response))

    def wait_idle(self, timeout: float = 15) -> dict[str, int]:
        deadline = time.monotonic() + timeout
        while (status := self.status())["pending"]:
            assert time.monotonic() < deadline, f"still pending: {status}\n{self.log()}"
            time.sleep(0.05)
        return status

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture
def start_relay(tmp_path: Path) -> Iterator[Callable[..., RelayProcess]]:
    started: list[RelayProcess] = []

    def start(channel_url: str, *args: str) -> RelayProcess:
        relay = RelayProcess(channel_url, tmp_path, *args)
        started.append(relay)
        return relay

    yield start
    for relay in started:
        relay.stop()


@pytest.fixture
def channels() -> Iterator[Callable[[Behaviour], Channel]]:
    started: list[Channel] = []

    def start(behaviour: Behaviour) -> Channel:
        channel = Channel(behaviour).start()
        started.append(channel)
        return channel

    yield start
    for channel in started:
        channel.stop()


def create(call: str, **extra: str) -> dict[str, str]:
    return {
        "action": "create_call",
        "direction": "incoming",
        "phone": "79161234567",
        "pbx_call_id": call,
        "pbx_user_ids": "101,102",
        **extra,
    }


def update(call: str, status: str, **extra: str) -> dict[str, str]:
    return {"action": "update_call", "pbx_call_id": call, "call_status": status, **extra}


def test_503_with_retry_after_is_retried_after_the_pause_and_applied_once(
    channels: Callable[[Behaviour], Channel], start_relay: Callable[..., RelayProcess]
) -> None:
    def unavailable_once(request: Received, attempt: int) -> tuple[int, dict[str, str]]:
        return (503, {"Retry-After": "1"}) if attempt == 0 else (200, {})

    channel = channels(unavailable_once)
    relay = start_relay(channel.url)
    assert relay.post(create("c-503")) == 202

    [applied] = channel.wait_applied(1)
    first, second = channel.received
    assert (first.status, second.status) == (503, 200)
    assert first.key == second.key
    # The retry waited for Retry-After, far longer than the relay's own first backoff.
    assert second.at - first.at >= 0.9
    assert applied.fields == {
        "action": ["create_call"],
        "direction": ["incoming"],
        "phone": ["79161234567"],
        "pbx_call_id": ["c-503"],
        "pbx_user_ids": ["101", "102"],
    }
    status = relay.wait_idle()
    assert (status["delivered"], status["failed"], status["rejected"]) == (1, 0, 0)
    time.sleep(0.5)
    assert len(channel.received) == 2


def test_429_holds_back_only_its_own_call(
    channels: Callable[[Behaviour], Channel], start_relay: Callable[..., RelayProcess]
) -> None:
    def limit_call_a(request: Received, attempt: int) -> tuple[int, dict[str, str]]:
        if request.call == "a" and request.call_status == "ringing" and attempt == 0:
            return 429, {"Retry-After": "2"}
        return 200, {}

    channel = channels(limit_call_a)
    relay = start_relay(channel.url)
    assert relay.post(create("a")) == 202
    assert relay.post(update("a", "in-progress", pbx_user_id="101")) == 202
    assert relay.post(create("b")) == 202
    assert relay.post(update("b", "missed")) == 202

    applied = channel.wait_applied(4)
    # Call b went through while call a waited out its Retry-After.
    assert [(r.call, r.call_status) for r in applied] == [
        ("b", "ringing"),
        ("b", "missed"),
        ("a", "ringing"),
        ("a", "in-progress"),
    ]
    limited = [r for r in channel.received if r.call == "a" and r.call_status == "ringing"]
    assert [r.status for r in limited] == [429, 200]
    assert limited[1].at - limited[0].at >= 1.9
    assert applied[3].fields["pbx_user_id"] == ["101"]


def test_refused_connections_are_retried_until_the_bridge_is_up_in_order(
    channels: Callable[[Behaviour], Channel], start_relay: Callable[..., RelayProcess]
) -> None:
    down = Channel(always_ok)  # not started: its port refuses connections
    relay = start_relay(down.url)
    events = [
        create("c-1"),
        update("c-1", "in-progress", pbx_user_id="102"),
        update("c-1", "answered"),
    ]
    for event in events:
        assert relay.post(event) == 202
    time.sleep(1.5)
    assert relay.status()["pending"] == 3
    assert "Connection refused" in relay.log()

    channel = Channel(always_ok, port=down.port).start()
    try:
        applied = channel.wait_applied(3)
        assert [r.call_status for r in applied] == ["ringing", "in-progress", "answered"]
        assert len({r.key for r in applied}) == 3
        status = relay.wait_idle()
        assert status["delivered"] == 3
        assert len(channel.received) == 3
    finally:
        channel.stop()


def test_a_lost_reply_is_retried_with_the_same_idempotency_key(
    channels: Callable[[Behaviour], Channel], start_relay: Callable[..., RelayProcess]
) -> None:
    def drop_first_answer(request: Received, attempt: int) -> tuple[int, dict[str, str]] | None:
        if request.call_status == "answered" and attempt == 0:
            return None
        return 200, {}

    channel = channels(drop_first_answer)
    relay = start_relay(channel.url)
    relay.post(create("lost"))
    relay.post(update("lost", "in-progress", pbx_user_id="101"))
    relay.post(update("lost", "answered"))

    channel.wait_applied(3)
    relay.wait_idle()
    answered = [r for r in channel.received if r.call_status == "answered"]
    assert len(answered) == 2
    # The bridge replays the first reply for a repeated key: the update is not applied twice.
    assert answered[0].key == answered[1].key
    keys = [r.key for r in channel.applied()]
    assert len(set(keys)) == 3
    assert all(key.startswith("kamailio-") and len(key) <= 255 for key in keys)


def test_a_refused_event_is_not_retried_and_the_call_goes_on(
    channels: Callable[[Behaviour], Channel], start_relay: Callable[..., RelayProcess]
) -> None:
    def refuse_missed(request: Received, attempt: int) -> tuple[int, dict[str, str]]:
        return (409, {}) if request.call_status == "missed" else (200, {})

    channel = channels(refuse_missed)
    relay = start_relay(channel.url)
    relay.post(create("r"))
    relay.post(update("r", "missed"))
    relay.post(update("r", "answered"))

    status = relay.wait_idle()
    assert (status["delivered"], status["rejected"]) == (2, 1)
    assert [(r.call_status, r.status) for r in channel.received] == [
        ("ringing", 200),
        ("missed", 409),
        ("answered", 200),
    ]


def test_events_of_many_calls_keep_their_order_under_failures(
    channels: Callable[[Behaviour], Channel], start_relay: Callable[..., RelayProcess]
) -> None:
    lock = threading.Lock()
    count = 0

    def every_third_unavailable(request: Received, attempt: int) -> tuple[int, dict[str, str]]:
        nonlocal count
        with lock:
            count += 1
            fail = count % 3 == 0
        return (503, {"Retry-After": "0"}) if fail else (200, {})

    channel = channels(every_third_unavailable)
    relay = start_relay(channel.url)
    calls = [f"call-{i}" for i in range(6)]
    sequence = ["ringing", "in-progress", "answered"]
    for call in calls:
        relay.post(create(call), as_json=True)
    for status in sequence[1:]:
        for call in calls:
            relay.post(update(call, status), as_json=True)

    applied = channel.wait_applied(len(calls) * len(sequence))
    relay.wait_idle()
    for call in calls:
        assert [r.call_status for r in applied if r.call == call] == sequence
    assert len(channel.applied()) == len(calls) * len(sequence)


def wav_bytes(seconds: float = 0.2) -> bytes:
    import io
    import wave

    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x01" * int(8000 * seconds))
    return buffer.getvalue()


def test_a_recording_already_there_goes_with_the_final_update(
    channels: Callable[[Behaviour], Channel],
    start_relay: Callable[..., RelayProcess],
    tmp_path: Path,
) -> None:
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    call = "4f2a@127.0.0.1"
    audio = wav_bytes()
    (recordings / "4f2a_127.0.0.1.wav").write_bytes(audio)
    channel = channels(always_ok)
    relay = start_relay(channel.url, "--recordings-dir", str(recordings))
    relay.post(create(call))
    relay.post(update(call, "in-progress", pbx_user_id="101"))
    relay.post(update(call, "answered"))

    applied = channel.wait_applied(3)
    relay.wait_idle()
    assert [r.files for r in applied[:2]] == [{}, {}]
    assert applied[2].call_status == "answered"
    assert applied[2].files == {"audio_record": audio}
    assert len(channel.received) == 3


def test_a_late_recording_follows_the_final_update(
    channels: Callable[[Behaviour], Channel],
    start_relay: Callable[..., RelayProcess],
    tmp_path: Path,
) -> None:
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    channel = channels(always_ok)
    relay = start_relay(channel.url, "--recordings-dir", str(recordings), "--recording-wait", "10")
    relay.post(create("late"))
    relay.post(update("late", "in-progress", pbx_user_id="102"))
    relay.post(update("late", "answered"))
    channel.wait_applied(3)
    assert relay.status()["pending"] == 1  # the recording it waits for

    audio = wav_bytes(0.5)
    staging = tmp_path / "late.wav.part"
    staging.write_bytes(audio)
    staging.rename(recordings / "late.wav")

    applied = channel.wait_applied(4)
    relay.wait_idle()
    assert applied[2].files == {}
    assert applied[3].fields == {
        "action": ["update_call"],
        "pbx_call_id": ["late"],
        "call_status": ["answered"],
    }
    assert applied[3].files == {"audio_record": audio}
    assert applied[3].key != applied[2].key


def test_no_recording_ends_the_wait_quietly(
    channels: Callable[[Behaviour], Channel],
    start_relay: Callable[..., RelayProcess],
    tmp_path: Path,
) -> None:
    channel = channels(always_ok)
    relay = start_relay(channel.url, "--recordings-dir", str(tmp_path), "--recording-wait", "0.5")
    relay.post(create("silent"))
    relay.post(update("silent", "answered"))
    channel.wait_applied(2)
    status = relay.wait_idle()
    assert (status["delivered"], status["failed"]) == (2, 0)
    assert "no recording for call silent" in relay.log()


def test_spooled_events_survive_a_restart_of_the_relay(
    channels: Callable[[Behaviour], Channel],
    start_relay: Callable[..., RelayProcess],
    tmp_path: Path,
) -> None:
    spool = tmp_path / "spool"
    down = Channel(always_ok)
    relay = start_relay(down.url, "--spool-dir", str(spool))
    relay.post(create("s"))
    relay.post(update("s", "busy"))
    relay.stop()
    assert relay.process.returncode == 0
    assert len(list(spool.glob("*.json"))) == 2

    channel = Channel(always_ok, port=down.port).start()
    try:
        again = start_relay(channel.url, "--spool-dir", str(spool))
        applied = channel.wait_applied(2)
        again.wait_idle()
        assert [(r.call, r.call_status) for r in applied] == [("s", "ringing"), ("s", "busy")]
        assert list(spool.glob("*.json")) == []
    finally:
        channel.stop()


def test_an_event_without_action_or_call_id_is_refused(
    channels: Callable[[Behaviour], Channel], start_relay: Callable[..., RelayProcess]
) -> None:
    channel = channels(always_ok)
    relay = start_relay(channel.url)
    assert relay.post({"pbx_call_id": "x", "call_status": "busy"}) == 400
    assert relay.post({"action": "update_call", "call_status": "busy"}, as_json=True) == 400
    assert relay.post(update("x", "busy")) == 202
    channel.wait_applied(1)
    assert len(channel.received) == 1


def kamailio_binary() -> str:
    binary = shutil.which("kamailio") or "/usr/sbin/kamailio"
    if not Path(binary).exists():
        if os.environ.get("CI"):
            pytest.fail("kamailio is missing (CI is set, so SIP tests may not be skipped)")
        pytest.skip("kamailio is missing (apt-get install kamailio kamailio-utils-modules)")
    return binary


@pytest.mark.parametrize(
    "defines",
    [
        pytest.param([], id="defaults"),
        pytest.param(
            [
                "VATS_LISTEN=udp:127.0.0.1:5999",
                'VATS_DOMAIN="pbx.example"',
                'VATS_ALIAS="pbx.example"',
                'VATS_RELAY_URL="http://127.0.0.1:5998/events"',
                'VATS_EMPLOYEES="101,102,103"',
                'VATS_GROUPS="100=101,102;200=103"',
                "VATS_RING_TIMEOUT=8",
                'VATS_GATEWAY="sip:127.0.0.1:5997"',
            ],
            id="all-set",
        ),
    ],
)
def test_kamailio_accepts_the_config(defines: list[str], tmp_path: Path) -> None:
    binary = kamailio_binary()
    args = [arg for define in defines for arg in ("-A", define)]
    result = subprocess.run(
        [binary, "-c", "-f", str(CONNECTOR / "kamailio.cfg"), "-Y", str(tmp_path), *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "config file ok" in result.stdout + result.stderr
