"""The supervisor board over HTTP and Server-Sent Events, against a fake core: the JSON,
the caller's token passed through, refusals before a stream starts, and streams that end
with their client and with the gateway."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from falcon.testing import ASGIConductor
from falcon.testing.client import StreamedResult

from gateway.app import GatewayApp
from gateway.board import board_json
from tests.gateway.gateway_fakes import EMPLOYEE_TOKEN, FakeCore
from tests.gateway.workspace_fakes import (
    SUPERVISOR_TOKEN,
    WorkspaceCallService,
    calls_of,
    sample_board,
)

URL = "/api/v2/telephony/board"
STREAM = "/api/v2/telephony/board/stream"
SUPERVISOR = {"Authorization": f"Bearer {SUPERVISOR_TOKEN}"}
ANNA = {"Authorization": f"Bearer {EMPLOYEE_TOKEN}"}

BOARD_JSON = {
    "day": "2026-01-31",
    "timezone": "Europe/Moscow",
    "at": "2026-01-31T06:12:00Z",
    "calls": [
        {
            "call_id": 725,
            "ticket_id": 8592,
            "channel_id": 1,
            "channel_name": "+7 495 000-00-00",
            "direction": "incoming",
            "phone": "84951234567",
            "phone_display": "+7 495 123-45-67",
            "contact_name": "Ivan",
            "call_status": "ringing",
            "created_at": "2026-01-31T06:10:00Z",
            "answered_at": None,
            "user_id": None,
            "user_name": "",
            "audience": [{"employee_id": 1, "name": "Anna Petrova"}],
        },
        {
            "call_id": 726,
            "ticket_id": 8593,
            "channel_id": 1,
            "channel_name": "+7 495 000-00-00",
            "direction": "outgoing",
            "phone": "777777777",
            "phone_display": "777777777",
            "contact_name": "",
            "call_status": "in-progress",
            "created_at": "2026-01-31T06:11:00Z",
            "answered_at": "2026-01-31T06:11:04Z",
            "user_id": 2,
            "user_name": "Boris Ivanov",
            "audience": [{"employee_id": 2, "name": "Boris Ivanov"}],
        },
    ],
    "employees": [
        {"employee_id": 1, "name": "Anna Petrova", "state": "ringing", "call_id": 725},
        {"employee_id": 2, "name": "Boris Ivanov", "state": "on-call", "call_id": 726},
        {"employee_id": 3, "name": "Vera Sokolova", "state": "free", "call_id": None},
    ],
    "figures": [
        {
            "channel_id": 1,
            "channel_name": "+7 495 000-00-00",
            "incoming": 4,
            "answered": 2,
            "missed": 1,
            "answer_rate": 0.5,
            "average_wait_seconds": 12.5,
            "average_talk_seconds": None,
            "open_callbacks": 1,
        }
    ],
}


@pytest.fixture
async def fake_core() -> AsyncIterator[FakeCore]:
    async with FakeCore(WorkspaceCallService()) as core:
        yield core


async def read_until(result: StreamedResult, marker: str) -> str:
    text = ""
    async with asyncio.timeout(5):
        while marker not in text:
            text += (await result.stream.read()).decode()
            await asyncio.sleep(0.01)
    return text


def board_events(text: str) -> list[dict[str, object]]:
    """The data of each `board` event in an SSE text."""
    found = []
    for message in text.split("\n\n"):
        lines = message.splitlines()
        if "event: board" in lines:
            data = [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]
            found.append(json.loads("\n".join(data)))
    return found


def test_board_json_names_states_and_leaves_what_is_unknown_null() -> None:
    assert board_json(sample_board()) == BOARD_JSON


async def test_board_is_the_supervisors(gateway: ASGIConductor, fake_core: FakeCore) -> None:
    result = await gateway.simulate_get(URL, headers={**SUPERVISOR, "X-Request-ID": "req-9"})
    assert result.status_code == 200, result.text
    assert result.json == {"data": BOARD_JSON}
    said = fake_core.calls.metadata[-1]
    assert (said["authorization"], said["x-request-id"]) == (f"Bearer {SUPERVISOR_TOKEN}", "req-9")


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        (ANNA, 403, "permission_denied"),
        ({"Authorization": "Bearer wrong"}, 401, "unauthenticated"),
        ({}, 401, "unauthenticated"),
    ],
    ids=["employee", "unknown", "none"],
)
async def test_board_refuses_other_tokens(
    gateway: ASGIConductor, headers: dict[str, str], status: int, code: str
) -> None:
    for url in (URL, STREAM):
        result = await gateway.simulate_get(url, headers=headers)
        assert result.status_code == status, url
        assert result.headers["content-type"].startswith("application/json")
        assert result.json["error"]["code"] == code, url


async def test_stream_sends_the_board_at_once_then_each_change_and_keepalives(
    gateway: ASGIConductor, fake_core: FakeCore
) -> None:
    async with gateway.simulate_get_stream(STREAM, headers=SUPERVISOR) as result:
        assert result.status_code == 200
        assert result.headers["content-type"].startswith("text/event-stream")
        text = await read_until(result, "event: board\n")
        await calls_of(fake_core).boards.put(sample_board(day="2026-02-01"))
        text += await read_until(result, '"day": "2026-02-01"')
        text += await read_until(result, ": keepalive\n\n")
    first, second = board_events(text)[:2]
    assert first == BOARD_JSON
    assert second == {**BOARD_JSON, "day": "2026-02-01"}
    # Leaving the block hung up: core's stream is cancelled with it.
    await asyncio.wait_for(calls_of(fake_core).board_watch_ended.wait(), 5)


async def test_stream_takes_the_token_from_the_query(
    gateway: ASGIConductor, fake_core: FakeCore
) -> None:
    params = {"access_token": SUPERVISOR_TOKEN}
    async with gateway.simulate_get_stream(STREAM, params=params) as result:
        assert result.status_code == 200
        await read_until(result, "event: board\n")
    assert fake_core.calls.metadata[-1]["authorization"] == f"Bearer {SUPERVISOR_TOKEN}"


async def test_stream_ends_with_its_client(quiet_app: GatewayApp, fake_core: FakeCore) -> None:
    async with ASGIConductor(quiet_app) as gateway, asyncio.timeout(10):
        async with gateway.simulate_get_stream(STREAM, headers=SUPERVISOR) as result:
            await read_until(result, "event: board\n")
        await calls_of(fake_core).board_watch_ended.wait()


async def test_gateway_shutdown_ends_every_board_stream(
    quiet_app: GatewayApp, fake_core: FakeCore
) -> None:
    async with ASGIConductor(quiet_app) as gateway, asyncio.timeout(10):
        responses = [
            asyncio.create_task(gateway.simulate_get(STREAM, headers=SUPERVISOR)) for _ in range(2)
        ]
        while calls_of(fake_core).board_watches < 2:  # noqa: ASYNC110 (the fake sets no event)
            await asyncio.sleep(0.01)
        quiet_app.end_streams()
        results = await asyncio.gather(*responses)
    assert [r.status_code for r in results] == [200, 200]
    assert all(board_events(r.text) == [BOARD_JSON] for r in results)
