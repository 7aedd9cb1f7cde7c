"""MongoDB storage for core, on pymongo's API only.

The same code runs on a real MongoDB (a replica set in production) and on
mongomock in embedded mode. Every query has an index; ids come from counters
updated atomically; uniqueness is enforced by indexes, never by a read
before a write. All methods are blocking: callers run them off the event loop.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pymongo
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from core.domain import Call, Direction, Employee, Status, StatusChange

Document = dict[str, Any]

# Idempotency keys replay their first reply for this long (SPEC 3).
IDEMPOTENCY_TTL = timedelta(hours=24)
# Events are kept at least 24 h so that clients can resume (SPEC 5).
EVENT_TTL = timedelta(hours=48)


def utc(value: datetime | None) -> datetime | None:
    """Datetimes come back naive from MongoDB; they are always UTC."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def utc_now() -> datetime:
    # MongoDB keeps milliseconds: round now so that what is returned equals what is stored.
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


class Store:
    """Collections and the queries on them."""

    def __init__(self, db: Database[Document], embedded: bool = False) -> None:
        self.db = db
        # mongomock emulates TTL indexes with a scan on every access; there,
        # remove_expired does their work instead.
        self.embedded = embedded
        self.counters: Collection[Document] = db["counters"]
        self.channels: Collection[Document] = db["channels"]
        self.departments: Collection[Document] = db["departments"]
        self.employees: Collection[Document] = db["employees"]
        self.groups: Collection[Document] = db["groups"]
        self.tokens: Collection[Document] = db["tokens"]
        self.contacts: Collection[Document] = db["contacts"]
        self.tickets: Collection[Document] = db["tickets"]
        self.calls: Collection[Document] = db["calls"]
        self.idempotency: Collection[Document] = db["idempotency"]
        self.events: Collection[Document] = db["events"]
        self.recordings: Collection[Document] = db["recordings"]

    # --- setup -------------------------------------------------------------

    def ensure_indexes(self) -> None:
        self.channels.create_index("key_hash", unique=True)
        self.employees.create_index("telephony")
        self.groups.create_index("members")
        self.tokens.create_index("hash", unique=True)
        self.contacts.create_index("key", unique=True)
        self.tickets.create_index("call_id")
        # One call per PBX call id on a channel, also under concurrent duplicates.
        self.calls.create_index(
            [("channel_id", ASCENDING), ("pbx_call_id", ASCENDING)],
            unique=True,
            partialFilterExpression={"pbx_call_id": {"$type": "string"}},
            name="channel_pbx_call_id_unique",
        )
        self.calls.create_index([("created_at", DESCENDING), ("_id", DESCENDING)])
        self.calls.create_index(
            [("channel_id", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)]
        )
        self.calls.create_index(
            [("phone_key", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)]
        )
        self.calls.create_index(
            [("audience", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)]
        )
        self.calls.create_index(
            [("user_id", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)]
        )
        self.calls.create_index("viewers")
        # The expiry sweeper looks for visible cards not updated for a while.
        self.calls.create_index(
            [("status", ASCENDING), ("expired", ASCENDING), ("updated_at", ASCENDING)]
        )
        if self.embedded:
            self.idempotency.create_index("created_at")
            self.events.create_index("at")
        else:
            self.idempotency.create_index(
                "created_at", expireAfterSeconds=int(IDEMPOTENCY_TTL.total_seconds())
            )
            self.events.create_index("at", expireAfterSeconds=int(EVENT_TTL.total_seconds()))
        self.events.create_index([("card_viewers", ASCENDING), ("_id", ASCENDING)])
        self.recordings.create_index([("call_id", ASCENDING), ("created_at", ASCENDING)])
        self.recordings.create_index([("attached", ASCENDING), ("created_at", ASCENDING)])

    def remove_expired(self, now: datetime) -> int:
        """What TTL indexes do on MongoDB: drop idempotency records and events
        past their retention. Only needed on the embedded store."""
        removed = self.idempotency.delete_many({"created_at": {"$lt": now - IDEMPOTENCY_TTL}})
        events = self.events.delete_many({"at": {"$lt": now - EVENT_TTL}})
        return int(removed.deleted_count) + int(events.deleted_count)

    # --- counters ------------------------------------------------------------

    def next_id(self, name: str) -> int:
        """The next value of a named counter: unique and increasing under concurrency."""
        doc = self.counters.find_one_and_update(
            {"_id": name},
            {"$inc": {"seq": 1}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        assert doc is not None  # upsert
        return int(doc["seq"])

    def raise_counter(self, name: str, at_least: int) -> None:
        """Make sure the counter never hands out an id at or below `at_least`."""
        self.counters.update_one({"_id": name}, {"$max": {"seq": at_least}}, upsert=True)

    # --- directory ---------------------------------------------------------

    def employees_by_id(self, ids: Iterable[int]) -> dict[int, Employee]:
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return {}
        return {int(d["_id"]): _employee(d) for d in self.employees.find({"_id": {"$in": wanted}})}

    def telephony_employees(self) -> dict[int, Employee]:
        return {int(d["_id"]): _employee(d) for d in self.employees.find({"telephony": True})}

    def group_members(self, group_ids: Iterable[int]) -> dict[int, list[int]]:
        wanted = list(dict.fromkeys(group_ids))
        if not wanted:
            return {}
        return {
            int(d["_id"]): [int(m) for m in d.get("members", [])]
            for d in self.groups.find({"_id": {"$in": wanted}})
        }

    def upsert_by_id(self, collection: Collection[Document], doc: Document) -> Document:
        fields = {k: v for k, v in doc.items() if k != "_id"}
        result = collection.find_one_and_update(
            {"_id": doc["_id"]},
            {"$set": fields},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        assert result is not None  # upsert
        return dict(result)

    # --- contacts and tickets ---------------------------------------------

    def find_or_create_contact(self, key: str, phone_e164: str, now: datetime) -> Document:
        existing = self.contacts.find_one({"key": key})
        if existing is not None:
            return dict(existing)
        contact = {
            "_id": self.next_id("contact"),
            "key": key,
            "phone_e164": phone_e164,
            "name": "",
            "created_at": now,
        }
        try:
            self.contacts.insert_one(contact)
        except DuplicateKeyError:
            # Another request created it first: that one is the contact.
            found = self.contacts.find_one({"key": key})
            assert found is not None
            return dict(found)
        return contact

    # --- calls ---------------------------------------------------------------

    def insert_call(self, call: Call, extra: Mapping[str, Any]) -> None:
        """Insert a new call; raises DuplicateKeyError when its pbx_call_id is taken."""
        self.calls.insert_one({**call_to_doc(call), **extra})

    def save_call(self, call: Call, extra: Mapping[str, Any]) -> bool:
        """Write `call` if nobody changed it since it was read (optimistic lock)."""
        doc = call_to_doc(call)
        doc.update(extra)
        expected = doc.pop("version")
        doc.pop("_id")
        result = self.calls.update_one(
            {"_id": call.call_id, "version": expected},
            {"$set": {**doc, "version": expected + 1}},
        )
        if result.matched_count == 1:
            call.version = expected + 1
            return True
        return False

    def call_doc(self, call_id: int) -> Document | None:
        doc = self.calls.find_one({"_id": call_id})
        return None if doc is None else dict(doc)

    def call_doc_by_pbx_id(self, channel_id: int, pbx_call_id: str) -> Document | None:
        doc = self.calls.find_one({"channel_id": channel_id, "pbx_call_id": pbx_call_id})
        return None if doc is None else dict(doc)


def _employee(doc: Mapping[str, Any]) -> Employee:
    return Employee(int(doc["_id"]), str(doc.get("name", "")), bool(doc.get("telephony")))


def call_to_doc(call: Call) -> Document:
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
    }


def call_from_doc(doc: Mapping[str, Any]) -> Call:
    created_at = utc(doc["created_at"])
    updated_at = utc(doc["updated_at"])
    assert created_at is not None and updated_at is not None
    return Call(
        call_id=int(doc["_id"]),
        channel_id=int(doc["channel_id"]),
        direction=Direction(doc["direction"]),
        phone=str(doc["phone"]),
        status=Status(doc["status"]),
        created_at=created_at,
        updated_at=updated_at,
        pbx_call_id=doc.get("pbx_call_id"),
        user_id=doc.get("user_id"),
        pbx_user_id=doc.get("pbx_user_id"),
        audience=tuple(doc.get("audience", ())),
        viewers=tuple(doc.get("viewers", ())),
        history=[
            StatusChange(Status(h["status"]), utc(h["at"]) or created_at)
            for h in doc.get("history", ())
        ],
        answered_at=utc(doc.get("answered_at")),
        ended_at=utc(doc.get("ended_at")),
        expired=bool(doc.get("expired")),
        version=int(doc.get("version", 0)),
    )


def connect(uri: str | None, db_name: str) -> tuple[Database[Document], bool]:
    """A database on MongoDB when `uri` is set, else on embedded mongomock.

    Returns the database and whether it is embedded.
    """
    if uri:
        client: pymongo.MongoClient[Document] = pymongo.MongoClient(
            uri, tz_aware=True, w="majority", retryWrites=True
        )
        return client[db_name], False
    from core import embedded

    return embedded.client()[db_name], True
