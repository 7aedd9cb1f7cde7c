"""The SQLite store: one database file in WAL mode, durable at every commit, its
units of work and its online backup.

One connection writes, guarded by a lock held for a whole writing unit of work,
so that writes (and event seqs) follow one another and the event sink sees
events in seq order. Reading units take a pooled connection of their own and
read one snapshot beside the writer.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import uuid
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

from core.model import EVENT_TTL, IDEMPOTENCY_TTL, PublishedEvent
from core.recordings.blobs import BlobStore
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
)
from core.storage.sqlite import schema
from core.storage.sqlite.audit import SqliteAuditLog, SqliteStreamTicketRepository
from core.storage.sqlite.callbacks import SqliteCallbackRepository, SqliteCallFactsRepository
from core.storage.sqlite.repositories import (
    Session,
    SqliteCallRepository,
    SqliteChannelRepository,
    SqliteContactRepository,
    SqliteDepartmentRepository,
    SqliteEmployeeRepository,
    SqliteEventLog,
    SqliteGroupRepository,
    SqliteIdempotencyRepository,
    SqliteRecordingRepository,
    SqliteTicketRepository,
    SqliteTokenRepository,
)

if TYPE_CHECKING:
    from datetime import datetime

    from core.storage.port import Store

log = logging.getLogger("vats.storage")

# How long a connection waits for a lock another process holds (a backup
# reading, a checkpoint) before it gives up.
BUSY_TIMEOUT_SECONDS = 5.0
JOURNAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024
# How long close() waits for a writing unit of work still running.
CLOSE_WAIT_SECONDS = 10.0


def _connect(path: Path | str, *, uri: bool = False) -> sqlite3.Connection:
    # Transactions are begun and ended explicitly; connections are handed
    # between worker threads, one thread at a time.
    connection = sqlite3.connect(
        path,
        timeout=BUSY_TIMEOUT_SECONDS,
        isolation_level=None,
        check_same_thread=False,
        uri=uri,
    )
    connection.execute("PRAGMA foreign_keys = ON")
    return connection


class SqliteUnitOfWork:
    """One transaction on the store; see `core.storage.port.UnitOfWork`."""

    calls: CallRepository
    tickets: TicketRepository
    contacts: ContactRepository
    channels: ChannelRepository
    departments: DepartmentRepository
    employees: EmployeeRepository
    groups: GroupRepository
    tokens: TokenRepository
    idempotency: IdempotencyRepository
    events: EventLog
    recordings: RecordingRepository
    stream_tickets: StreamTicketRepository
    audit: AuditLog
    callbacks: CallbackRepository
    call_facts: CallFactsRepository

    def __init__(self, store: SqliteStore, writable: bool) -> None:
        self._store = store
        self._writable = writable
        self._session: Session | None = None

    def __enter__(self) -> Self:
        if self._session is not None:
            raise RuntimeError("a unit of work is entered once")
        store = self._store
        connection = store._start_writing() if self._writable else store._take_reader()
        session = Session(connection, self._writable)
        self._session = session
        self.calls = SqliteCallRepository(session)
        self.tickets = SqliteTicketRepository(session)
        self.contacts = SqliteContactRepository(session)
        self.channels = SqliteChannelRepository(session)
        self.departments = SqliteDepartmentRepository(session)
        self.employees = SqliteEmployeeRepository(session)
        self.groups = SqliteGroupRepository(session)
        self.tokens = SqliteTokenRepository(session)
        self.idempotency = SqliteIdempotencyRepository(session)
        self.events = SqliteEventLog(session)
        self.recordings = SqliteRecordingRepository(session)
        self.stream_tickets = SqliteStreamTicketRepository(session)
        self.audit = SqliteAuditLog(session)
        self.callbacks = SqliteCallbackRepository(session)
        self.call_facts = SqliteCallFactsRepository(session)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        session = self._entered()
        session.open = False
        session.events.clear()
        try:
            if session.connection.in_transaction:
                session.connection.execute("ROLLBACK")
        finally:
            if self._writable:
                self._store._stop_writing()
            else:
                self._store._return_reader(session.connection)

    def commit(self) -> None:
        session = self._entered()
        if not self._writable:
            raise RuntimeError("a reading unit of work cannot commit; use store.unit_of_work()")
        if not session.open:
            raise RuntimeError("the unit of work is closed")
        connection = session.connection
        if session.conflict is not None:
            session.events.clear()
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise StorageConflict(str(session.conflict))
        if not connection.in_transaction:
            return
        try:
            connection.execute("COMMIT")
        except BaseException:
            session.events.clear()
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        events, session.events = session.events, []
        # Still under the write lock: the next writer's events cannot overtake these.
        self._store._publish(events)

    def _entered(self) -> Session:
        if self._session is None:
            raise RuntimeError("use the unit of work in a `with` block")
        return self._session


class SqliteStore:
    """The embedded store: the database file `db_path`, recordings in `blobs`."""

    kind = "sqlite"
    single_writer = True

    def __init__(self, db_path: Path, blobs: BlobStore) -> None:
        self.path = Path(db_path)
        self.blobs = blobs
        self._write_lock = threading.Lock()
        self._writing_thread: int | None = None
        self._writer: sqlite3.Connection | None = None
        self._pool_lock = threading.Lock()
        self._idle_readers: list[sqlite3.Connection] = []
        self._readers: list[sqlite3.Connection] = []
        self._closed = False
        self._sink: EventSink | None = None
        # The file the store opened: if the path stops naming it, writes would go
        # to a file nobody will open again.
        self._file_id: tuple[int, int] | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    def prepare(self) -> None:
        """Open (or create) the database file and bring its schema up to date."""
        with self._write_lock:
            self._closed = False
            if self._writer is not None:
                schema.migrate(self._writer)
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            writer = _connect(self.path)
            try:
                mode = writer.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise schema.SchemaError(
                        f"{self.path} cannot be put in WAL mode (it stays {mode!r})"
                    )
                # FULL syncs the log at every commit: a change is on disk before
                # its caller hears that it is stored.
                writer.execute("PRAGMA synchronous = FULL")
                # A burst of writes may grow the log; once checkpointed it shrinks back to this.
                writer.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT_BYTES}")
                version = schema.migrate(writer)
            except BaseException:
                writer.close()
                raise
            self._writer = writer
            self._file_id = _file_id(self.path)
        log.info("sqlite store %s ready at schema version %d", self.path, version)

    def close(self) -> None:
        """Close every connection; units of work still running then fail."""
        with self._pool_lock:
            self._closed = True
            readers, self._readers, self._idle_readers = self._readers, [], []
        for reader in readers:
            reader.close()
        acquired = self._write_lock.acquire(timeout=CLOSE_WAIT_SECONDS)
        try:
            writer, self._writer = self._writer, None
            if writer is not None:
                if not acquired:
                    log.warning("closing %s while a unit of work still writes", self.path)
                else:
                    # Fresh statistics for the planner, sampled so that stopping stays quick.
                    writer.execute("PRAGMA analysis_limit = 1000")
                    writer.execute("PRAGMA optimize")
                writer.close()
        finally:
            if acquired:
                self._write_lock.release()

    # --- units of work ---------------------------------------------------------------------

    def unit_of_work(self) -> SqliteUnitOfWork:
        return SqliteUnitOfWork(self, writable=True)

    def reading(self) -> SqliteUnitOfWork:
        return SqliteUnitOfWork(self, writable=False)

    def _start_writing(self) -> sqlite3.Connection:
        me = threading.get_ident()
        if self._writing_thread == me:
            # The lock is not reentrant: waiting here would wait for ourselves.
            raise RuntimeError("this thread already has a unit of work that writes open")
        self._write_lock.acquire()
        if self._writer is None or self._closed:
            self._write_lock.release()
            raise RuntimeError(f"the store {self.path} is not open; call prepare() first")
        self._writing_thread = me
        return self._writer

    def _stop_writing(self) -> None:
        self._writing_thread = None
        self._write_lock.release()

    def _take_reader(self) -> sqlite3.Connection:
        with self._pool_lock:
            if self._closed or self._writer is None:
                raise RuntimeError(f"the store {self.path} is not open; call prepare() first")
            if self._idle_readers:
                return self._idle_readers.pop()
        reader = _connect(self.path)
        # A reading unit that tries to write fails in SQLite too, not only in the repositories.
        reader.execute("PRAGMA query_only = ON")
        with self._pool_lock:
            if self._closed:
                reader.close()
                raise RuntimeError(f"the store {self.path} is closed")
            self._readers.append(reader)
        return reader

    def _return_reader(self, reader: sqlite3.Connection) -> None:
        with self._pool_lock:
            if not self._closed:
                self._idle_readers.append(reader)

    # --- events ------------------------------------------------------------------------------

    def set_event_sink(self, sink: EventSink | None) -> None:
        self._sink = sink

    def _publish(self, events: list[PublishedEvent]) -> None:
        sink = self._sink
        if sink is None:
            return
        for event in events:
            try:
                sink.publish(event)
            except Exception:
                # The event is committed; subscribers that missed it replay it from the log.
                log.exception("the event sink failed on event %d", event.seq)

    # --- maintenance -------------------------------------------------------------------------

    def remove_expired(self, now: datetime) -> int:
        with self.unit_of_work() as uow:
            removed = uow.idempotency.remove_older_than(now - IDEMPOTENCY_TTL)
            removed += uow.events.remove_older_than(now - EVENT_TTL)
            removed += uow.stream_tickets.remove_expired(now)
            uow.commit()
        return removed

    def ping(self) -> None:
        """Raise when the database cannot be read, or its path no longer names the
        file the store has open (the data directory was removed or replaced)."""
        if self._file_id is not None and _file_id(self.path) != self._file_id:
            raise OSError(f"{self.path} is gone or was replaced while core runs")
        reader = self._take_reader()
        try:
            reader.execute("SELECT 1").fetchone()
        finally:
            self._return_reader(reader)

    def schema_version(self) -> int:
        reader = self._take_reader()
        try:
            return schema.version_of(reader)
        finally:
            self._return_reader(reader)

    def settings(self) -> dict[str, object]:
        """What the writing connection runs with, for logs and checks."""
        names = ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
        with self._write_lock:
            writer = self._writer
            if writer is None:
                raise RuntimeError(f"the store {self.path} is not open; call prepare() first")
            return {name: writer.execute(f"PRAGMA {name}").fetchone()[0] for name in names}

    def backup(self, dest: Path) -> None:
        """Copy the database to `dest`, consistent while the store is in use."""
        backup_file(self.path, dest)


def backup_file(db_path: Path, dest: Path) -> None:
    """Copy the database at `db_path` to the single file `dest` with SQLite's online
    backup, from a read-only connection: safe while a core writes it.

    The copy is one snapshot (writers carry on beside it), in rollback-journal
    mode so that it is complete without a -wal file, and replaces `dest` only
    once it is whole and synced.
    """
    source_path = Path(db_path).resolve()
    if not source_path.is_file():
        raise FileNotFoundError(f"no database at {source_path}")
    dest = Path(dest)
    if dest.exists() and dest.resolve() == source_path:
        raise ValueError("a backup cannot replace the database it copies")
    partial = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")
    source = _connect(f"{source_path.as_uri()}?mode=ro", uri=True)
    try:
        target = sqlite3.connect(partial, isolation_level=None)
        try:
            # All pages in one step: one read transaction, one snapshot.
            source.backup(target, pages=-1)
            target.execute("PRAGMA journal_mode = DELETE")
        finally:
            target.close()
        _fsync(partial)
        os.replace(partial, dest)
        _fsync(dest.parent, directory=True)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        source.close()


def _fsync(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


if TYPE_CHECKING:

    def _is_a_store(store: SqliteStore) -> Store:
        return store


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino
