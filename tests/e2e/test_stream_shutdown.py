"""Card streams end when their client hangs up and when the gateway shuts down:
real core and gateway processes, clients on raw sockets."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LiveStack

pytestmark = pytest.mark.e2e

STREAM_PATH = "/api/v2/telephony/cards/stream"
# No keepalive within any test's lifetime: only noticing the hang-up can end a stream.
NO_KEEPALIVE = {"VATS_SSE_KEEPALIVE": "3600"}


@pytest.fixture
def stack(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[LiveStack]:
    env: dict[str, str] = getattr(request, "param", {})
    stack = LiveStack(tmp_path, {**NO_KEEPALIVE, **env})
    try:
        stack.start_core()
        stack.start_gateway()
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


def open_stream(stack: LiveStack, token: str, sockets: list[socket.socket]) -> socket.socket:
    """A card stream on a socket of its own, read up to the end of the response headers."""
    sock = socket.create_connection(("127.0.0.1", stack.http_port), timeout=10)
    sockets.append(sock)
    sock.sendall(
        f"GET {STREAM_PATH} HTTP/1.1\r\nHost: gateway\r\nAccept: text/event-stream\r\n"
        f"Authorization: Bearer {token}\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, f"connection closed before the headers: {head!r}"
        head += chunk
    assert head.startswith(b"HTTP/1.1 200"), head
    return sock


def read_to_end(sock: socket.socket, wait: float) -> bool:
    """Whether the gateway ends the response (closes the connection) within `wait` seconds."""
    sock.settimeout(wait)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


def log_entries(stack: LiveStack) -> list[dict[str, Any]]:
    entries = []
    for line in stack.log("gateway").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            entry = {"level": "unparsed", "message": line}
        entries.append(entry)
    return entries


def streams_closed(stack: LiveStack) -> int:
    return sum(1 for e in log_entries(stack) if e.get("message") == "stream closed")


def wait_for_closed_streams(stack: LiveStack, count: int, wait: float) -> int:
    deadline = time.monotonic() + wait
    while streams_closed(stack) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    return streams_closed(stack)


def test_stream_of_a_client_that_hung_up_is_closed_without_a_keepalive(
    stack: LiveStack, sockets: list[socket.socket]
) -> None:
    kept = open_stream(stack, "demo-anna", sockets)
    gone = open_stream(stack, "demo-boris", sockets)
    time.sleep(0.3)
    assert streams_closed(stack) == 0
    gone.close()
    # The keepalive would come in an hour: the hang-up itself must end the stream.
    assert wait_for_closed_streams(stack, 1, wait=10) == 1
    time.sleep(0.5)
    assert streams_closed(stack) == 1, "the stream of the client still connected ended too"
    kept.close()
    assert wait_for_closed_streams(stack, 2, wait=10) == 2


@pytest.mark.parametrize(
    "stack", [{"VATS_SHUTDOWN_GRACE": "60"}], indirect=True, ids=["long-grace"]
)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_shutdown_ends_open_streams_at_once_without_errors(
    stack: LiveStack, sockets: list[socket.socket], sig: signal.Signals
) -> None:
    tokens = ("demo-anna", "demo-boris", "demo-vera")
    streams = [open_stream(stack, token, sockets) for token in tokens]
    time.sleep(0.3)
    gateway = stack.gateway
    assert gateway is not None
    gateway.send_signal(sig)
    # The grace period is a minute: streams still waiting for it would hold the gateway up.
    try:
        code = gateway.wait(timeout=15)
    except subprocess.TimeoutExpired:
        pytest.fail("the gateway waited for its open card streams:\n" + stack.log("gateway"))
    stack.gateway = None
    if sig == signal.SIGINT:
        assert code == 0, stack.log("gateway")
    for sock in streams:
        assert read_to_end(sock, wait=1), "a client's stream was not ended"
    entries = log_entries(stack)
    bad = [e for e in entries if e.get("level") not in ("debug", "info")]
    assert bad == [], "\n".join(json.dumps(e) for e in bad)
    assert streams_closed(stack) == len(streams), stack.log("gateway")
