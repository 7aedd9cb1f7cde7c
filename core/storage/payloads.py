"""Typed, versioned payloads that the stores keep as JSON: the call view an
event carries, its card events, and the reply an idempotency key replays.

Both adapters store what `encode_*` returns (SQLite as JSON text, MongoDB as a
subdocument) and read it back with `decode_*`. Every payload carries its
version `v`; a reader takes any version up to PAYLOAD_VERSION, fills fields an
older writer did not know with their defaults and ignores fields it does not
know itself, so adding a field never breaks reading what was stored before.

The codec of each record a view holds (call, ticket, contact, recording) is
also MongoDB's for its own collections: written with `time=as_date`, times stay
dates that queries can compare, where JSON has ISO 8601 text.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from core.domain import Call, CardChange, CardEvent, Direction, Status, StatusChange
from core.model import CallView, Comment, Contact, Recording, Reply, Ticket

PAYLOAD_VERSION = 1

Json = dict[str, Any]
# How a record's times are written: ISO 8601 text (JSON) or the datetime itself (BSON).
TimeWriter = Callable[[datetime], Any]


class PayloadError(ValueError):
    """A stored payload that this version cannot read."""


def as_text(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds")


def as_date(value: datetime) -> datetime:
    return value


def utc(value: datetime) -> datetime:
    """A stored time in UTC; a naive one (BSON dates come back so) was written in UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _optional(time: TimeWriter, value: datetime | None) -> Any:
    return None if value is None else time(value)


