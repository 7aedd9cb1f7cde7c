"""Live call cards over SSE end to end: real core and gateway processes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import LiveStack
from tests.e2e.sse import SSEReader, SSEvent

pytestmark = pytest.mark.e2e


def stream_url(stack: LiveStack) -> str:
    return f"{stack.http_url}/api/v2/telephony/cards/stream"


def open_stream(
    stack: LiveStack, token: str, last_event_id: str | None = None, by_query: bool = False
) -> SSEReader:
    url, headers = stream_url(stack), {}
    if by_query:
        url += f"?access_token={token}"
    else:
        headers["Authorization"] = f"Bearer {token}"
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    reader = SSEReader(url, headers)
    assert reader.status == 200, getattr(reader, "body", "")
    return reader


def post(stack: LiveStack, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(stack.calls_url, json=body, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["data"]


@pytest.fixture
def readers(live_stack: LiveStack) -> Iterator[list[SSEReader]]:
    opened: list[SSEReader] = []
    yield opened
    for reader in opened:
        reader.close()


def drain(reader: SSEReader) -> None:
    """Skip the snapshot of cards left by earlier tests."""
    while not reader.nothing_more(0.3):
        while not reader.events.empty():
            reader.events.get_nowait()


def test_card_reaches_every_audience_member_and_only_them(
    live_stack: LiveStack, readers: list[SSEReader]
) -> None:
    anna = open_stream(live_stack, "demo-anna")
    boris = open_stream(live_stack, "demo-boris", by_query=True)
    vera = open_stream(live_stack, "demo-vera")
    readers += [anna, boris, vera]
    for reader in readers:
        drain(reader)
    created = post(
        live_stack,
        {
            "action": "create_call",
            "direction": "incoming",
            "phone": "+74951234567",
            "group_ids": [10],
        },
    )
    for reader in (anna, boris):
        event = reader.next()
        assert event.event == "show" and event.id is not None and int(event.id) > 0
        card = event.json
        assert card["call_id"] == created["call_id"]
        assert card["ticket_id"] == created["ticket_id"]
        assert card["phone"] == "+74951234567" and card["direction"] == "incoming"
        assert card["call_status"] == "ringing"
        assert card["channel_name"] == "+7 495 000-00-00"
    assert vera.nothing_more()
    post(
        live_stack,
        {"action": "update_call", "call_id": created["call_id"], "call_status": "missed"},
    )
    for reader in (anna, boris):
        event = reader.next()
        assert event.event == "hide" and event.json["call_id"] == created["call_id"]
        assert event.json["reason"] == "final"
    assert vera.nothing_more()


def test_snapshot_on_connect_shows_active_calls(
    live_stack: LiveStack, readers: list[SSEReader]
) -> None:
    created = post(
        live_stack,
        {
            "action": "create_call",
            "direction": "outgoing",
            "phone": "+74951112233",
            "user_ids": [3],
        },
    )
    vera = open_stream(live_stack, "demo-vera")
    readers.append(vera)
    shown: list[SSEvent] = []
    while not vera.nothing_more(0.3) or not shown:
        while not vera.events.empty():
            shown.append(vera.events.get_nowait())
    assert created["call_id"] in {e.json["call_id"] for e in shown if e.event == "show"}
    post(
        live_stack,
        {"action": "update_call", "call_id": created["call_id"], "call_status": "answered"},
    )


def test_reconnect_with_last_event_id_gets_exactly_what_was_missed(
    live_stack: LiveStack, readers: list[SSEReader]
) -> None:
    boris = open_stream(live_stack, "demo-boris")
    readers.append(boris)
    drain(boris)
    first = post(
        live_stack,
        {
            "action": "create_call",
            "direction": "incoming",
            "phone": "+74950000001",
            "user_ids": [2, 3],
        },
    )
    seen = boris.next()
    assert seen.json["call_id"] == first["call_id"]
    boris.close()
    # Missed while away: a new card, an update, and someone else's call.
    second = post(
        live_stack,
        {
            "action": "create_call",
            "direction": "incoming",
            "phone": "+74950000002",
            "user_ids": [2, 3],
        },
    )
    post(
        live_stack,
        {"action": "update_call", "call_id": first["call_id"], "call_status": "in-progress"},
    )
    post(
        live_stack,
        {
            "action": "create_call",
            "direction": "incoming",
            "phone": "+74950000003",
            "user_ids": [1],
        },
    )
    resumed = open_stream(live_stack, "demo-boris", last_event_id=seen.id)
    readers.append(resumed)
    missed = resumed.take(2)
    assert [(e.event, e.json["call_id"]) for e in missed] == [
        ("show", second["call_id"]),
        ("update", first["call_id"]),
    ]
    assert int(missed[0].id or 0) > int(seen.id or 0)
    assert resumed.nothing_more()
    for call in (first, second):
        post(
            live_stack,
            {"action": "update_call", "call_id": call["call_id"], "call_status": "answered"},
        )


def test_stream_needs_an_employee_token(live_stack: LiveStack) -> None:
    missing = httpx.get(stream_url(live_stack), timeout=10)
    assert missing.status_code == 401
    wrong = httpx.get(stream_url(live_stack) + "?access_token=nope", timeout=10)
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"]


def test_keepalive_comments_flow_while_idle(
    live_stack: LiveStack, readers: list[SSEReader]
) -> None:
    # The live stack sends a comment every second (VATS_SSE_KEEPALIVE=1; 15 s by default).
    anna = open_stream(live_stack, "demo-anna")
    readers.append(anna)
    anna.nothing_more(2.5)
    assert len(anna.comments) >= 2
