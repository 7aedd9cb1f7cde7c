"""How the helpdesk's records are kept as MongoDB documents, and read back.

Fields that queries filter or sort on are top-level BSON values (datetimes as
BSON dates); what an event or an idempotent reply carries is a versioned
payload from `core.storage.payloads`, whose codec also writes the records a
call view holds (call, ticket, contact, recording), dates kept as dates.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from core.domain import Call, Employee
from core.model import (
    Channel,
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
from core.storage.payloads import utc

Document = dict[str, Any]


def utc_or_none(value: datetime | None) -> datetime | None:
    # BSON dates come back naive (or in a UTC of the driver's own) unless tz_aware is set.
    return None if value is None else utc(value)


def _keyed(record: Document, key: str) -> Document:
    """A record's payload as a document: its id field becomes `_id`."""
    return {"_id": record.pop(key), **record}


def _unkeyed(document: Mapping[str, Any], key: str) -> dict[str, Any]:
    """A document as its record's payload: `_id` read back as the id field."""
    return {**document, key: document["_id"]}


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


# --- calls ---------------------------------------------------------------------------------------


def call_document(call: Call) -> Document:
    return _keyed(payloads.encode_call(call, payloads.as_date), "call_id")


def call_from_document(document: Mapping[str, Any]) -> Call:
    return payloads.decode_call(_unkeyed(document, "call_id"))


# --- tickets and contacts ------------------------------------------------------------------------


def ticket_document(ticket: Ticket) -> Document:
    return _keyed(payloads.encode_ticket(ticket, payloads.as_date), "ticket_id")


def ticket_from_document(document: Mapping[str, Any]) -> Ticket:
    return payloads.decode_ticket(_unkeyed(document, "ticket_id"))


def contact_document(contact: Contact) -> Document:
    return _keyed(payloads.encode_contact(contact, payloads.as_date), "contact_id")


def contact_from_document(document: Mapping[str, Any]) -> Contact:
    return payloads.decode_contact(_unkeyed(document, "contact_id"))


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
        "expires_at": token.expires_at,
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
        expires_at=utc_or_none(document.get("expires_at")),
    )


# --- recordings, idempotency, events -------------------------------------------------------------


def recording_document(recording: Recording) -> Document:
    return _keyed(payloads.encode_recording(recording, payloads.as_date), "recording_id")


def recording_from_document(document: Mapping[str, Any]) -> Recording:
    return payloads.decode_recording(_unkeyed(document, "recording_id"))


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