def _parse_time(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return utc(value)
    return utc(datetime.fromisoformat(str(value)))


def _required_time(value: Any) -> datetime:
    parsed = _parse_time(value)
    if parsed is None:
        raise PayloadError("a required time is missing")
    return parsed


def _check_version(payload: Mapping[str, Any]) -> None:
    version = payload.get("v", 1)
    if not isinstance(version, int) or version > PAYLOAD_VERSION:
        raise PayloadError(f"payload version {version!r} is newer than {PAYLOAD_VERSION}")


@functools.cache
def _field_names(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(cls))


def _known(cls: type, fields: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of `fields` that `cls` has: a newer writer's extra fields are dropped."""
    names = _field_names(cls)
    return {k: v for k, v in fields.items() if k in names}


# --- call ----------------------------------------------------------------------------


def encode_call(call: Call, time: TimeWriter = as_text) -> Json:
    return {
        "call_id": call.call_id,
        "channel_id": call.channel_id,
        "direction": call.direction.value,
        "phone": call.phone,
        "status": call.status.value,
        "created_at": time(call.created_at),
        "updated_at": time(call.updated_at),
        "pbx_call_id": call.pbx_call_id,
        "user_id": call.user_id,
        "pbx_user_id": call.pbx_user_id,
        "audience": list(call.audience),
        "viewers": list(call.viewers),
        "history": [{"status": h.status.value, "at": time(h.at)} for h in call.history],
        "answered_at": _optional(time, call.answered_at),
        "ended_at": _optional(time, call.ended_at),
        "expired": call.expired,
        "version": call.version,
        "ticket_id": call.ticket_id,
        "contact_id": call.contact_id,
        "phone_e164": call.phone_e164,
        "phone_key": call.phone_key,
    }


def decode_call(data: Mapping[str, Any]) -> Call:
    fields = _known(Call, data)
    created_at = _required_time(fields["created_at"])
    fields.update(
        direction=Direction(fields["direction"]),
        status=Status(fields["status"]),
        created_at=created_at,
        updated_at=_required_time(fields["updated_at"]),
        audience=tuple(int(e) for e in fields.get("audience", ())),
        viewers=tuple(int(e) for e in fields.get("viewers", ())),
        history=[
            StatusChange(Status(h["status"]), _parse_time(h.get("at")) or created_at)
            for h in fields.get("history", ())
        ],
        answered_at=_parse_time(fields.get("answered_at")),
        ended_at=_parse_time(fields.get("ended_at")),
    )
    return Call(**fields)


# --- the rest of a view ----------------------------------------------------------------


def encode_ticket(ticket: Ticket, time: TimeWriter = as_text) -> Json:
    return {
        "ticket_id": ticket.ticket_id,
        "call_id": ticket.call_id,
        "channel_id": ticket.channel_id,
        "department_id": ticket.department_id,
        "created_at": time(ticket.created_at),
        "executor_id": ticket.executor_id,
        "contact_id": ticket.contact_id,
        "comments": [encode_comment(c, time) for c in ticket.comments],
    }


def decode_ticket(data: Mapping[str, Any]) -> Ticket:
    fields = _known(Ticket, data)
    fields.update(
        created_at=_required_time(fields["created_at"]),
        comments=[decode_comment(c) for c in fields.get("comments", ())],
    )
    return Ticket(**fields)


def encode_comment(comment: Comment, time: TimeWriter = as_text) -> Json:
    return {"text": comment.text, "at": time(comment.at), "author": comment.author}


def decode_comment(data: Mapping[str, Any]) -> Comment:
    fields = _known(Comment, data)
    fields["at"] = _required_time(fields["at"])
    return Comment(**fields)


def encode_contact(contact: Contact, time: TimeWriter = as_text) -> Json:
    return {
        "contact_id": contact.contact_id,
        "key": contact.key,
        "phone_e164": contact.phone_e164,
        "created_at": time(contact.created_at),
        "name": contact.name,
    }


def decode_contact(data: Mapping[str, Any]) -> Contact:
    fields = _known(Contact, data)
    fields["created_at"] = _required_time(fields["created_at"])
    return Contact(**fields)


def encode_recording(recording: Recording, time: TimeWriter = as_text) -> Json:
    return {
        "recording_id": recording.recording_id,
        "channel_id": recording.channel_id,
        "format": recording.format,
        "content_type": recording.content_type,
        "size": recording.size,
        "sha256": recording.sha256,
        "created_at": time(recording.created_at),
        "duration_seconds": recording.duration_seconds,
        "file_name": recording.file_name,
        "call_id": recording.call_id,
    }


def decode_recording(data: Mapping[str, Any]) -> Recording:
    fields = _known(Recording, data)
    fields["created_at"] = _required_time(fields["created_at"])
    return Recording(**fields)


def encode_view(view: CallView) -> Json:
    return {
        "v": PAYLOAD_VERSION,
        "call": encode_call(view.call),
        "ticket": encode_ticket(view.ticket),
        "contact": None if view.contact is None else encode_contact(view.contact),
        "channel_name": view.channel_name,
        "user_name": view.user_name,
        "recordings": [encode_recording(r) for r in view.recordings],
    }


def decode_view(data: Mapping[str, Any]) -> CallView:
    _check_version(data)
    contact = data.get("contact")
    return CallView(
        call=decode_call(data["call"]),
        ticket=decode_ticket(data["ticket"]),
        contact=None if contact is None else decode_contact(contact),
        channel_name=str(data.get("channel_name", "")),
        user_name=str(data.get("user_name", "")),
        recordings=[decode_recording(r) for r in data.get("recordings", ())],
    )


# --- events and replies ------------------------------------------------------------------


def encode_card_events(card_events: Iterable[CardEvent]) -> list[Json]:
    return [
        {"employee_id": e.employee_id, "change": e.change.value, "reason": e.reason}
        for e in card_events
    ]


def decode_card_events(data: Iterable[Mapping[str, Any]]) -> tuple[CardEvent, ...]:
    return tuple(
        CardEvent(int(e["employee_id"]), CardChange(e["change"]), str(e.get("reason", "")))
        for e in data
    )


def encode_reply(reply: Reply) -> Json:
    return {"v": PAYLOAD_VERSION, "view": encode_view(reply.view), "created": reply.created}


def decode_reply(data: Mapping[str, Any]) -> Reply:
    _check_version(data)
    return Reply(view=decode_view(data["view"]), created=bool(data.get("created", False)))
