"""The storage port's repositories on MongoDB collections.

Reads go straight to the database; writes are recorded in the unit of work's
buffer and applied at its commit. Ids come from counters bumped at once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Protocol, TypeVar

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError
from pymongo.write_concern import WriteConcern

from core.domain import ACTIVE_STATUSES, CardEvent, Status
from core.model import (
    Call,
    CallQuery,
    CallView,
    Channel,
    Contact,
    Department,
    Employee,
    Group,
    IdempotencyRecord,
    PageCursor,
    PublishedEvent,
    Recording,
    Ticket,
    Token,
)
from core.storage.mongo import documents as docs
from core.storage.mongo.documents import Document
from core.storage.mongo.writes import Delete, Insert, Replace, Write

# Newest first, the order of the call history and its keyset paging.
NEWEST_FIRST = [("created_at", DESCENDING), ("_id", DESCENDING)]
# The counter event seqs come from.
EVENT_COUNTER = "event"


@dataclasses.dataclass(frozen=True)
class Collections:
    """The adapter's collections, every write acknowledged by a majority of the replica set."""

    counters: Collection[Document]
    calls: Collection[Document]
    tickets: Collection[Document]
    contacts: Collection[Document]
    channels: Collection[Document]
    departments: Collection[Document]
    employees: Collection[Document]
    groups: Collection[Document]
    tokens: Collection[Document]
    idempotency: Collection[Document]
    events: Collection[Document]
    recordings: Collection[Document]
    stream_tickets: Collection[Document]
    audit_entries: Collection[Document]
    callbacks: Collection[Document]

    @classmethod
    def of(cls, database: Database[Document]) -> Collections:
        majority = WriteConcern("majority")
        return cls(
            **{
                field.name: database.get_collection(field.name, write_concern=majority)
                for field in dataclasses.fields(cls)
            }
        )

    def every(self) -> list[Collection[Document]]:
        return [getattr(self, field.name) for field in dataclasses.fields(self)]


