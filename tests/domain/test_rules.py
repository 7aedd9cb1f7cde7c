"""The call rules of SPEC 3 and the card rules of SPEC 5, on plain domain objects."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core import domain
from core.domain import (
    Audience,
    Call,
    CardChange,
    CreateCall,
    Direction,
    Employee,
    ExpiryPolicy,
    Status,
    UpdateCall,
)
from core.errors import FinalStatus, InvalidRequest

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
EMPLOYEES = {
    1: Employee(1, "Anna", True),
    2: Employee(2, "Boris", True),
    3: Employee(3, "Vera", True),
    4: Employee(4, "Gleb", False),
}
GROUPS = {10: [1, 2], 20: [3, 4], 30: [4]}
PBX_USERS = {"101": 1, "102": 2, "104": 4}
TELEPHONY = {1, 2, 3}


def audience(**fields: object) -> Audience:
    command = CreateCall(direction=Direction.INCOMING, phone="1", **fields)  # type: ignore[arg-type]
    return domain.resolve_audience(command, EMPLOYEES, GROUPS, PBX_USERS)


def open_call(status: Status = Status.RINGING, **fields: object) -> Call:
    command = CreateCall(
        direction=Direction.INCOMING,
        phone="+74951234567",
        status=status,
        **fields,  # type: ignore[arg-type]
    )
    resolved = domain.resolve_audience(command, EMPLOYEES, GROUPS, PBX_USERS)
    return Call.open(
        call_id=1, channel_id=1, command=command, audience=resolved, telephony_ids=TELEPHONY, now=T0
    )


# --- statuses ----------------------------------------------------------------


@pytest.mark.parametrize("status", [Status.RINGING, Status.IN_PROGRESS])
def test_active_statuses(status: Status) -> None:
    assert status.is_active and not status.is_final


@pytest.mark.parametrize(
    "status", [Status.CANCELED, Status.MISSED, Status.FAILED, Status.ANSWERED, Status.BUSY]
)
def test_final_statuses(status: Status) -> None:
    assert status.is_final


@pytest.mark.parametrize("target", list(Status))
@pytest.mark.parametrize("start", [Status.RINGING, Status.IN_PROGRESS])
def test_active_call_may_move_to_any_status(start: Status, target: Status) -> None:
    call = open_call(start)
    call.apply(
        status=target,
        user_id=None,
        pbx_user_id=None,
        telephony_ids=TELEPHONY,
        now=T0 + timedelta(seconds=5),
    )
    assert call.status is target


@pytest.mark.parametrize("final", [s for s in Status if s.is_final])
def test_final_status_is_not_reopened(final: Status) -> None:
    call = open_call(final)
    for other in Status:
        if other is final:
            continue
        with pytest.raises(FinalStatus):
            call.apply(
                status=other, user_id=None, pbx_user_id=None, telephony_ids=TELEPHONY, now=T0
            )
        assert call.status is final


def test_same_final_status_again_is_a_harmless_retry() -> None:
    call = open_call(Status.BUSY)
    call.apply(
        status=Status.BUSY,
        user_id=2,
        pbx_user_id=None,
        telephony_ids=TELEPHONY,
        now=T0 + timedelta(seconds=9),
    )
    assert call.status is Status.BUSY
    assert [h.status for h in call.history] == [Status.BUSY]
    assert call.ended_at == T0
    assert call.user_id == 2


def test_times_and_talk_duration() -> None:
    call = open_call()
    assert call.answered_at is None and call.ended_at is None and call.talk_duration is None
    call.apply(
        status=Status.IN_PROGRESS,
        user_id=None,
        pbx_user_id=None,
        telephony_ids=TELEPHONY,
        now=T0 + timedelta(seconds=10),
    )
    call.apply(
        status=Status.ANSWERED,
        user_id=None,
        pbx_user_id=None,
        telephony_ids=TELEPHONY,
        now=T0 + timedelta(seconds=70),
    )
    assert call.created_at == T0
    assert call.answered_at == T0 + timedelta(seconds=10)
    assert call.ended_at == T0 + timedelta(seconds=70)
    assert call.talk_duration == timedelta(seconds=60)
    assert [h.status for h in call.history] == [Status.RINGING, Status.IN_PROGRESS, Status.ANSWERED]


def test_answered_straight_from_ringing_sets_both_times() -> None:
    call = open_call()
    call.apply(
        status=Status.ANSWERED,
        user_id=None,
        pbx_user_id=None,
        telephony_ids=TELEPHONY,
        now=T0 + timedelta(seconds=3),
    )
    assert call.answered_at == call.ended_at == T0 + timedelta(seconds=3)
    assert call.talk_duration == timedelta(0)


def test_missed_call_has_no_answer_time() -> None:
    call = open_call()
    call.apply(
        status=Status.MISSED,
        user_id=None,
        pbx_user_id=None,
        telephony_ids=TELEPHONY,
        now=T0 + timedelta(seconds=3),
    )
    assert call.answered_at is None and call.talk_duration is None


def test_create_defaults_to_ringing() -> None:
    assert CreateCall(direction=Direction.OUTGOING, phone="1").initial_status is Status.RINGING


# --- validation ----------------------------------------------------------------


def fields_of(command: CreateCall | UpdateCall) -> set[str]:
    with pytest.raises(InvalidRequest) as caught:
        command.validate()
    return set(caught.value.fields)


def test_create_requires_direction_and_phone() -> None:
    assert fields_of(CreateCall(direction=None, phone=" ")) == {"direction", "phone"}


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"user_ids": (1,), "group_ids": (10,)}, {"user_ids", "group_ids"}),
        ({"user_ids": (1,), "pbx_user_ids": ("101",)}, {"user_ids", "pbx_user_ids"}),
        ({"group_ids": (10,), "pbx_user_ids": ("101",)}, {"group_ids", "pbx_user_ids"}),
    ],
)
def test_only_one_audience_list(given: dict[str, tuple[object, ...]], expected: set[str]) -> None:
    assert fields_of(CreateCall(direction=Direction.INCOMING, phone="1", **given)) == expected  # type: ignore[arg-type]


def test_empty_audience_lists_do_not_conflict() -> None:
    CreateCall(direction=Direction.INCOMING, phone="1", user_ids=(1,), group_ids=()).validate()


def test_phone_without_digits_or_too_long_is_refused() -> None:
    assert fields_of(CreateCall(direction=Direction.INCOMING, phone="abc")) == {"phone"}
    assert fields_of(CreateCall(direction=Direction.INCOMING, phone="1" * 65)) == {"phone"}


def test_overlong_comment_is_refused() -> None:
    command = CreateCall(direction=Direction.INCOMING, phone="1", comment="x" * 10_001)
    assert fields_of(command) == {"comment"}


@pytest.mark.parametrize(
    ("given", "field"),
    [
        ({"phone": "+7495\x001234567"}, "phone"),
        ({"comment": "a\x00b"}, "comment"),
        ({"pbx_call_id": "x\x00"}, "pbx_call_id"),
        ({"pbx_user_ids": ("101", "1\x0002")}, "pbx_user_ids"),
    ],
)
def test_create_refuses_nul_characters(given: dict[str, object], field: str) -> None:
    command = CreateCall(direction=Direction.INCOMING, **{"phone": "1", **given})  # type: ignore[arg-type]
    assert fields_of(command) == {field}


@pytest.mark.parametrize(
    ("given", "field"),
    [
        ({"call_id": 1, "comment": "\x00"}, "comment"),
        ({"pbx_call_id": "p\x00-1"}, "pbx_call_id"),
        ({"call_id": 1, "pbx_user_id": "\x00101"}, "pbx_user_id"),
    ],
)
def test_update_refuses_nul_characters(given: dict[str, object], field: str) -> None:
    assert fields_of(UpdateCall(status=Status.ANSWERED, **given)) == {field}  # type: ignore[arg-type]


def test_update_needs_exactly_one_call_reference() -> None:
    assert fields_of(UpdateCall(status=Status.ANSWERED)) == {"call_id"}
    both = UpdateCall(status=Status.ANSWERED, call_id=1, pbx_call_id="a")
    assert fields_of(both) == {"call_id", "pbx_call_id"}


def test_update_needs_a_status() -> None:
    assert fields_of(UpdateCall(status=None, call_id=1)) == {"call_status"}


def test_update_takes_at_most_one_employee_reference() -> None:
    both = UpdateCall(status=Status.ANSWERED, call_id=1, user_id=1, pbx_user_id="101")
    assert fields_of(both) == {"user_id", "pbx_user_id"}


def test_ids_must_be_positive() -> None:
    assert fields_of(UpdateCall(status=Status.ANSWERED, call_id=0)) == {"call_id"}
    assert fields_of(CreateCall(direction=Direction.INCOMING, phone="1", user_ids=(-1,))) == {
        "user_ids"
    }


# --- audience and assignment ---------------------------------------------------


def test_no_audience_means_everyone_with_telephony() -> None:
    assert audience() == Audience((1, 2, 3), None)


def test_user_ids_are_the_audience() -> None:
    assert audience(user_ids=(2, 3)) == Audience((2, 3), None)


def test_group_ids_expand_to_members_with_telephony() -> None:
    assert audience(group_ids=(10,)) == Audience((1, 2), None)
    # Gleb (4) has no telephony access: Vera is the only one, and is assigned.
    assert audience(group_ids=(20,)) == Audience((3,), 3)


def test_pbx_user_ids_map_through_the_channel() -> None:
    assert audience(pbx_user_ids=("101", "102")) == Audience((1, 2), None)


def test_single_employee_is_assigned() -> None:
    assert audience(user_ids=(2,)) == Audience((2,), 2)
    assert audience(pbx_user_ids=("102", "999")) == Audience((2,), 2)


def test_unknown_unmapped_and_no_access_ids_are_dropped() -> None:
    assert audience(user_ids=(1, 999, 4)) == Audience((1,), 1)


def test_nobody_left_means_everyone_with_telephony() -> None:
    assert audience(user_ids=(999, 4)) == Audience((1, 2, 3), None)
    assert audience(group_ids=(30,)) == Audience((1, 2, 3), None)
    assert audience(pbx_user_ids=("104", "nope")) == Audience((1, 2, 3), None)


def test_duplicates_are_counted_once() -> None:
    assert audience(user_ids=(2, 2)) == Audience((2,), 2)


# --- phones ----------------------------------------------------------------------


@pytest.mark.parametrize("phone", ["8 (495) 123-45-67", "+74951234567", "74951234567"])
def test_phone_forms_normalize_to_one_e164(phone: str) -> None:
    assert domain.normalize_phone(phone, "RU") == "+74951234567"
    assert domain.contact_key(phone, "RU") == "+74951234567"


@pytest.mark.parametrize(
    ("phone", "e164"),
    [
        ("+7 495 123-45-67", "+74951234567"),
        ("8 (495) 123-45-67", "+74951234567"),
        ("74951234567", "+74951234567"),
        ("9161234567", "+79161234567"),
        ("8 916 123-45-67", "+79161234567"),
        ("+1 650 253 0000", "+16502530000"),
    ],
)
def test_real_numbers_normalize(phone: str, e164: str) -> None:
    assert domain.normalize_phone(phone, "RU") == e164


def test_unparsable_phone_matches_by_digits() -> None:
    assert domain.normalize_phone("777777777", "RU") == ""
    assert domain.contact_key("777-777-777", "RU") == "digits:777777777"


@pytest.mark.parametrize("phone", ["1234567", "123-45-67", "+71234567", "101", "55555"])
def test_short_numbers_stay_as_sent(phone: str) -> None:
    # Seven digits could be a local number in some Russian city, but without its area code
    # it is no number anyone can dial: "+71234567" does not exist.
    assert domain.normalize_phone(phone, "RU") == ""
    assert domain.contact_key(phone, "RU") == "digits:" + "".join(c for c in phone if c.isdigit())


def test_short_numbers_written_differently_match_each_other() -> None:
    assert domain.contact_key("123-45-67", "RU") == domain.contact_key("1234567", "RU")
    assert domain.contact_key("1234567", "RU") != domain.contact_key("+74951234567", "RU")


def test_remembered_numbers_normalize_per_region() -> None:
    # Numbers normalized before are remembered by number and region together.
    for _ in range(2):
        assert domain.normalize_phone("4951234567", "RU") == "+74951234567"
        assert domain.normalize_phone("2025550123", "US") == "+12025550123"
        assert domain.normalize_phone("4951234567", "US") == ""
        assert domain.normalize_phone("2025550123", "RU") == ""


# --- cards -------------------------------------------------------------------------


def changes(before: tuple[int, ...], call: Call, changed: bool = True) -> set[tuple[int, str, str]]:
    return {
        (e.employee_id, e.change.value, e.reason) for e in domain.card_events(before, call, changed)
    }


def test_new_active_call_is_shown_to_its_audience() -> None:
    call = open_call(group_ids=(10,))
    assert changes((), call) == {(1, "show", ""), (2, "show", "")}


def test_call_created_final_shows_no_card() -> None:
    call = open_call(Status.MISSED, group_ids=(10,))
    assert call.viewers == () and changes((), call) == set()


def test_update_that_changes_the_card_is_sent_to_viewers() -> None:
    call = open_call(group_ids=(10,))
    before = call.viewers
    call.apply(
        status=Status.IN_PROGRESS, user_id=None, pbx_user_id=None, telephony_ids=TELEPHONY, now=T0
    )
    assert changes(before, call) == {(1, "update", ""), (2, "update", "")}
    assert changes(before, call, changed=False) == set()


def test_binding_hides_the_card_from_the_others() -> None:
    call = open_call(group_ids=(10,))
    before = call.viewers
    call.apply(
        status=Status.IN_PROGRESS, user_id=2, pbx_user_id=None, telephony_ids=TELEPHONY, now=T0
    )
    assert changes(before, call) == {(1, "hide", "assigned"), (2, "update", "")}


def test_binding_to_someone_outside_the_audience_shows_it_to_them() -> None:
    call = open_call(group_ids=(10,))
    before = call.viewers
    call.apply(status=Status.RINGING, user_id=3, pbx_user_id=None, telephony_ids=TELEPHONY, now=T0)
    assert changes(before, call) == {
        (1, "hide", "assigned"),
        (2, "hide", "assigned"),
        (3, "show", ""),
    }


def test_final_status_hides_the_card_from_everyone() -> None:
    call = open_call(group_ids=(10,))
    before = call.viewers
    call.apply(
        status=Status.CANCELED, user_id=None, pbx_user_id=None, telephony_ids=TELEPHONY, now=T0
    )
    assert changes(before, call) == {(1, "hide", "final"), (2, "hide", "final")}


def test_expiry_hides_the_card_and_keeps_the_status() -> None:
    policy = ExpiryPolicy()
    call = open_call(group_ids=(10,))
    assert not policy.is_expired(call, T0 + timedelta(minutes=14))
    assert policy.is_expired(call, T0 + timedelta(minutes=15))
    before = call.viewers
    call.expire()
    assert call.status is Status.RINGING
    assert changes(before, call, changed=False) == {(1, "hide", "expired"), (2, "hide", "expired")}


def test_in_progress_calls_expire_after_four_hours() -> None:
    policy = ExpiryPolicy()
    call = open_call(Status.IN_PROGRESS)
    assert not policy.is_expired(call, T0 + timedelta(hours=3, minutes=59))
    assert policy.is_expired(call, T0 + timedelta(hours=4))


def test_final_calls_never_expire() -> None:
    assert not ExpiryPolicy().is_expired(open_call(Status.ANSWERED), T0 + timedelta(days=9))


@pytest.mark.parametrize("status", [Status.RINGING, Status.IN_PROGRESS])
def test_storage_is_asked_for_exactly_the_calls_the_rule_expires(status: Status) -> None:
    policy = ExpiryPolicy()
    now = T0 + timedelta(days=1)
    cutoffs = policy.stale_before(now)
    assert set(cutoffs) == domain.ACTIVE_STATUSES
    call = open_call(status)
    call.updated_at = cutoffs[status]
    assert policy.is_expired(call, now)
    call.updated_at = cutoffs[status] + timedelta(milliseconds=1)
    assert not policy.is_expired(call, now)


def test_an_update_after_expiry_shows_the_card_again() -> None:
    call = open_call(user_ids=(1, 2))
    call.expire()
    call.apply(
        status=Status.IN_PROGRESS, user_id=None, pbx_user_id=None, telephony_ids=TELEPHONY, now=T0
    )
    assert changes((), call) == {(1, "show", ""), (2, "show", "")}


def test_card_change_kinds_are_the_three_of_the_contract() -> None:
    assert {c.value for c in CardChange} == {"show", "update", "hide"}
