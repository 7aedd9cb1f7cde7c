"""How the helpdesk's records are kept as MongoDB documents, and read back.

Fields that queries filter or sort on are top-level BSON values (datetimes as
BSON dates); what an event or an idempotent reply carries is a versioned
payload from `core.storage.payloads`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from core.domain import Call, Direction, Employee, Status, StatusChange
from core.model import (
    Channel,
    Comment,
    Contact,
    Department,
    Group,
    IdempotencyRecord,
    PublishedEvent,
    Recording,
    Ticket,
    Token,
)
from core.storage import payloads

Document = dict[str, Any]


def utc(value: datetime) -> datetime:
    """BSON dates come back naive (or in a UTC of the driver's own) unless tz_aware is set."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else utc(value)


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


# --- calls ---------------------------------------------------------------------------------------


def call_document(call: Call) -> Document:
    return {
        "_id": call.call_id,
        "channel_id": call.channel_id,
        "direction": call.direction.value,
        "phone": call.phone,
        "status": call.status.value,
        "created_at": call.created_at,
        "updated_at": call.updated_at,
        "pbx_call_id": call.pbx_call_id,
        "user_id": call.user_id,
        "pbx_user_id": call.pbx_user_id,
        "audience": list(call.audience),
        "viewers": list(call.viewers),
        "history": [{"status": h.status.value, "at": h.at} for h in call.history],
        "answered_at": call.answered_at,
        "ended_at": call.ended_at,
        "expired": call.expired,
        "version": call.version,
        "ticket_id": call.ticket_id,
        "contact_id": call.contact_id,
        "phone_e164": call.phone_e164,
        "phone_key": call.phone_key,
    }


def call_from_document(document: Mapping[str, Any]) -> Call:
    created_at = utc(document["created_at"])
    return Call(
        call_id=int(document["_id"]),
        channel_id=int(document["channel_id"]),
        direction=Direction(document["direction"]),
        phone=str(document["phone"]),
        status=Status(document["status"]),
        created_at=created_at,
        updated_at=utc(document["updated_at"]),
        pbx_call_id=document.get("pbx_call_id"),
        user_id=_int_or_none(document.get("user_id")),
        pbx_user_id=document.get("pbx_user_id"),
        audience=tuple(int(e) for e in document.get("audience", ())),
        viewers=tuple(int(e) for e in document.get("viewers", ())),
        history=[
            StatusChange(Status(h["status"]), utc_or_none(h.get("at")) or created_at)
            for h in document.get("history", ())
        ],
        answered_at=utc_or_none(document.get("answered_at")),
        ended_at=utc_or_none(document.get("ended_at")),
        expired=bool(document.get("expired", False)),
        version=int(document.get("version", 0)),
        ticket_id=int(document.get("ticket_id", 0)),
        contact_id=_int_or_none(document.get("contact_id")),
        phone_e164=str(document.get("phone_e164", "")),
        phone_key=str(document.get("phone_key", "")),
    )


# --- tickets and contacts ------------------------------------------------------------------------


def ticket_document(ticket: Ticket) -> Document:
    return {
        "_id": ticket.ticket_id,
        "call_id": ticket.call_id,
        "channel_id": ticket.channel_id,
        "department_id": ticket.department_id,
        "created_at": ticket.created_at,
        "executor_id": ticket.executor_id,
        "contact_id": ticket.contact_id,
        "comments": [{"text": c.text, "at": c.at, "author": c.author} for c in ticket.comments],
    }


def ticket_from_document(document: Mapping[str, Any]) -> Ticket:
    return Ticket(
        ticket_id=int(document["_id"]),
        call_id=int(document["call_id"]),
        channel_id=int(document["channel_id"]),
        department_id=int(document["department_id"]),
        created_at=utc(document["created_at"]),
        executor_id=_int_or_none(document.get("executor_id")),
        contact_id=_int_or_none(document.get("contact_id")),
        comments=[
            Comment(text=str(c["text"]), at=utc(c["at"]), author=str(c.get("author", "pbx")))
            for c in document.get("comments", ())
        ],
    )


def contact_document(contact: Contact) -> Document:
    return {
        "_id": contact.contact_id,
        "key": contact.key,
        "phone_e164": contact.phone_e164,
        "created_at": contact.created_at,
        "name": contact.name,
    }


def contact_from_document(document: Mapping[str, Any]) -> Contact:
    return Contact(
        contact_id=int(document["_id"]),
        key=str(document["key"]),
        phone_e164=str(document.get("phone_e164", "")),
        created_at=utc(document["created_at"]),
        name=str(document.get("name", "")),
    )


# --- channels and the directory ------------------------------------------------------------------


def channel_document(channel: Channel) -> Document:
    return {
        "_id": channel.channel_id,
        "name": channel.name,
        "department_id": channel.department_id,
        "key_hash": channel.key_hash,
        "created_at": channel.created_at,
        "enabled": channel.enabled,
        # A list, not a subdocument: PBX user ids are the PBX's strings and may hold
        # characters ("." or a leading "$") that field names cannot.
        "pbx_users": [
            {"pbx_user_id": pbx_user_id, "employee_id": employee_id}
            for pbx_user_id, employee_id in channel.pbx_users.items()
        ],
    }


def channel_from_document(document: Mapping[str, Any]) -> Channel:
    return Channel(
        channel_id=int(document["_id"]),
        name=str(document["name"]),
        department_id=int(document["department_id"]),
        key_hash=str(document["key_hash"]),
        created_at=utc(document["created_at"]),
        enabled=bool(document.get("enabled", True)),
        pbx_users={
            str(entry["pbx_user_id"]): int(entry["employee_id"])
            for entry in document.get("pbx_users", ())
        },
    )


def department_document(department: Department) -> Document:
    return {"_id": department.department_id, "name": department.name}


def department_from_document(document: Mapping[str, Any]) -> Department:
    return Department(department_id=int(document["_id"]), name=str(document["name"]))


def employee_document(employee: Employee) -> Document:
    return {"_id": employee.employee_id, "name": employee.name, "telephony": employee.telephony}


def employee_from_document(document: Mapping[str, Any]) -> Employee:
    return Employee(
        employee_id=int(document["_id"]),
        name=str(document.get("name", "")),
        telephony=bool(document.get("telephony", False)),
    )


def group_document(group: Group) -> Document:
    return {"_id": group.group_id, "name": group.name, "members": list(group.members)}


def group_from_document(document: Mapping[str, Any]) -> Group:
    return Group(
        group_id=int(document["_id"]),
        name=str(document.get("name", "")),
        members=tuple(int(m) for m in document.get("members", ())),
    )


def token_document(token: Token) -> Document:
    return {
        "_id": token.token_id,
        "secret_hash": token.secret_hash,
        "role": token.role,
        "created_at": token.created_at,
        "employee_id": token.employee_id,
        "description": token.description,
        "revoked_at": token.revoked_at,
    }


def token_from_document(document: Mapping[str, Any]) -> Token:
    return Token(
        token_id=str(document["_id"]),
        secret_hash=str(document["secret_hash"]),
        role=str(document["role"]),
        created_at=utc(document["created_at"]),
        employee_id=_int_or_none(document.get("employee_id")),
        description=str(document.get("description", "")),
        revoked_at=utc_or_none(document.get("revoked_at")),
    )


# --- recordings, idempotency, events -------------------------------------------------------------


def recording_document(recording: Recording) -> Document:
    return {
        "_id": recording.recording_id,
        "channel_id": recording.channel_id,
        "format": recording.format,
        "content_type": recording.content_type,
        "size": recording.size,
        "sha256": recording.sha256,
        "created_at": recording.created_at,
        "duration_seconds": recording.duration_seconds,
        "file_name": recording.file_name,
        "call_id": recording.call_id,
    }


def recording_from_document(document: Mapping[str, Any]) -> Recording:
    duration = document.get("duration_seconds")
    return Recording(
        recording_id=str(document["_id"]),
        channel_id=int(document["channel_id"]),
        format=str(document["format"]),
        content_type=str(document["content_type"]),
        size=int(document["size"]),
        sha256=str(document["sha256"]),
        created_at=utc(document["created_at"]),
        duration_seconds=None if duration is None else float(duration),
        file_name=str(document.get("file_name", "")),
        call_id=_int_or_none(document.get("call_id")),
    )


def idempotency_id(channel_id: int, key: str) -> str:
    return f"{channel_id}:{key}"


def idempotency_document(record: IdempotencyRecord) -> Document:
    return {
        "_id": idempotency_id(record.channel_id, record.key),
        "channel_id": record.channel_id,
        "key": record.key,
        "fingerprint": record.fingerprint,
        "created_at": record.created_at,
        "reply": payloads.encode_reply(record.reply),
    }


def idempotency_from_document(document: Mapping[str, Any]) -> IdempotencyRecord:
    return IdempotencyRecord(
        channel_id=int(document["channel_id"]),
        key=str(document["key"]),
        fingerprint=str(document["fingerprint"]),
        created_at=utc(document["created_at"]),
        reply=payloads.decode_reply(document["reply"]),
    )


def event_document(event: PublishedEvent) -> Document:
    return {
        "_id": event.seq,
        "at": event.at,
        "kind": event.kind,
        "call_id": event.view.call_id,
        "view": payloads.encode_view(event.view),
        "card_events": payloads.encode_card_events(event.card_events),
        # Who has a card event in it: an employee's stream resumes on this index.
        "card_viewers": _unique(e.employee_id for e in event.card_events),
    }


def event_from_document(document: Mapping[str, Any]) -> PublishedEvent:
    return PublishedEvent(
        seq=int(document["_id"]),
        kind=str(document["kind"]),
        view=payloads.decode_view(document["view"]),
        card_events=payloads.decode_card_events(document.get("card_events", ())),
        at=utc(document["at"]),
    )


def _unique(ids: Iterable[int]) -> list[int]:
    return list(dict.fromkeys(ids))
