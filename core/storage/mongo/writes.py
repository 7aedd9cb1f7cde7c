"""The writes a unit of work buffers, and the two ways a commit applies them:
in one transaction where the server has transactions, else one after another,
undoing the applied ones when a later one fails."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from pymongo import ReturnDocument
from pymongo.client_session import ClientSession
from pymongo.collection import Collection
from pymongo.mongo_client import MongoClient
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

from core.storage.mongo.documents import Document

log = logging.getLogger("vats.storage")

Undo = Callable[[], object]


class VersionConflict(Exception):
    """A versioned replace found the document saved by someone else since it was read."""


class Write(Protocol):
    def apply(self, session: ClientSession | None) -> Undo | None:
        """Apply the write; return what puts the previous state back (None: nothing to undo)."""


@dataclasses.dataclass(frozen=True)
class Insert:
    collection: Collection[Document]
    document: Document

    def apply(self, session: ClientSession | None) -> Undo | None:
        self.collection.insert_one(self.document, session=session)
        key = {"_id": self.document["_id"]}
        return lambda: self.collection.delete_one(key)


@dataclasses.dataclass(frozen=True)
class Replace:
    """Replace a document by `_id`; with `expected_version`, only the one at that version."""

    collection: Collection[Document]
    document: Document
    upsert: bool = False
    expected_version: int | None = None

    def apply(self, session: ClientSession | None) -> Undo | None:
        key = {"_id": self.document["_id"]}
        wanted = dict(key)
        if self.expected_version is not None:
            wanted["version"] = self.expected_version
        before = self.collection.find_one_and_replace(
            wanted,
            self.document,
            upsert=self.upsert,
            return_document=ReturnDocument.BEFORE,
            session=session,
        )
        if before is not None:
            return lambda: self.collection.replace_one(key, before)
        if self.expected_version is not None:
            raise VersionConflict(
                f"{self.collection.name} {key['_id']} is no longer at version "
                f"{self.expected_version}"
            )
        if self.upsert:
            return lambda: self.collection.delete_one(key)
        return None


@dataclasses.dataclass(frozen=True)
class Delete:
    collection: Collection[Document]
    where: Document

    def apply(self, session: ClientSession | None) -> Undo | None:
        if session is not None:
            # Inside a transaction the abort is the undo.
            self.collection.delete_many(self.where, session=session)
            return None
        removed = list(self.collection.find(self.where))
        if not removed:
            return None
        self.collection.delete_many({"_id": {"$in": [d["_id"] for d in removed]}})
        return lambda: self.collection.insert_many(removed)


def apply_in_transaction(
    client: MongoClient[Any], writes: Sequence[Write], then: Callable[[], Sequence[Write]]
) -> None:
    """All of `writes`, then all of what `then()` returns once they are in, in one
    transaction committed with majority write concern.

    `with_transaction` retries a transaction that hit a transient error (a write
    conflict with another core) on its own, calling `then()` again; a failure it
    gives up on aborts the transaction whole.
    """

    def apply_all(session: ClientSession) -> None:
        for write in writes:
            write.apply(session)
        for write in then():
            write.apply(session)

    with client.start_session() as session:
        session.with_transaction(
            apply_all,
            read_concern=ReadConcern("snapshot"),
            write_concern=WriteConcern("majority"),
        )


def apply_with_undo(writes: Sequence[Write], then: Callable[[], Sequence[Write]]) -> None:
    """`writes`, then what `then()` returns once they are in, one after another; when
    one fails, those already applied are undone in reverse order before the failure
    is raised."""
    undo: list[Undo] = []

    def apply(write: Write) -> None:
        step = write.apply(None)
        if step is not None:
            undo.append(step)

    try:
        for write in writes:
            apply(write)
        for write in then():
            apply(write)
    except BaseException:
        for step in reversed(undo):
            # Undo the rest even when one undo fails: the failure in flight is raised after.
            try:
                step()
            except Exception:
                log.exception("could not undo a write of a failed unit of work")
        raise
