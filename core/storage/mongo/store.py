"""The MongoDB adapter of the storage port: several cores on one replica set, each
unit of work committed in one majority-acknowledged transaction."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Self

from pymongo import ASCENDING, DESCENDING
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import CollectionInvalid, DuplicateKeyError, PyMongoError
from pymongo.mongo_client import MongoClient

from core.model import EVENT_TTL, IDEMPOTENCY_TTL, PublishedEvent
from core.recordings.blobs import BlobStore
from core.storage.mongo import documents as docs
from core.storage.mongo.audit import (
    MongoAuditLog,
    MongoStreamTicketRepository,
    prepare_indexes,
)
from core.storage.mongo.blobs import GridFSBlobStore
from core.storage.mongo.callbacks import (
    MongoCallbackRepository,
    MongoCallFactsRepository,
)
from core.storage.mongo.callbacks import prepare_indexes as prepare_callback_indexes
from core.storage.mongo.documents import Document
from core.storage.mongo.repositories import (
    EVENT_COUNTER,
    Collections,
    Counters,
    MongoCallRepository,
    MongoChannelRepository,
    MongoContactRepository,
    MongoDepartmentRepository,
    MongoEmployeeRepository,
    MongoEventLog,
    MongoGroupRepository,
    MongoIdempotencyRepository,
    MongoRecordingRepository,
    MongoTicketRepository,
    MongoTokenRepository,
    PendingEvent,
    WriteBuffer,
)
from core.storage.mongo.writes import (
    Insert,
    VersionConflict,
    Write,
    apply_in_transaction,
    apply_with_undo,
)
from core.storage.port import (
    AuditLog,
    CallbackRepository,
    CallFactsRepository,
    CallRepository,
    ChannelRepository,
    ContactRepository,
    DepartmentRepository,
    EmployeeRepository,
    EventLog,
    EventSink,
    GroupRepository,
    IdempotencyRepository,
    RecordingRepository,
    StorageConflict,
    StreamTicketRepository,
    TicketRepository,
    TokenRepository,
    UnitOfWork,
)

log = logging.getLogger("vats.storage")

# Newest first within one key: the history's keyset paging runs on these.
_HISTORY_KEYS = ("channel_id", "phone_key", "status", "direction", "audience", "user_id")


class MongoStore:
    """The storage port on one MongoDB database (a replica set in production, mongomock
    in tests), on a client made with `tz_aware=True`.

    `close()` closes the client only when the store made it (`connect`): a client
    handed in belongs to whoever made it.
    """

    kind = "mongodb"
    # Other cores write the same database: their events come in through the change stream.
    single_writer = False

    def __init__(
        self,
        database: Database[Document],
        blobs: BlobStore | None = None,
        *,
        owns_client: bool = False,
    ) -> None:
        self.database = database
        self._owns_client = owns_client
        self.collections = Collections.of(database)
        self.counters = Counters(self.collections.counters)
        self.blobs: BlobStore = blobs if blobs is not None else GridFSBlobStore(database)
        # Held from giving out event seqs until their events reach the sink, so that this
        # process publishes in seq order; without transactions, held by every commit, so
        # that no unit of this process sees another half-applied or being undone.
        self._commit_lock = threading.Lock()
        self._sink: EventSink | None = None
        self._transactions: bool | None = None

    @classmethod
    def connect(cls, uri: str, database: str, blobs: BlobStore | None = None) -> MongoStore:
        """A store on its own client: majority writes, retried once on a lost primary."""
        client: MongoClient[Document] = MongoClient(
            uri, tz_aware=True, w="majority", retryWrites=True
        )
        return cls(client[database], blobs, owns_client=True)

    @property
    def events_collection(self) -> Collection[Document]:
        """What the change-stream follower watches."""
        return self.collections.events

    @property
    def supports_transactions(self) -> bool:
        """Whether the server runs multi-document transactions (a replica set or a sharded
        cluster); asked once."""
        if self._transactions is None:
            self._transactions = _has_transactions(self.database)
        return self._transactions

    def prepare(self) -> None:
        # Made up front: a transaction on a sharded cluster cannot create a collection.
        existing = set(self.database.list_collection_names())
        for collection in self.collections.every():
            if collection.name not in existing:
                with contextlib.suppress(CollectionInvalid):
                    self.database.create_collection(collection.name)
        c = self.collections
        # One call per PBX call id on a channel, also under concurrent duplicates.
        c.calls.create_index(
            [("channel_id", ASCENDING), ("pbx_call_id", ASCENDING)],
            unique=True,
            partialFilterExpression={"pbx_call_id": {"$type": "string"}},
            name="channel_pbx_call_id_unique",
        )
        c.calls.create_index([("created_at", DESCENDING), ("_id", DESCENDING)])
        for key in _HISTORY_KEYS:
            c.calls.create_index(
                [(key, ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)]
            )
        c.calls.create_index([("viewers", ASCENDING), ("_id", ASCENDING)])
        # The expiry sweeper looks for visible cards not updated for a while.
        c.calls.create_index(
            [
                ("status", ASCENDING),
                ("expired", ASCENDING),
                ("updated_at", ASCENDING),
                ("_id", ASCENDING),
            ]
        )
        c.tickets.create_index("call_id")
        c.contacts.create_index("key", unique=True)
        c.channels.create_index("key_hash", unique=True)
        c.employees.create_index("telephony")
        c.groups.create_index("members")
        c.tokens.create_index("secret_hash", unique=True)
        c.tokens.create_index(
            [("revoked_at", ASCENDING), ("created_at", ASCENDING), ("_id", ASCENDING)]
        )
        c.idempotency.create_index(
            "created_at", expireAfterSeconds=int(IDEMPOTENCY_TTL.total_seconds())
        )
        c.events.create_index("at", expireAfterSeconds=int(EVENT_TTL.total_seconds()))
        c.events.create_index([("card_viewers", ASCENDING), ("_id", ASCENDING)])
        c.recordings.create_index(
            [("call_id", ASCENDING), ("created_at", ASCENDING), ("_id", ASCENDING)]
        )
        prepare_indexes(c)
        prepare_callback_indexes(c)

    def unit_of_work(self) -> UnitOfWork:
        return MongoUnitOfWork(self, read_only=False)

    def reading(self) -> UnitOfWork:
        return MongoUnitOfWork(self, read_only=True)

    def set_event_sink(self, sink: EventSink | None) -> None:
        self._sink = sink

    def batch(self) -> contextlib.nullcontext[None]:
        # Each unit's commit is durable when it returns (majority write concern).
        return contextlib.nullcontext()

    def remove_expired(self, now: datetime) -> int:
        # The TTL indexes do this on a server, in their own time; this makes it happen now.
        idempotency = self.collections.idempotency.delete_many(
            {"created_at": {"$lt": now - IDEMPOTENCY_TTL}}
        )
        events = self.collections.events.delete_many({"at": {"$lt": now - EVENT_TTL}})
        tickets = self.collections.stream_tickets.delete_many({"expires_at": {"$lte": now}})
        return sum(int(r.deleted_count) for r in (idempotency, events, tickets))

    def ping(self) -> None:
        self.database.command("ping")

    def close(self) -> None:
        if self._owns_client:
            self.database.client.close()

    def commit(self, writes: Sequence[Write], events: Sequence[PendingEvent]) -> None:
        """Apply a unit of work's writes and events all together or not at all."""
        if not writes and not events:
            return
        transactions = self.supports_transactions
        published: list[PublishedEvent] = []

        def event_writes() -> list[Write]:
            # Seqs are given once the unit's own writes are in: a unit that conflicts
            # takes none, so only a failure past this point leaves a gap.
            published[:] = self._give_seqs(events)
            return [Insert(self.collections.events, docs.event_document(e)) for e in published]

        ordered = bool(events) or not transactions
        with self._commit_lock if ordered else contextlib.nullcontext():
            try:
                if transactions and len(writes) + len(events) > 1:
                    apply_in_transaction(self.database.client, writes, event_writes)
                else:
                    apply_with_undo(writes, event_writes)
            except (DuplicateKeyError, VersionConflict) as error:
                raise StorageConflict(str(error)) from error
            except PyMongoError as error:
                if error.has_error_label("TransientTransactionError"):
                    raise StorageConflict(str(error)) from error
                raise
            self._publish(published)

    def _give_seqs(self, events: Sequence[PendingEvent]) -> list[PublishedEvent]:
        if not events:
            return []
        last = self.counters.take(EVENT_COUNTER, len(events))
        first = last - len(events) + 1
        return [event.published(first + i) for i, event in enumerate(events)]

    def _publish(self, events: list[PublishedEvent]) -> None:
        sink = self._sink
        if sink is None:
            return
        for event in events:
            # The change is stored already: a failing subscriber must not undo that.
            try:
                sink.publish(event)
            except Exception:
                log.exception("publishing event %d failed", event.seq)


