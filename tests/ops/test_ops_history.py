"""Call history over HTTP for the helpdesk, against real core and gateway processes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import LiveStack
from tests.ops.ops_support import wav_bytes

pytestmark = pytest.mark.e2e

SERVICE = {"Authorization": "Bearer demo-service"}
ANNA = {"Authorization": "Bearer demo-anna"}
BORIS = {"Authorization": "Bearer demo-boris"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    stack = LiveStack(tmp_path_factory.mktemp("history"), {"VATS_METRICS_ADDR": "off"})
    try:
        stack.start_core()
        stack.start_gateway()
        yield stack
    finally:
        stack.stop()


def report(stack: LiveStack, **fields: Any) -> dict[str, Any]:
    reply = httpx.post(stack.calls_url, json=fields, timeout=10)
    assert reply.status_code == 200, reply.text
    # Calls a few milliseconds apart: created_at then orders them unambiguously.
    time.sleep(0.01)
    return dict(reply.json()["data"])


@pytest.fixture(scope="module")
def calls(stack: LiveStack) -> dict[str, int]:
    """The calls every test reads: who sees which is set by user_ids and group_ids."""
    made = {
        "anna_ringing": report(
            stack,
            action="create_call",
            direction="incoming",
            phone="+7 495 111-11-11",
            user_ids=[1],
        ),
        "boris_answered": report(
            stack,
            action="create_call",
            direction="outgoing",
            phone="+7 495 222-22-22",
            user_ids=[2],
            call_status="answered",
        ),
        "vera_missed": report(
            stack,
            action="create_call",
            direction="incoming",
            phone="8 (495) 111-11-11",
            user_ids=[3],
            call_status="missed",
        ),
        "first_line_ringing": report(
            stack,
            action="create_call",
            direction="incoming",
            phone="+7 495 333-33-33",
            group_ids=[10],
        ),
    }
    for n in range(5):
        made[f"paged_{n}"] = report(
            stack,
            action="create_call",
            direction="outgoing",
            phone="+7 495 444-44-44",
            user_ids=[3],
            call_status="answered",
        )
    return {name: int(data["call_id"]) for name, data in made.items()}


def history(
    stack: LiveStack, params: Any = None, headers: dict[str, str] | None = None
) -> httpx.Response:
    return httpx.get(
        f"{stack.http_url}/api/v2/telephony/history",
        params=params,
        headers=SERVICE if headers is None else headers,
        timeout=10,
    )


def ids(reply: httpx.Response) -> list[int]:
    assert reply.status_code == 200, reply.text
    return [int(call["call_id"]) for call in reply.json()["data"]]


def test_history_lists_calls_newest_first_in_the_pbx_words(
    stack: LiveStack, calls: dict[str, int]
) -> None:
    reply = history(stack, {"page_size": 50})
    listed = ids(reply)
    assert listed == sorted(calls.values(), reverse=True)
    assert reply.json()["next_page_token"] is None
    first = next(c for c in reply.json()["data"] if c["call_id"] == calls["boris_answered"])
    assert first["call_status"] == "answered"
    assert first["direction"] == "outgoing"
    assert first["phone"] == "+7 495 222-22-22"
    assert first["phone_e164"] == "+74952222222"
    assert first["user_id"] == 2
    assert first["created_at"].endswith("Z")
    assert first["ended_at"].endswith("Z")
    assert first["audio_record"] is None
    assert isinstance(first["ticket_id"], int)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"phone": "74951111111"}, ["vera_missed", "anna_ringing"]),
        (
            [("status", "ringing"), ("status", "missed")],
            ["first_line_ringing", "vera_missed", "anna_ringing"],
        ),
        ({"status": "ringing,missed"}, ["first_line_ringing", "vera_missed", "anna_ringing"]),
        ({"direction": "outgoing", "phone": "+74952222222"}, ["boris_answered"]),
        ({"employee": "2"}, ["first_line_ringing", "boris_answered"]),
        ({"employee": "1", "status": "ringing"}, ["first_line_ringing", "anna_ringing"]),
        ({"channel": "999"}, []),
    ],
)
def test_history_filters(
    stack: LiveStack, calls: dict[str, int], params: Any, expected: list[str]
) -> None:
    assert ids(history(stack, params)) == [calls[name] for name in expected]


def test_history_filters_by_creation_time(stack: LiveStack, calls: dict[str, int]) -> None:
    reply = history(stack, {"page_size": 50})
    created = {c["call_id"]: c["created_at"] for c in reply.json()["data"]}
    pivot = created[calls["vera_missed"]]
    before = ids(history(stack, {"to": pivot}))
    since = ids(history(stack, {"from": pivot}))
    assert before == [calls["boris_answered"], calls["anna_ringing"]]
    assert calls["vera_missed"] in since and calls["anna_ringing"] not in since
    assert sorted(before + since) == sorted(calls.values())
    # A date-time without an offset is UTC; a bare date is its midnight.
    assert ids(history(stack, {"to": "2000-01-01"})) == []
    assert ids(history(stack, {"from": "2000-01-01T00:00:00", "phone": "74952222222"})) == [
        calls["boris_answered"]
    ]


def test_history_pages_cover_every_call_once(stack: LiveStack, calls: dict[str, int]) -> None:
    params: dict[str, Any] = {"phone": "+7 495 444-44-44", "page_size": 2}
    pages: list[list[int]] = []
    while True:
        reply = history(stack, params)
        pages.append(ids(reply))
        token = reply.json()["next_page_token"]
        if token is None:
            break
        params["page_token"] = token
    assert [len(page) for page in pages] == [2, 2, 1]
    assert [i for page in pages for i in page] == [calls[f"paged_{n}"] for n in range(4, -1, -1)]


def test_employee_token_sees_only_calls_shown_or_bound_to_them(
    stack: LiveStack, calls: dict[str, int]
) -> None:
    assert ids(history(stack, headers=ANNA)) == [calls["first_line_ringing"], calls["anna_ringing"]]
    assert ids(history(stack, {"access_token": "demo-boris"}, headers={})) == [
        calls["first_line_ringing"],
        calls["boris_answered"],
    ]
    other = history(stack, {"employee": "2"}, headers=ANNA)
    assert other.status_code == 403
    assert other.json()["error"]["code"] == "permission_denied"
    url = f"{stack.http_url}/api/v2/telephony/history"
    assert httpx.get(f"{url}/{calls['boris_answered']}", headers=ANNA).status_code == 404
    assert httpx.get(f"{url}/{calls['anna_ringing']}", headers=ANNA).status_code == 200


def test_history_needs_a_valid_token(stack: LiveStack, calls: dict[str, int]) -> None:
    assert history(stack, headers={}).status_code == 401
    refused = history(stack, headers={"Authorization": "Bearer not-a-token"})
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "unauthenticated"
    detail = httpx.get(f"{stack.http_url}/api/v2/telephony/history/{calls['anna_ringing']}")
    assert detail.status_code == 401


def test_bad_filters_are_refused_with_the_fields_at_fault(stack: LiveStack) -> None:
    reply = history(
        stack,
        {
            "status": "ringing,sleeping",
            "direction": "sideways",
            "employee": "anna",
            "channel": "-1",
            "from": "yesterday",
            "to": "2026-13-45",
            "page_size": "501",
        },
    )
    assert reply.status_code == 422
    error = reply.json()["error"]
    assert error["code"] == "invalid_request"
    assert set(error["fields"]) == {
        "status",
        "direction",
        "employee",
        "channel",
        "from",
        "to",
        "page_size",
    }
    backwards = history(stack, {"from": "2026-02-01", "to": "2026-01-01"})
    assert backwards.status_code == 422 and set(backwards.json()["error"]["fields"]) == {"to"}
    forged = history(stack, {"page_token": "not-a-page-token"})
    assert forged.status_code == 422
    assert set(forged.json()["error"]["fields"]) == {"page_token"}


def test_unknown_call_is_not_found(stack: LiveStack) -> None:
    for call_id in ("987654", "abc", "0", "99999999999999999999"):
        reply = httpx.get(f"{stack.http_url}/api/v2/telephony/history/{call_id}", headers=SERVICE)
        assert reply.status_code == 404, call_id
        assert reply.json()["error"]["code"] == "not_found"


def test_call_details_carry_history_comments_recordings_ticket_and_contact(
    stack: LiveStack,
) -> None:
    audio = wav_bytes()
    created = httpx.post(
        stack.calls_url,
        files=[
            ("action", (None, "create_call")),
            ("direction", (None, "incoming")),
            ("phone", (None, "+7 495 555-55-55")),
            ("pbx_call_id", (None, "ops-details-1")),
            ("comment", (None, "caller asks about the invoice")),
            ("audio_record", ("first.wav", audio, "audio/wav")),
        ],
        timeout=10,
    ).json()["data"]
    for status in ("in-progress", "answered"):
        updated = httpx.post(
            stack.calls_url,
            json={
                "action": "update_call",
                "pbx_call_id": "ops-details-1",
                "call_status": status,
                "pbx_user_id": "101",
            },
            timeout=10,
        )
        assert updated.status_code == 200, updated.text

    reply = httpx.get(
        f"{stack.http_url}/api/v2/telephony/history/{created['call_id']}", headers=SERVICE
    )
    assert reply.status_code == 200, reply.text
    call = reply.json()["data"]
    assert call["call_id"] == created["call_id"]
    assert call["pbx_call_id"] == "ops-details-1"
    assert call["call_status"] == "answered"
    assert call["user_id"] == 1 and call["pbx_user_id"] == "101"
    assert [h["call_status"] for h in call["status_history"]] == [
        "ringing",
        "in-progress",
        "answered",
    ]
    assert all(h["at"].endswith("Z") for h in call["status_history"])
    assert call["answered_at"] and call["ended_at"]
    assert [c["text"] for c in call["comments"]] == ["caller asks about the invoice"]
    assert call["ticket"]["ticket_id"] == created["ticket_id"]
    assert call["ticket"]["department_id"] == 1
    assert call["ticket"]["executor_id"] == 1
    assert call["contact"]["phone_e164"] == "+74955555555"
    [recording] = call["recordings"]
    assert recording["format"] == "wav"
    assert recording["size_bytes"] == len(audio)
    assert recording["url"].startswith(f"{stack.http_url}/api/v2/telephony/records/")
    assert call["audio_record"] is not None
    downloaded = httpx.get(recording["url"], timeout=10)
    assert downloaded.status_code == 200
    assert downloaded.content == audio
