"""The helpdesk workspace's rules in core.domain: how phones read, when a call opens or
resolves a callback, who is on a call or ringing, and what today's figures count."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import vocabulary
from core import domain
from core.domain import (
    Call,
    Callback,
    CallbackState,
    CallFacts,
    Direction,
    Presence,
    Resolution,
    Status,
)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
MOSCOW = "+74951234567"


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def call(**fields: Any) -> Call:
    base = Call(
        call_id=1,
        channel_id=1,
        direction=Direction.INCOMING,
        phone="8 (495) 123-45-67",
        status=Status.RINGING,
        created_at=T0,
        updated_at=T0,
        audience=(1, 2),
        viewers=(1, 2),
        phone_e164=MOSCOW,
        phone_key=MOSCOW,
        contact_id=7,
    )
    return dataclasses.replace(base, **fields)


def ended(status: Status, minutes: float = 1, **fields: Any) -> Call:
    return call(status=status, ended_at=at(minutes), updated_at=at(minutes), viewers=(), **fields)


# --- phones ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phone", "region", "shown"),
    [
        ("74951234567", "RU", "+7 495 123-45-67"),
        ("8 (495) 123-45-67", "RU", "+7 495 123-45-67"),
        ("+7 495 123 45 67", "RU", "+7 495 123-45-67"),
        ("4951234567", "RU", "+7 495 123-45-67"),
        ("+44 20 7946 0958", "RU", "+44 20 7946 0958"),
        ("7011234567", "KZ", "+7 701 123 4567"),
        # Not a number anyone dials in the region: shown as sent.
        ("101", "RU", "101"),
        ("1234567", "RU", "1234567"),
        ("+7 000 123-45-67", "RU", "+7 000 123-45-67"),
        ("anonymous 42", "RU", "anonymous 42"),
    ],
)
def test_a_phone_reads_in_the_international_format_when_it_is_a_number(
    phone: str, region: str, shown: str
) -> None:
    assert domain.phone_display(phone, domain.normalize_phone(phone, region)) == shown


# --- callbacks -------------------------------------------------------------------------------


@pytest.mark.parametrize("status", sorted(domain.UNANSWERED_STATUSES))
def test_an_incoming_call_ending_unanswered_opens_a_callback(status: Status) -> None:
    assert domain.opens_callback(Status.RINGING, ended(status))
    # Reported after the fact, as a new call.
    assert domain.opens_callback(None, ended(status))


def test_what_does_not_open_a_callback() -> None:
    assert not domain.opens_callback(Status.RINGING, ended(Status.ANSWERED))
    assert not domain.opens_callback(
        Status.RINGING, ended(Status.MISSED, direction=Direction.OUTGOING)
    )
    # Taken, then cut off: the caller was reached.
    assert not domain.opens_callback(Status.IN_PROGRESS, ended(Status.FAILED, answered_at=at(0.5)))
    # A retry of the final status is no second miss.
    assert not domain.opens_callback(Status.MISSED, ended(Status.MISSED))
    assert not domain.opens_callback(Status.RINGING, call())


def test_the_first_answer_of_a_call_either_way_resolves() -> None:
    answered = call(status=Status.IN_PROGRESS, answered_at=at(1))
    assert domain.resolves_callback(None, answered)
    assert domain.resolves_callback(
        None, dataclasses.replace(answered, direction=Direction.OUTGOING)
    )
    assert not domain.resolves_callback(at(1), answered)
    assert not domain.resolves_callback(None, call())


def test_a_callback_counts_misses_keeps_the_last_and_widens_its_audience() -> None:
    first = ended(Status.MISSED, 1, call_id=1, audience=(1, 2))
    callback = Callback.of_missed(10, first)
    assert (callback.attempts, callback.first_missed_at, callback.last_call_id) == (1, at(1), 1)
    assert callback.audience == (1, 2) and callback.is_open
    second = ended(Status.BUSY, 5, call_id=2, phone="+7 495 123 45 67", audience=(3,), user_id=4)
    callback.record_miss(second)
    assert callback.attempts == 2
    assert (callback.first_missed_at, callback.last_missed_at) == (at(1), at(5))
    assert (callback.last_call_id, callback.last_status, callback.phone) == (
        2,
        Status.BUSY,
        "+7 495 123 45 67",
    )
    assert callback.audience == (1, 2, 3, 4)
    assert callback.visible_to(3) and not callback.visible_to(5) and not callback.visible_to(None)


def test_the_first_resolution_is_kept() -> None:
    callback = Callback.of_missed(10, ended(Status.MISSED))
    assert callback.mark_called_back(2, "tok_a", at(10))
    assert (callback.state, callback.resolution) == (CallbackState.RESOLVED, Resolution.CALLED_BACK)
    assert (callback.resolved_by_employee_id, callback.resolved_at) == (2, at(10))
    assert callback.listed_at == at(10)
    answered = call(call_id=5, status=Status.IN_PROGRESS, answered_at=at(20), user_id=1)
    assert not callback.resolve_by_answer(answered)
    assert not callback.mark_called_back(3, "tok_b", at(30))
    assert (callback.resolved_by_employee_id, callback.resolved_at) == (2, at(10))


def test_an_answered_call_resolves_with_who_took_it() -> None:
    callback = Callback.of_missed(10, ended(Status.MISSED))
    assert callback.listed_at == at(1)
    answered = call(call_id=5, status=Status.IN_PROGRESS, answered_at=at(20), user_id=1)
    assert callback.resolve_by_answer(answered)
    assert callback.resolution is Resolution.ANSWERED
    assert (callback.resolved_by_call_id, callback.resolved_by_employee_id) == (5, 1)
    assert callback.resolved_at == at(20)


def test_the_workspace_enums_are_the_protos() -> None:
    assert tuple(CallbackState) == vocabulary.CALLBACK_STATE.names
    assert tuple(Resolution) == vocabulary.CALLBACK_RESOLUTION.names
    assert set(Presence) == set(vocabulary.EMPLOYEE_STATE.names)


# --- the board ---------------------------------------------------------------------------


def test_presence_follows_the_live_calls() -> None:
    calls = [
        call(call_id=1, status=Status.IN_PROGRESS, user_id=1, viewers=(1,), answered_at=at(1)),
        call(call_id=2, status=Status.RINGING, viewers=(1, 2)),
        call(call_id=3, status=Status.RINGING, viewers=(3,), expired=True),
        call(call_id=4, status=Status.ANSWERED, user_id=4, viewers=()),
        call(call_id=5, status=Status.RINGING, viewers=(5,)),
        call(call_id=6, status=Status.RINGING, viewers=(5,)),
    ]
    assert domain.presences([1, 2, 3, 4, 5, 6], calls) == {
        1: (Presence.ON_CALL, 1),
        2: (Presence.RINGING, 2),
        3: (Presence.FREE, None),
        4: (Presence.FREE, None),
        # The oldest call ringing for them.
        5: (Presence.RINGING, 5),
        6: (Presence.FREE, None),
    }
    assert [c.call_id for c in calls if domain.on_board(c)] == [1, 2, 5, 6]


def test_today_is_midnight_to_midnight_in_the_zone() -> None:
    moscow = ZoneInfo("Europe/Moscow")
    day = domain.day_of(datetime(2026, 3, 2, 21, 30, tzinfo=UTC), moscow, "Europe/Moscow")
    # 00:30 in Moscow (UTC+3) on the 3rd.
    assert day.day == date(2026, 3, 3)
    assert day.start == datetime(2026, 3, 2, 21, 0, tzinfo=UTC)
    assert day.end == datetime(2026, 3, 3, 21, 0, tzinfo=UTC)
    # The day summer time starts has 23 hours.
    berlin = domain.day_of(datetime(2026, 3, 29, 12, tzinfo=UTC), ZoneInfo("Europe/Berlin"), "B")
    assert berlin.end - berlin.start == timedelta(hours=23)


def facts(**fields: Any) -> CallFacts:
    base = CallFacts(
        call_id=1, channel_id=1, direction=Direction.INCOMING, status=Status.RINGING, created_at=T0
    )
    return dataclasses.replace(base, **fields)


def test_figures_count_todays_incoming_calls_and_the_talk_of_calls_ended_today() -> None:
    day = domain.day_of(T0, UTC, "UTC")
    yesterday = T0 - timedelta(days=1)
    created = [
        facts(call_id=1, status=Status.ANSWERED, answered_at=at(0.5), ended_at=at(3)),
        facts(call_id=2, status=Status.IN_PROGRESS, created_at=at(1), answered_at=at(2.5)),
        facts(call_id=3, status=Status.MISSED, ended_at=at(1)),
        facts(call_id=4, status=Status.CANCELED, ended_at=at(1)),
        facts(call_id=5),
        # Answered, then failed: answered, not missed.
        facts(call_id=6, status=Status.FAILED, answered_at=at(0.5), ended_at=at(1.5)),
        facts(call_id=7, direction=Direction.OUTGOING, status=Status.MISSED),
        facts(call_id=8, channel_id=2, status=Status.BUSY, ended_at=at(1)),
        facts(call_id=9, created_at=yesterday),
    ]
    ended_today = [
        facts(call_id=1, answered_at=at(0.5), ended_at=at(3)),
        facts(call_id=6, answered_at=at(0.5), ended_at=at(1.5)),
        facts(call_id=10, direction=Direction.OUTGOING, answered_at=at(1), ended_at=at(5)),
        facts(call_id=11, created_at=yesterday, answered_at=at(-120), ended_at=at(-60)),
        facts(call_id=12, ended_at=yesterday, answered_at=yesterday),
    ]
    figures = domain.day_figures(created, ended_today, day)
    line = figures[1]
    assert (line.incoming, line.answered, line.missed) == (6, 3, 2)
    assert line.answer_rate == pytest.approx(0.5)
    # Waits of 30 s, 90 s and 30 s.
    assert line.average_wait == timedelta(seconds=50)
    # Talks of 150 s, 60 s, 240 s, 3600 s.
    assert line.average_talk == timedelta(seconds=(150 + 60 + 240 + 3600) / 4)
    other = figures[2]
    assert (other.incoming, other.answered, other.missed) == (1, 0, 1)
    assert other.answer_rate == 0 and other.average_wait is None and other.average_talk is None
    empty = domain.Figures()
    assert empty.answer_rate is None and empty.average_wait is None