class MongoUnitOfWork:
    """Reads go straight to the database; writes wait in a buffer for `commit()`."""

    def __init__(self, store: MongoStore, *, read_only: bool) -> None:
        self._store = store
        self._buffer = WriteBuffer(read_only)
        c, buffer, counters = store.collections, self._buffer, store.counters
        self.calls: CallRepository = MongoCallRepository(c.calls, buffer, counters)
        self.tickets: TicketRepository = MongoTicketRepository(c.tickets, buffer, counters)
        self.contacts: ContactRepository = MongoContactRepository(c.contacts, buffer, counters)
        self.channels: ChannelRepository = MongoChannelRepository(c.channels, buffer, counters)
        self.departments: DepartmentRepository = MongoDepartmentRepository(c.departments, buffer)
        self.employees: EmployeeRepository = MongoEmployeeRepository(c.employees, buffer)
        self.groups: GroupRepository = MongoGroupRepository(c.groups, buffer)
        self.tokens: TokenRepository = MongoTokenRepository(c.tokens, buffer)
        self.idempotency: IdempotencyRepository = MongoIdempotencyRepository(c.idempotency, buffer)
        self.events: EventLog = MongoEventLog(c.events, buffer, counters)
        self.recordings: RecordingRepository = MongoRecordingRepository(c.recordings, buffer)
        self.stream_tickets: StreamTicketRepository = MongoStreamTicketRepository(
            c.stream_tickets, buffer
        )
        self.audit: AuditLog = MongoAuditLog(c.audit_entries, buffer, counters)
        self.callbacks: CallbackRepository = MongoCallbackRepository(c.callbacks, buffer, counters)
        self.call_facts: CallFactsRepository = MongoCallFactsRepository(c.calls)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._buffer.clear()

    def commit(self) -> None:
        if self._buffer.read_only:
            raise RuntimeError("a reading unit of work cannot commit")
        writes, events = self._buffer.take()
        self._store.commit(writes, events)


def _has_transactions(database: Database[Any]) -> bool:
    try:
        hello = database.command("hello")
    except NotImplementedError:
        # A stand-in for the server (mongomock) that does not answer `hello` has no sessions.
        return False
    clustered = "setName" in hello or hello.get("msg") == "isdbgrid"
    return clustered and hello.get("logicalSessionTimeoutMinutes") is not None
