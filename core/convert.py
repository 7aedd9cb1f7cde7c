"""Conversions between telephony.v1 messages and core's domain and documents."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from core import domain
from core.auth import Role
from core.service import CallView, card_of
from core.storage import utc
from telephony.v1 import call_pb2, channel_service_pb2, directory_service_pb2

State = call_pb2.Call.State

_STATE_OF = {
    domain.Status.RINGING: State.STATE_RINGING,
    domain.Status.IN_PROGRESS: State.STATE_IN_PROGRESS,
    domain.Status.CANCELED: State.STATE_CANCELED,
    domain.Status.MISSED: State.STATE_MISSED,
    domain.Status.FAILED: State.STATE_FAILED,
    domain.Status.ANSWERED: State.STATE_ANSWERED,
    domain.Status.BUSY: State.STATE_BUSY,
}
_STATUS_OF = {v: k for k, v in _STATE_OF.items()}

_DIRECTION_OF = {
    domain.Direction.INCOMING: call_pb2.DIRECTION_INCOMING,
    domain.Direction.OUTGOING: call_pb2.DIRECTION_OUTGOING,
}
_DIRECTION_FROM = {v: k for k, v in _DIRECTION_OF.items()}

_ROLE_OF = {
    Role.ADMIN: directory_service_pb2.ROLE_ADMIN,
    Role.SERVICE: directory_service_pb2.ROLE_SERVICE,
    Role.EMPLOYEE: directory_service_pb2.ROLE_EMPLOYEE,
}
_ROLE_FROM = {v: k for k, v in _ROLE_OF.items()}

_FORMAT_OF = {
    "mp3": call_pb2.Recording.FORMAT_MP3,
    "mp4": call_pb2.Recording.FORMAT_MP4,
    "wav": call_pb2.Recording.FORMAT_WAV,
    "ogg": call_pb2.Recording.FORMAT_OGG,
}

# Builds the signed path and expiry of a recording's download link.
LinkMaker = Callable[[str], tuple[str, datetime]]


def status_from_proto(state: int) -> domain.Status | None:
    """None for STATE_UNSPECIFIED; unknown numbers are refused by the caller."""
    return _STATUS_OF.get(state)  # type: ignore[call-overload]


def state_of(status: str) -> call_pb2.Call.State:
    return _STATE_OF[domain.Status(status)]


def direction_from_proto(direction: int) -> domain.Direction | None:
    return _DIRECTION_FROM.get(direction)  # type: ignore[call-overload]


def direction_of(direction: str) -> call_pb2.Direction:
    return _DIRECTION_OF[domain.Direction(direction)]


def role_from_proto(role: int) -> Role | None:
    return _ROLE_FROM.get(role)  # type: ignore[call-overload]


def role_of(role: str) -> directory_service_pb2.Role:
    return _ROLE_OF[Role(role)]


def timestamp(value: datetime | None) -> Timestamp | None:
    value = utc(value)
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def from_timestamp(ts: Timestamp) -> datetime:
    return ts.ToDatetime(tzinfo=UTC)


def duration(value: timedelta | float | None) -> Duration | None:
    if value is None:
        return None
    d = Duration()
    if isinstance(value, timedelta):
        d.FromTimedelta(value)
    else:
        d.FromTimedelta(timedelta(seconds=value))
    return d


def recording_message(doc: Mapping[str, Any], links: LinkMaker | None) -> call_pb2.Recording:
    message = call_pb2.Recording(
        recording_id=str(doc["_id"]),
        call_id=int(doc.get("call_id") or 0),
        format=_FORMAT_OF.get(str(doc.get("format")), call_pb2.Recording.FORMAT_UNSPECIFIED),
        content_type=str(doc.get("content_type", "")),
        size_bytes=int(doc.get("size", 0)),
        sha256=str(doc.get("sha256", "")),
        duration=duration(doc.get("duration_seconds") or 0.0),
        create_time=timestamp(doc.get("created_at")),
    )
    if links is not None:
        path, expires = links(str(doc["_id"]))
        message.signed_path = path
        message.expire_time.FromDatetime(expires)
    return message


def call_message(view: CallView, links: LinkMaker | None = None) -> call_pb2.Call:
    doc = view.call
    call = view.domain_call()
    ticket = view.ticket
    message = call_pb2.Call(
        call_id=call.call_id,
        channel_id=call.channel_id,
        channel_name=view.channel_name,
        direction=direction_of(call.direction),
        phone=call.phone,
        phone_e164=str(doc.get("phone_e164", "")),
        state=state_of(call.status),
        audience_employee_ids=list(call.audience),
        status_history=[
            call_pb2.StatusChange(state=state_of(h.status), time=timestamp(h.at))
            for h in call.history
        ],
        create_time=timestamp(call.created_at),
        answer_time=timestamp(call.answered_at),
        end_time=timestamp(call.ended_at),
        talk_duration=duration(call.talk_duration),
        update_time=timestamp(call.updated_at),
        ticket=call_pb2.Ticket(
            ticket_id=int(ticket["_id"]),
            department_id=int(ticket.get("department_id") or 0),
            executor_employee_id=ticket.get("executor_id"),
            contact=call_pb2.Contact(
                contact_id=int(view.contact.get("_id", 0)),
                name=str(view.contact.get("name", "")),
                phone_e164=str(view.contact.get("phone_e164", "")),
            ),
            comments=[
                call_pb2.Comment(
                    text=str(c["text"]), create_time=timestamp(c["at"]), author=str(c["author"])
                )
                for c in ticket.get("comments", [])
            ],
            create_time=timestamp(ticket.get("created_at")),
        ),
        recordings=[recording_message(r, links) for r in view.recordings],
    )
    if call.pbx_call_id is not None:
        message.pbx_call_id = call.pbx_call_id
    if call.user_id is not None:
        message.user_id = call.user_id
    if call.pbx_user_id is not None:
        message.pbx_user_id = call.pbx_user_id
    if view.current_recording is not None:
        message.recording.CopyFrom(recording_message(view.current_recording, links))
    return message


def card_message(view: CallView, links: LinkMaker | None = None) -> call_pb2.CallCard:
    card = card_of(view)
    message = call_pb2.CallCard(
        call_id=int(card["call_id"]),
        ticket_id=int(card["ticket_id"]),
        channel_id=int(card["channel_id"]),
        channel_name=str(card["channel_name"]),
        direction=direction_of(card["direction"]),
        phone=str(card["phone"]),
        contact_name=str(card["contact_name"]),
        state=state_of(card["call_status"]),
        user_name=str(card["user_name"]),
        create_time=timestamp(card["created_at"]),
    )
    if card["user_id"] is not None:
        message.user_id = int(card["user_id"])
    if card["pbx_call_id"] is not None:
        message.pbx_call_id = str(card["pbx_call_id"])
    if card["recording_id"] is not None and links is not None:
        message.recording_path = links(str(card["recording_id"]))[0]
    return message


def channel_message(doc: Mapping[str, Any]) -> channel_service_pb2.Channel:
    return channel_service_pb2.Channel(
        channel_id=int(doc["_id"]),
        name=str(doc.get("name", "")),
        department_id=int(doc.get("department_id") or 0),
        enabled=bool(doc.get("enabled", True)),
        pbx_users={str(k): int(v) for k, v in doc.get("pbx_users", {}).items()},
        create_time=timestamp(doc.get("created_at")),
    )


def token_message(doc: Mapping[str, Any]) -> directory_service_pb2.Token:
    return directory_service_pb2.Token(
        token_id=str(doc["_id"]),
        role=role_of(doc["role"]),
        employee_id=int(doc.get("employee_id") or 0),
        description=str(doc.get("description", "")),
        create_time=timestamp(doc.get("created_at")),
    )
