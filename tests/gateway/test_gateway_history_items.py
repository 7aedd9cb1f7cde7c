"""What a listed call tells the helpdesk beyond the PBX reply's fields: the number as people
read it, how long the caller waited, and the comments."""

from __future__ import annotations

import pytest

from gateway.history import call_details, call_summary
from telephony.v1 import call_pb2
from tests.gateway.gateway_fakes import sample_call


def _call(**times: str) -> call_pb2.Call:
    call = sample_call(phone="84951234567", phone_display="+7 495 123-45-67")
    call.create_time.FromJsonString("2026-01-31T06:00:00Z")
    for field, value in times.items():
        getattr(call, field).FromJsonString(value)
    return call


@pytest.mark.parametrize(
    ("times", "waited"),
    [
        ({}, None),
        ({"answer_time": "2026-01-31T06:00:12.500Z"}, 12.5),
        (
            {"answer_time": "2026-01-31T06:00:03Z", "end_time": "2026-01-31T06:09:00Z"},
            3.0,
        ),
        ({"end_time": "2026-01-31T06:00:40Z"}, 40.0),
    ],
    ids=["ringing", "in-progress", "answered", "never-answered"],
)
def test_wait_is_until_the_answer_or_the_end(times: dict[str, str], waited: float | None) -> None:
    assert call_summary(_call(**times), "http://h")["wait_seconds"] == waited


def test_summary_names_the_employee_who_has_the_call() -> None:
    call = _call()
    call.user_id, call.user_name = 2, "Boris Ivanov"
    summary = call_summary(call, "http://h")
    assert (summary["user_id"], summary["user_name"]) == (2, "Boris Ivanov")


def test_summary_shows_the_phone_as_people_read_it_and_the_comments() -> None:
    call = _call()
    call.ticket.comments.add(text="call me after 5", author="pbx").create_time.FromJsonString(
        "2026-01-31T06:00:01Z"
    )
    summary = call_summary(call, "http://h")
    assert (summary["phone"], summary["phone_display"]) == ("84951234567", "+7 495 123-45-67")
    comments = [{"text": "call me after 5", "author": "pbx", "created_at": "2026-01-31T06:00:01Z"}]
    assert summary["comments"] == comments
    assert summary["user_name"] == ""
    assert call_details(call, "http://h")["comments"] == comments
