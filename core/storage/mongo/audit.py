"""The audit log and the stream tickets on MongoDB: their documents, repositories
and indexes (expired tickets go by a TTL index)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.client_session import ClientSession
from pymongo.collection import Collection

from core.model import AuditEntry, AuditQuery, StreamTicket
from core.storage.mongo.documents import Document, utc
from core.storage.mongo.repositories import Collections, CountedRepository, Repository
from core.storage.mongo.writes import Undo, VersionConflict

# The counter entry ids come from.
ENTRY_COUNTER = "audit_entry"


def prepare_indexes(collections: Collections) -> None:
    """The indexes of both collections; safe to run at every start."""
    tickets, entries = collections.stream_tickets, collections.audit_entries
    # The server removes a ticket soon after it expires; redeeming checks the time itself.
    tickets.create_index("expires_at", expireAfterSeconds=0)
    for key in ("action", "token_id", "employee_id", "at"):
        entries.create_index([(key, ASCENDING), ("_id", DESCENDING)])


# --- stream tickets -----------------------------------------------------------------------------


def ticket_document(ticket: StreamTicket) -> Document:
    return {
        "_id": ticket.ticket_hash,
        "token_id": ticket.token_id,
        "role": ticket.role,
        "employee_id": ticket.employee_id,
        "created_at": ticket.created_at,
        "expires_at": ticket.expires_at,
    }


def ticket_from_document(document: Mapping[str, Any]) -> StreamTicket:
    employee_id = document.get("employee_id")
    return StreamTicket(
        ticket_hash=str(document["_id"]),
        token_id=str(document["token_id"]),
        role=str(document["role"]),
        employee_id=None if employee_id is None else int(employee_id),
        created_at=utc(document["created_at"]),
        expires_at=utc(document["expires_at"]),
    )


@dataclasses.dataclass(frozen=True)
class TakeOnce:
    """Remove one document that must still be there: when another unit removed it
    first, the commit fails as a conflict."""

    collection: Collection[Document]
    document_id: str

    def apply(self, session: ClientSession | None) -> Undo | None:
        removed = self.collection.find_one_and_delete({"_id": self.document_id}, session=session)
        if removed is None:
            raise VersionConflict(f"{self.collection.name} {self.document_id} was taken already")
        return lambda: self.collection.insert_one(removed)


class MongoStreamTicketRepository(Repository):
    def add(self, ticket: StreamTicket) -> None:
        self._insert(ticket_document(ticket))

    def take(self, ticket_hash: str) -> StreamTicket | None:
        self._buffer.check_writable()
        document = self._find_one({"_id": ticket_hash})
        if document is None:
            return None
        self._buffer.add(TakeOnce(self._collection, ticket_hash))
        return ticket_from_document(document)

    def remove_expired(self, now: datetime) -> int:
        return self._delete({"expires_at": {"$lte": now}})


# --- the audit log ------------------------------------------------------------------------------


def entry_document(entry: AuditEntry) -> Document:
    return {
        "_id": entry.entry_id,
        "at": entry.at,
        "action": entry.action,
        "token_id": entry.token_id,
        "role": entry.role,
        "employee_id": entry.employee_id,
        "address": entry.address,
        "target": entry.target,
        "details": dict(entry.details),
    }


def entry_from_document(document: Mapping[str, Any]) -> AuditEntry:
    employee_id = document.get("employee_id")
    return AuditEntry(
        entry_id=int(document["_id"]),
        at=utc(document["at"]),
        action=str(document["action"]),
        token_id=str(document["token_id"]),
        role=str(document["role"]),
        employee_id=None if employee_id is None else int(employee_id),
        address=str(document.get("address", "")),
        target=str(document.get("target", "")),
        details={str(k): str(v) for k, v in (document.get("details") or {}).items()},
    )


def _filter(query: AuditQuery) -> Document:
    where: Document = {}
    for key in ("action", "token_id", "employee_id"):
        value = getattr(query, key)
        if value is not None:
            where[key] = value
    at: Document = {}
    if query.since is not None:
        at["$gte"] = query.since
    if query.until is not None:
        at["$lt"] = query.until
    if at:
        where["at"] = at
    return where


class MongoAuditLog(CountedRepository):
    counter = ENTRY_COUNTER

    def add(self, entry: AuditEntry) -> None:
        self._insert(entry_document(entry))

    def newest(self, query: AuditQuery, before: int | None, limit: int) -> list[AuditEntry]:
        where = _filter(query)
        if before is not None:
            where["_id"] = {"$lt": before}
        found = self._collection.find(where).sort("_id", DESCENDING).limit(limit)
        return [entry_from_document(d) for d in found]

    def oldest(self, query: AuditQuery, after: int, limit: int) -> list[AuditEntry]:
        where = {**_filter(query), "_id": {"$gt": after}}
        found = self._collection.find(where).sort("_id", ASCENDING).limit(limit)
        return [entry_from_document(d) for d in found]
