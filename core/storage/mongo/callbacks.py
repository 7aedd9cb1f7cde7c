"""Missed callbacks and the figures' reads of the calls, on MongoDB: documents, repositories
and indexes.

A callback's document carries its list position (core.storage.callback_order) beside the
fields it is filtered on, so that every listing walks one index in order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from pymongo import ASCENDING
from pymongo.collection import Collection

from core.domain import Callback, CallbackState, CallFacts, Direction, Resolution, Status
from core.model import CallbackCursor, CallbackQuery
from core.storage import callback_order
from core.storage.mongo.documents import Document, utc, utc_or_none
from core.storage.mongo.repositories import Collections, CountedRepository

# The counter callback ids come from.
CALLBACK_COUNTER = "callback"
_IN_ORDER = [("state", ASCENDING), ("position", ASCENDING), ("_id", ASCENDING)]
_FACT_FIELDS = ("channel_id", "direction", "status", "created_at", "answered_at", "ended_at")


def prepare_indexes(collections: Collections) -> None:
    """The callbacks' indexes and the one the figures read ended calls by; safe at every
    start."""
    callbacks = collections.callbacks
    # One open callback per phone on a channel, also when two cores miss the same number.
    callbacks.create_index(
        [("channel_id", ASCENDING), ("phone_key", ASCENDING)],
        unique=True,
        partialFilterExpression={"state": CallbackState.OPEN.value},
        name="callbacks_open_by_phone",
    )
    callbacks.create_index(_IN_ORDER)
    callbacks.create_index([("channel_id", ASCENDING), *_IN_ORDER])
    callbacks.create_index([("audience", ASCENDING), *_IN_ORDER])
    collections.calls.create_index([("ended_at", ASCENDING), ("_id", ASCENDING)])


def callback_document(callback: Callback) -> Document:
    return {
        "_id": callback.callback_id,
        "channel_id": callback.channel_id,
        "phone_key": callback.phone_key,
        "phone": callback.phone,
        "phone_e164": callback.phone_e164,
        "contact_id": callback.contact_id,
        "first_missed_at": callback.first_missed_at,
        "last_missed_at": callback.last_missed_at,
        "last_call_id": callback.last_call_id,
        "last_status": callback.last_status.value,
        "attempts": callback.attempts,
        "audience": list(callback.audience),
        "state": callback.state.value,
        "position": callback_order.position_of(callback),
        "resolved_at": callback.resolved_at,
        "resolution": None if callback.resolution is None else callback.resolution.value,
        "resolved_by_employee_id": callback.resolved_by_employee_id,
        "resolved_by_call_id": callback.resolved_by_call_id,
        "resolved_by_token_id": callback.resolved_by_token_id,
        "version": callback.version,
    }


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def callback_from_document(document: Mapping[str, Any]) -> Callback:
    resolution = document.get("resolution")
    return Callback(
        callback_id=int(document["_id"]),
        channel_id=int(document["channel_id"]),
        phone_key=str(document["phone_key"]),
        phone=str(document["phone"]),
        phone_e164=str(document.get("phone_e164", "")),
        contact_id=_int_or_none(document.get("contact_id")),
        first_missed_at=utc(document["first_missed_at"]),
        last_missed_at=utc(document["last_missed_at"]),
        last_call_id=int(document["last_call_id"]),
        last_status=Status(document["last_status"]),
        attempts=int(document["attempts"]),
        audience=tuple(int(e) for e in document.get("audience", ())),
        state=CallbackState(document["state"]),
        resolved_at=utc_or_none(document.get("resolved_at")),
        resolution=None if resolution is None else Resolution(resolution),
        resolved_by_employee_id=_int_or_none(document.get("resolved_by_employee_id")),
        resolved_by_call_id=_int_or_none(document.get("resolved_by_call_id")),
        resolved_by_token_id=str(document.get("resolved_by_token_id", "")),
        version=int(document.get("version", 0)),
    )


def page_filter(
    query: CallbackQuery, state: CallbackState, after: callback_order.After
) -> Document:
    """One state's part of a page, from `after` on."""
    where: Document = {"state": state.value}
    if query.employee_id is not None:
        where["audience"] = query.employee_id
    if query.channel_id is not None:
        where["channel_id"] = query.channel_id
    if after is None:
        return where
    position, callback_id = after
    # The bound on position keeps the walk on the index; the $or breaks ties by id.
    where["position"] = {"$gte": position}
    return {
        "$and": [
            where,
            {"$or": [{"position": {"$gt": position}}, {"_id": {"$gt": callback_id}}]},
        ]
    }


class MongoCallbackRepository(CountedRepository):
    counter = CALLBACK_COUNTER

    def add(self, callback: Callback) -> None:
        self._insert(callback_document(callback))

    def save(self, callback: Callback) -> None:
        self._save_versioned(callback, callback_document)

    def get(self, callback_id: int) -> Callback | None:
        document = self._find_one({"_id": callback_id})
        return None if document is None else callback_from_document(document)

    def open_for(self, channel_id: int, phone_key: str) -> Callback | None:
        document = self._find_one(
            {"channel_id": channel_id, "phone_key": phone_key, "state": CallbackState.OPEN.value}
        )
        return None if document is None else callback_from_document(document)

    def page(
        self, query: CallbackQuery, after: CallbackCursor | None, limit: int
    ) -> list[Callback]:
        return callback_order.walk(query, after, limit, self._part)

    def _part(
        self, query: CallbackQuery, state: CallbackState, after: callback_order.After, limit: int
    ) -> list[Callback]:
        found = self._collection.find(page_filter(query, state, after)).sort(_IN_ORDER)
        return [callback_from_document(d) for d in found.limit(limit)]

    def count_open(self, channel_id: int | None = None, employee_id: int | None = None) -> int:
        where: Document = {"state": CallbackState.OPEN.value}
        if channel_id is not None:
            where["channel_id"] = channel_id
        if employee_id is not None:
            where["audience"] = employee_id
        return int(self._collection.count_documents(where))


def _facts(documents: Iterable[Mapping[str, Any]]) -> list[CallFacts]:
    return [
        CallFacts(
            call_id=int(d["_id"]),
            channel_id=int(d["channel_id"]),
            direction=Direction(d["direction"]),
            status=Status(d["status"]),
            created_at=utc(d["created_at"]),
            answered_at=utc_or_none(d.get("answered_at")),
            ended_at=utc_or_none(d.get("ended_at")),
        )
        for d in documents
    ]


class MongoCallFactsRepository:
    def __init__(self, collection: Collection[Document]) -> None:
        self._collection = collection

    def created_between(self, start: datetime, end: datetime) -> list[CallFacts]:
        found = self._collection.find(
            {"created_at": {"$gte": start, "$lt": end}}, projection=list(_FACT_FIELDS)
        ).sort([("created_at", ASCENDING), ("_id", ASCENDING)])
        return _facts(found)

    def ended_between(self, start: datetime, end: datetime) -> list[CallFacts]:
        found = self._collection.find(
            {"ended_at": {"$gte": start, "$lt": end}, "answered_at": {"$ne": None}},
            projection=list(_FACT_FIELDS),
        ).sort([("ended_at", ASCENDING), ("_id", ASCENDING)])
        return _facts(found)
