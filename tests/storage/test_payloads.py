"""Stored payloads (events' call views, idempotent replies) are versioned: what
an older writer stored still reads, and what a newer one adds is ignored."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.domain import Call, CardChange, CardEvent, Direction, Status, StatusChange
from core.model import CallView, Comment, Contact, Recording, Reply, Ticket
from core.storage import payloads

AT = datetime(2026, 11, 27, 10, 30, 15, 123000, tzinfo=UTC)


def full_view() -> CallView:
    call = Call(
        call_id=7,
        channel_id=1,
        direction=Direction.INCOMING,
        phone="+7 495 123-45-67",
        status=Status.ANSWERED,
        created_at=AT,
        updated_at=AT,
        pbx_call_id="pbx-7",
        user_id=2,
        pbx_user_id="102",
        audience=(1, 2),
        viewers=(),
        history=[StatusChange(Status.RINGING, AT), StatusChange(Status.ANSWERED, AT)],
        answered_at=AT,
        ended_at=AT,
        version=3,
        ticket_id=70,
        contact_id=5,
        phone_e164="+74951234567",
        phone_key="+74951234567",
    )
    return CallView(
        call=call,
        ticket=Ticket(70, 7, 1, 1, AT, executor_id=2, contact_id=5, comments=[Comment("hi", AT)]),
        contact=Contact(5, "+74951234567", "+74951234567", AT, name="Ivan"),
        channel_name="+7 495 000-00-00",
        user_name="Boris",
        recordings=[Recording("r1", 1, "wav", "audio/wav", 44, "0" * 64, AT, 1.5, "a.wav", 7)],
    )


def test_a_view_round_trips_through_its_payload() -> None:
    view = full_view()
    assert payloads.decode_view(payloads.encode_view(view)) == view


def test_a_views_copy_is_its_payload_read_back_and_shares_nothing_with_it() -> None:
    view = full_view()
    copy = view.copy()
    assert copy == payloads.decode_view(payloads.encode_view(view))
    view.call.history.append(StatusChange(Status.BUSY, AT))
    view.call.history[0].status = Status.MISSED
    view.call.status = Status.BUSY
    view.ticket.comments.append(Comment("later", AT))
    view.ticket.executor_id = 9
    assert view.contact is not None
    view.contact.name = "Someone else"
    view.recordings[0].call_id = 99
    view.recordings.append(view.recordings[0])
    assert copy == full_view()


def test_a_reply_round_trips_through_its_payload() -> None:
    reply = Reply(full_view(), created=True)
    assert payloads.decode_reply(payloads.encode_reply(reply)) == reply


def test_card_events_round_trip() -> None:
    events = (CardEvent(1, CardChange.SHOW), CardEvent(2, CardChange.HIDE, "final"))
    assert payloads.decode_card_events(payloads.encode_card_events(events)) == events


def test_a_payload_from_before_a_field_existed_reads_with_its_default() -> None:
    stored = payloads.encode_view(full_view())
    # What a writer that knew none of these fields stored.
    for field in ("ticket_id", "contact_id", "phone_e164", "phone_key", "version", "history"):
        del stored["call"][field]
    del stored["recordings"]
    del stored["contact"]
    del stored["v"]
    view = payloads.decode_view(stored)
    assert (view.call.ticket_id, view.call.contact_id, view.call.phone_key) == (0, None, "")
    assert view.call.history == [] and view.recordings == [] and view.contact is None
    assert view.call.status is Status.ANSWERED and view.ticket.comments[0].text == "hi"


def test_fields_a_newer_writer_added_are_ignored() -> None:
    stored = payloads.encode_reply(Reply(full_view()))
    stored["view"]["call"]["sentiment"] = "happy"
    stored["view"]["ticket"]["priority"] = 3
    stored["view"]["board_column"] = "done"
    stored["tags"] = ["x"]
    assert payloads.decode_reply(stored) == Reply(full_view())


def test_a_payload_of_a_newer_version_is_refused_clearly() -> None:
    stored = payloads.encode_view(full_view())
    stored["v"] = payloads.PAYLOAD_VERSION + 1
    with pytest.raises(payloads.PayloadError, match="newer"):
        payloads.decode_view(stored)
