"""Call cards as Server-Sent Events, against a fake core; and the SSE wire format."""

from __future__ import annotations

import asyncio
import json

from falcon.testing import ASGIConductor
from falcon.testing.client import StreamedResult

from gateway import convert
from gateway.app import create_app
from gateway.config import Config
from telephony.v1 import call_service_pb2
from tests.gateway.gateway_fakes import EMPLOYEE_TOKEN, FakeCore, sample_card

URL = "/api/v2/telephony/cards/stream"
TOKEN = {"Authorization": f"Bearer {EMPLOYEE_TOKEN}"}
Event = call_service_pb2.CallCardEvent


async def read_until(result: StreamedResult, marker: str) -> str:
    text = ""
    deadline = asyncio.get_running_loop().time() + 3.0
    while marker not in text:
        assert asyncio.get_running_loop().time() < deadline, f"no {marker!r} in {text!r}"
        text += (await result.stream.read()).decode()
        await asyncio.sleep(0.01)
    return text


def test_show_event_is_formatted_as_sse() -> None:
    event = Event(seq=41, type=Event.TYPE_SHOW, card=sample_card())
    sse = convert.card_event(event, "http://gw.test")
    assert sse is not None
    head, data = sse.serialize().decode().split("data: ")
    assert head == "event: show\nid: 41\n"
    assert data.endswith("\n\n")
    assert json.loads(data) == {
        "call_id": 725,
        "ticket_id": 8592,
        "channel_id": 1,
        "channel_name": "+7 495 000-00-00",
        "direction": "incoming",
        "phone": "+74951234567",
        "phone_display": "+7 495 123-45-67",
        "contact_name": "Ivan",
        "call_status": "ringing",
        "user_id": None,
        "user_name": "",
        "pbx_call_id": None,
        "created_at": "2025-01-02T03:04:05Z",
        "audio_record": None,
    }


def test_hide_event_carries_its_reason_and_the_recording_link() -> None:
    card = sample_card()
    card.user_id, card.pbx_call_id, card.recording_path = 3, "p-9", "/api/v2/telephony/records/r"
    sse = convert.card_event(
        Event(seq=7, type=Event.TYPE_HIDE, card=card, reason="final"), "http://h"
    )
    assert sse is not None
    data = json.loads(sse.serialize().decode().split("data: ")[1])
    assert data["reason"] == "final"
    assert (data["user_id"], data["pbx_call_id"]) == (3, "p-9")
    assert data["audio_record"] == "http://h/api/v2/telephony/records/r"


def test_reset_event_has_only_the_reason() -> None:
    sse = convert.card_event(Event(seq=9, type=Event.TYPE_RESET, reason="lagging"), "http://h")
    assert sse is not None
    assert sse.serialize() == b'event: reset\nid: 9\ndata: {"reason": "lagging"}\n\n'


def test_unknown_event_type_is_skipped_and_keepalive_is_a_comment() -> None:
    assert convert.card_event(Event(seq=1), "http://h") is None
    assert convert.keepalive().serialize() == b": keepalive\n\n"


async def test_events_stream_with_keepalives_and_the_upstream_ends_with_the_client(
    gateway: ASGIConductor, fake_core: FakeCore
) -> None:
    await fake_core.calls.card_events.put(Event(seq=1, type=Event.TYPE_SHOW, card=sample_card()))
    async with gateway.simulate_get_stream(URL, headers=TOKEN) as result:
        assert result.status_code == 200
        assert result.headers["content-type"].startswith("text/event-stream")
        text = await read_until(result, "event: show\nid: 1\n")
        await fake_core.calls.card_events.put(
            Event(seq=2, type=Event.TYPE_HIDE, card=sample_card(), reason="assigned")
        )
        text += await read_until(result, "event: hide\nid: 2\n")
        text += await read_until(result, ": keepalive\n\n")
    assert '"reason": "assigned"' in text
    await asyncio.wait_for(fake_core.calls.watch_ended.wait(), 3)


async def test_quiet_stream_starts_at_once_and_sends_keepalives(
    gateway: ASGIConductor, fake_core: FakeCore
) -> None:
    async with gateway.simulate_get_stream(URL, params={"access_token": EMPLOYEE_TOKEN}) as result:
        assert result.status_code == 200
        await read_until(result, ": keepalive\n\n")


async def test_last_event_id_resumes(gateway: ASGIConductor, fake_core: FakeCore) -> None:
    async with gateway.simulate_get_stream(
        URL, headers={**TOKEN, "Last-Event-ID": "1234"}
    ) as result:
        await read_until(result, ": keepalive")
    async with gateway.simulate_get_stream(
        URL, headers=TOKEN, params={"last_event_id": "77"}
    ) as result:
        await read_until(result, ": keepalive")
    assert [r.after_seq for r in fake_core.calls.watch_requests] == [1234, 77]


async def test_bad_token_is_401_json_before_any_event(gateway: ASGIConductor) -> None:
    result = await gateway.simulate_get(URL, headers={"Authorization": "Bearer wrong"})
    assert result.status_code == 401
    assert result.json == {"error": {"code": "unauthenticated", "message": "who?"}}


async def test_garbage_last_event_id_is_400(gateway: ASGIConductor) -> None:
    result = await gateway.simulate_get(URL, headers={**TOKEN, "Last-Event-ID": "x"})
    assert result.status_code == 400


async def test_non_ascii_token_is_401_without_asking_core(gateway: ASGIConductor) -> None:
    result = await gateway.simulate_get(URL, params={"access_token": "токен"})
    assert result.status_code == 401


async def test_unreachable_core_is_503() -> None:
    config = Config({"VATS_CORE_TARGET": "127.0.0.1:1"})
    async with ASGIConductor(create_app(config)) as gateway:
        result = await gateway.simulate_get(URL, headers=TOKEN)
    assert result.status_code == 503
    assert result.headers["Retry-After"] == "1"
