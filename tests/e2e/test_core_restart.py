"""Core restarted while card streams are open, on the default SQLite store: clients
resume where they were and lose no event. (An SSE stream open at the gateway stays open
across the restart: tests/e2e/test_card_feed_e2e.py.)"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from telephony.v1 import call_service_pb2, call_service_pb2_grpc
from tests.conftest import LiveStack, bearer, running_stack
from tests.e2e.sse import SSEReader

pytestmark = pytest.mark.e2e


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[LiveStack]:
    with running_stack(tmp_path) as stack:
        yield stack


def post(stack: LiveStack, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(stack.calls_url, json=body, timeout=10)


def sse(stack: LiveStack, token: str, last_event_id: str | None = None) -> SSEReader:
    headers = {"Authorization": f"Bearer {token}"}
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    reader = SSEReader(f"{stack.http_url}/api/v2/telephony/cards/stream", headers)
    assert reader.status == 200
    return reader


def grpc_events(stack: LiveStack, token: str, after_seq: int, count: int) -> list[Any]:
    with grpc.insecure_channel(stack.grpc_target) as channel:
        stream = call_service_pb2_grpc.CallServiceStub(channel).WatchCallCards(
            call_service_pb2.WatchCallCardsRequest(after_seq=after_seq),
            metadata=bearer(token),
            timeout=10,
        )
        events = []
        for event in stream:
            events.append(event)
            if len(events) == count:
                stream.cancel()
                break
        return events


def wait_until_ready(stack: LiveStack) -> None:
    deadline = time.monotonic() + 15
    while httpx.get(f"{stack.http_url}/healthz").status_code != 200:
        assert time.monotonic() < deadline, "the gateway did not reconnect to core"
        time.sleep(0.1)


@pytest.mark.parametrize("stop", ["graceful", "sigkill"])
def test_streams_resume_across_a_core_restart_without_losing_events(
    stack: LiveStack, stop: str
) -> None:
    audience = {"direction": "incoming", "phone": "+74951234567", "user_ids": [1, 2]}
    first = post(stack, {"action": "create_call", **audience}).json()["data"]
    anna = sse(stack, "demo-anna")
    shown = anna.next()
    assert (shown.event, shown.json["call_id"]) == ("show", first["call_id"])
    boris_seen = grpc_events(stack, "demo-boris", 0, 1)
    assert boris_seen[0].card.call_id == first["call_id"]

    if stop == "sigkill":
        stack.kill_core()
    else:
        stack.stop_core()
    # While core is down nothing is accepted, so nothing can be lost.
    assert post(stack, {"action": "create_call", **audience}).status_code == 503
    anna.close()
    stack.start_core()
    wait_until_ready(stack)

    # Changes made before the clients come back.
    second = post(stack, {"action": "create_call", **audience}).json()["data"]
    assert second["call_id"] > first["call_id"]
    update = post(
        stack, {"action": "update_call", "call_id": first["call_id"], "call_status": "in-progress"}
    )
    assert update.status_code == 200

    resumed = sse(stack, "demo-anna", last_event_id=shown.id)
    missed = resumed.take(2)
    assert [(e.event, e.json["call_id"]) for e in missed] == [
        ("show", second["call_id"]),
        ("update", first["call_id"]),
    ]
    assert resumed.nothing_more()
    resumed.close()
    boris_missed = grpc_events(stack, "demo-boris", boris_seen[0].seq, 2)
    assert [(e.type, e.card.call_id) for e in boris_missed] == [
        (call_service_pb2.CallCardEvent.TYPE_SHOW, second["call_id"]),
        (call_service_pb2.CallCardEvent.TYPE_UPDATE, first["call_id"]),
    ]