class Counters:
    """Named counters (ids, event seqs), each bumped at once and outside any transaction:
    one counter written inside every transaction would make all writers conflict."""

    def __init__(self, collection: Collection[Document]) -> None:
        self._collection = collection

    def take(self, name: str, count: int = 1) -> int:
        """Give out `count` values; returns the last one, the first being `count - 1` less."""
        try:
            return self._take(name, count)
        except DuplicateKeyError:
            # Two first-ever takes raced to create the counter; it exists now.
            return self._take(name, count)

    def _take(self, name: str, count: int) -> int:
        document = self._collection.find_one_and_update(
            {"_id": name},
            {"$inc": {"seq": count}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        assert document is not None  # upsert
        return int(document["seq"])

    def raise_to(self, name: str, at_least: int) -> None:
        """Make sure the counter never gives out `at_least` or less."""
        self._collection.update_one({"_id": name}, {"$max": {"seq": at_least}}, upsert=True)

    def value(self, name: str) -> int:
        document = self._collection.find_one({"_id": name})
        return 0 if document is None else int(document["seq"])


@dataclasses.dataclass(frozen=True)
class PendingEvent:
    """An event added in a unit of work; its seq is given at commit."""

    kind: str
    view: CallView
    card_events: tuple[CardEvent, ...]
    at: datetime

    def published(self, seq: int) -> PublishedEvent:
        return PublishedEvent(
            seq=seq, kind=self.kind, view=self.view, card_events=self.card_events, at=self.at
        )


class WriteBuffer:
    """What a unit of work will write at commit, in the order it was asked for."""

    def __init__(self, read_only: bool) -> None:
        self.read_only = read_only
        self.writes: list[Write] = []
        self.events: list[PendingEvent] = []

    def check_writable(self) -> None:
        if self.read_only:
            raise RuntimeError("a reading unit of work does not write")

    def add(self, write: Write) -> None:
        self.check_writable()
        self.writes.append(write)

    def add_event(self, event: PendingEvent) -> None:
        self.check_writable()
        self.events.append(event)

    def take(self) -> tuple[list[Write], list[PendingEvent]]:
        taken = self.writes, self.events
        self.clear()
        return taken

    def clear(self) -> None:
        self.writes = []
        self.events = []


class Versioned(Protocol):
    """A record saved only over the version it was read at."""

    version: int


V = TypeVar("V", bound=Versioned)


class Repository:
    """One collection: reads at once, writes recorded in the unit of work's buffer."""

    def __init__(self, collection: Collection[Document], buffer: WriteBuffer) -> None:
        self._collection = collection
        self._buffer = buffer

    def _find_one(self, where: Document) -> Document | None:
        return self._collection.find_one(where)

    def _insert(self, document: Document) -> None:
        self._buffer.add(Insert(self._collection, document))

    def _replace(self, document: Document, *, upsert: bool = False) -> None:
        self._buffer.add(Replace(self._collection, document, upsert=upsert))

    def _save_versioned(self, record: V, document: Callable[[V], Document]) -> None:
        """Replace the record's document with its next version; the commit fails as a
        conflict when another unit saved it since it was read."""
        read_version = record.version
        record.version = read_version + 1
        self._buffer.add(Replace(self._collection, document(record), expected_version=read_version))

    def _delete(self, where: Document) -> int:
        """Record a removal for the commit; returns how many documents it finds now."""
        self._buffer.check_writable()
        found = self._collection.count_documents(where)
        if found:
            self._buffer.add(Delete(self._collection, where))
        return int(found)


class CountedRepository(Repository):
    """A collection whose ids come from the counter named `counter`."""

    counter: str

    def __init__(
        self, collection: Collection[Document], buffer: WriteBuffer, counters: Counters
    ) -> None:
        super().__init__(collection, buffer)
        self._counters = counters

    def next_id(self) -> int:
        self._buffer.check_writable()
        return self._counters.take(self.counter)


class MongoCallRepository(CountedRepository):
    counter = "call"

    def add(self, call: Call) -> None:
        self._insert(docs.call_document(call))

    def save(self, call: Call) -> None:
        self._save_versioned(call, docs.call_document)

    def get(self, call_id: int) -> Call | None:
        document = self._find_one({"_id": call_id})
        return None if document is None else docs.call_from_document(document)

    def by_pbx_call_id(self, channel_id: int, pbx_call_id: str) -> Call | None:
        # "$type" repeats the unique index's partial filter so that the query may use it.
        document = self._find_one(
            {"channel_id": channel_id, "pbx_call_id": {"$eq": pbx_call_id, "$type": "string"}}
        )
        return None if document is None else docs.call_from_document(document)

    def page(self, query: CallQuery, after: PageCursor | None, limit: int) -> list[Call]:
        if limit <= 0:
            return []
        found = self._collection.find(page_filter(query, after)).sort(NEWEST_FIRST).limit(limit)
        return [docs.call_from_document(d) for d in found]

    def shown_to(self, employee_id: int) -> list[Call]:
        found = self._collection.find({"viewers": employee_id}).sort("_id", ASCENDING)
        return [docs.call_from_document(d) for d in found]

    def stale(self, status: Status, updated_before: datetime) -> list[Call]:
        found = self._collection.find(
            {"status": status.value, "expired": False, "updated_at": {"$lte": updated_before}}
        ).sort([("updated_at", ASCENDING), ("_id", ASCENDING)])
        return [docs.call_from_document(d) for d in found]

    def active(self) -> list[Call]:
        found = self._collection.find(
            {"status": {"$in": sorted(s.value for s in ACTIVE_STATUSES)}}
        ).sort("_id", ASCENDING)
        return [docs.call_from_document(d) for d in found]

    def count(self) -> int:
        # The collection's own count: counting documents would scan them all.
        return int(self._collection.estimated_document_count())


def page_filter(query: CallQuery, after: PageCursor | None) -> Document:
    """The history query for `query`, starting after `after`.

    An employee's calls are an `$or` at the top (audience or bound user), each branch
    carrying every other condition, so that each branch runs on its own index and the
    server merges the two in order.
    """
    conditions: list[Document] = []
    if query.channel_id is not None:
        conditions.append({"channel_id": query.channel_id})
    if query.phone_key is not None:
        conditions.append({"phone_key": query.phone_key})
    if query.statuses:
        conditions.append({"status": {"$in": [s.value for s in query.statuses]}})
    if query.direction is not None:
        conditions.append({"direction": query.direction.value})
    created: Document = {}
    if query.created_from is not None:
        created["$gte"] = query.created_from
    if query.created_to is not None:
        created["$lt"] = query.created_to
    if after is not None:
        # Bounds on created_at keep the scan on the index; the $or breaks ties by call id.
        created["$lte"] = after.created_at
        conditions.append(
            {"$or": [{"created_at": {"$lt": after.created_at}}, {"_id": {"$lt": after.call_id}}]}
        )
    if created:
        conditions.append({"created_at": created})
    if query.employee_id is not None:
        return {
            "$or": [
                _all_of([*conditions, {"audience": query.employee_id}]),
                _all_of([*conditions, {"user_id": query.employee_id}]),
            ]
        }
    return _all_of(conditions)


def _all_of(conditions: list[Document]) -> Document:
    if not conditions:
        return {}
    if len(conditions) == 1:
        return conditions[0]
    return {"$and": conditions}


class MongoTicketRepository(CountedRepository):
    counter = "ticket"

    def add(self, ticket: Ticket) -> None:
        self._insert(docs.ticket_document(ticket))

    def save(self, ticket: Ticket) -> None:
        self._replace(docs.ticket_document(ticket))

    def get(self, ticket_id: int) -> Ticket | None:
        document = self._find_one({"_id": ticket_id})
        return None if document is None else docs.ticket_from_document(document)


class MongoContactRepository(CountedRepository):
    counter = "contact"

    def add(self, contact: Contact) -> None:
        self._insert(docs.contact_document(contact))

    def save(self, contact: Contact) -> None:
        self._replace(docs.contact_document(contact))

    def get(self, contact_id: int) -> Contact | None:
        document = self._find_one({"_id": contact_id})
        return None if document is None else docs.contact_from_document(document)

    def by_key(self, key: str) -> Contact | None:
        document = self._find_one({"key": key})
        return None if document is None else docs.contact_from_document(document)

    def list(self, after: int = 0, limit: int | None = None) -> list[Contact]:
        if limit is not None and limit <= 0:
            # pymongo reads a limit of 0 as none at all.
            return []
        found = self._collection.find({"_id": {"$gt": after}}).sort("_id", ASCENDING)
        if limit is not None:
            found = found.limit(limit)
        return [docs.contact_from_document(d) for d in found]

    def remove(self, contact_id: int) -> bool:
        return self._delete({"_id": contact_id}) > 0


class MongoChannelRepository(CountedRepository):
    counter = "channel"

    def reserve_ids_through(self, channel_id: int) -> None:
        self._buffer.check_writable()
        self._counters.raise_to(self.counter, channel_id)

    def add(self, channel: Channel) -> None:
        self._insert(docs.channel_document(channel))

    def save(self, channel: Channel) -> None:
        self._replace(docs.channel_document(channel))

    def get(self, channel_id: int) -> Channel | None:
        document = self._find_one({"_id": channel_id})
        return None if document is None else docs.channel_from_document(document)

    def by_key_hash(self, key_hash: str) -> Channel | None:
        document = self._find_one({"key_hash": key_hash})
        return None if document is None else docs.channel_from_document(document)

    def list(self) -> list[Channel]:
        found = self._collection.find().sort("_id", ASCENDING)
        return [docs.channel_from_document(d) for d in found]


class MongoDepartmentRepository(Repository):
    def save(self, department: Department) -> None:
        self._replace(docs.department_document(department), upsert=True)

    def get(self, department_id: int) -> Department | None:
        document = self._find_one({"_id": department_id})
        return None if document is None else docs.department_from_document(document)

    def list(self) -> list[Department]:
        found = self._collection.find().sort("_id", ASCENDING)
        return [docs.department_from_document(d) for d in found]


class MongoEmployeeRepository(Repository):
    def save(self, employee: Employee) -> None:
        self._replace(docs.employee_document(employee), upsert=True)

    def get_many(self, employee_ids: Iterable[int]) -> dict[int, Employee]:
        wanted = list(dict.fromkeys(employee_ids))
        if not wanted:
            return {}
        found = self._collection.find({"_id": {"$in": wanted}})
        return {e.employee_id: e for e in map(docs.employee_from_document, found)}

    def with_telephony(self) -> dict[int, Employee]:
        found = self._collection.find({"telephony": True}).sort("_id", ASCENDING)
        return {e.employee_id: e for e in map(docs.employee_from_document, found)}

    def list(self) -> list[Employee]:
        found = self._collection.find().sort("_id", ASCENDING)
        return [docs.employee_from_document(d) for d in found]


class MongoGroupRepository(Repository):
    def save(self, group: Group) -> None:
        self._replace(docs.group_document(group), upsert=True)

    def get_many(self, group_ids: Iterable[int]) -> dict[int, Group]:
        wanted = list(dict.fromkeys(group_ids))
        if not wanted:
            return {}
        found = self._collection.find({"_id": {"$in": wanted}})
        return {g.group_id: g for g in map(docs.group_from_document, found)}

    def list(self) -> list[Group]:
        found = self._collection.find().sort("_id", ASCENDING)
        return [docs.group_from_document(d) for d in found]


class MongoTokenRepository(Repository):
    def add(self, token: Token) -> None:
        self._insert(docs.token_document(token))

    def save(self, token: Token) -> None:
        self._replace(docs.token_document(token))

    def get(self, token_id: str) -> Token | None:
        document = self._find_one({"_id": token_id})
        return None if document is None else docs.token_from_document(document)

    def by_secret_hash(self, secret_hash: str) -> Token | None:
        document = self._find_one({"secret_hash": secret_hash})
        return None if document is None else docs.token_from_document(document)

    def list_active(self) -> list[Token]:
        found = self._collection.find({"revoked_at": None}).sort(
            [("created_at", ASCENDING), ("_id", ASCENDING)]
        )
        return [docs.token_from_document(d) for d in found]

    def get_many(self, token_ids: Iterable[str]) -> dict[str, Token]:
        found = self._collection.find({"_id": {"$in": list(dict.fromkeys(token_ids))}})
        return {str(d["_id"]): docs.token_from_document(d) for d in found}


class MongoIdempotencyRepository(Repository):
    def add(self, record: IdempotencyRecord) -> None:
        self._insert(docs.idempotency_document(record))

    def get(self, channel_id: int, key: str) -> IdempotencyRecord | None:
        document = self._find_one({"_id": docs.idempotency_id(channel_id, key)})
        return None if document is None else docs.idempotency_from_document(document)

    def remove(self, channel_id: int, key: str) -> None:
        self._buffer.add(Delete(self._collection, {"_id": docs.idempotency_id(channel_id, key)}))

    def remove_older_than(self, cutoff: datetime) -> int:
        return self._delete({"created_at": {"$lt": cutoff}})


class MongoEventLog(Repository):
    def __init__(
        self, collection: Collection[Document], buffer: WriteBuffer, counters: Counters
    ) -> None:
        super().__init__(collection, buffer)
        self._counters = counters

    def add(
        self, kind: str, view: CallView, card_events: Iterable[CardEvent], at: datetime
    ) -> None:
        # Subscribers get the call as it is now, whatever the caller does with it next.
        self._buffer.add_event(PendingEvent(kind, view.copy(), tuple(card_events), at))

    def last_seq(self) -> int:
        return self._counters.value(EVENT_COUNTER)

    def oldest_seq(self) -> int | None:
        document = self._collection.find_one({}, {"_id": 1}, sort=[("_id", ASCENDING)])
        return None if document is None else int(document["_id"])

    def after(self, seq: int, employee_id: int | None = None) -> list[PublishedEvent]:
        where: Document = {"_id": {"$gt": seq}}
        if employee_id is not None:
            where["card_viewers"] = employee_id
        found = self._collection.find(where).sort("_id", ASCENDING)
        return [docs.event_from_document(d) for d in found]

    def remove_older_than(self, cutoff: datetime) -> int:
        return self._delete({"at": {"$lt": cutoff}})

    def remove_through(self, seq: int) -> int:
        return self._delete({"_id": {"$lte": seq}})


class MongoRecordingRepository(Repository):
    def add(self, recording: Recording) -> None:
        self._insert(docs.recording_document(recording))

    def save(self, recording: Recording) -> None:
        self._replace(docs.recording_document(recording))

    def get(self, recording_id: str) -> Recording | None:
        document = self._find_one({"_id": recording_id})
        return None if document is None else docs.recording_from_document(document)

    def of_call(self, call_id: int) -> list[Recording]:
        found = self._collection.find({"call_id": call_id}).sort(
            [("created_at", ASCENDING), ("_id", ASCENDING)]
        )
        return [docs.recording_from_document(d) for d in found]

    def remove(self, recording_id: str) -> bool:
        return self._delete({"_id": recording_id}) > 0

    def unattached_before(self, cutoff: datetime) -> list[str]:
        found = self._collection.find(
            {"call_id": None, "created_at": {"$lte": cutoff}}, {"_id": 1}
        ).sort([("created_at", ASCENDING), ("_id", ASCENDING)])
        return [str(d["_id"]) for d in found]

    def ids(self) -> Iterator[str]:
        for document in self._collection.find({}, {"_id": 1}):
            yield str(document["_id"])
