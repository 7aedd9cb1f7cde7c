"""The SQLite store: one database file in WAL mode, durable at every commit, its
units of work and its online backup.

One connection writes, guarded by a lock held for a whole writing unit of work,
so that writes (and event seqs) follow one another and the event sink sees
events in seq order. Reading units take a pooled connection of their own and
read one snapshot beside the writer.

Group commit: a writing unit begins the writer's transaction, or, when units before
it left one open, runs in a savepoint of it. A unit that commits while other units
wait for the writer leaves the transaction open for them and waits; the last unit in
line COMMITs for all of them at once (one sync of the log instead of one each) and
publishes their events in seq order. No unit's commit() returns before its changes
are on disk; when that COMMIT fails, every unit in it fails, and none of their
events is published. The log is copied into the database file by a thread of the
store's own, after commits (core.storage.sqlite.checkpoints), not by the commits.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator
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
from core.storage.sqlite.checkpoints import WRITER_CHECKPOINT_PAGES, Checkpointer
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
# At most this many units share one COMMIT (core's storage threads bound it lower).
MAX_GROUP = 64


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


@dataclasses.dataclass(frozen=True)
class CommitStats:
    commits: int
    units: int


def _rolled_back() -> sqlite3.OperationalError:
    # SQLite rolls a whole transaction back on some errors (a full disk, an I/O error).
    return sqlite3.OperationalError("the database rolled the transaction back")


class _Group:
    """Units of work that share one COMMIT: their events, and their wait for it."""

    def __init__(self) -> None:
        self.size = 0
        self.events: list[PublishedEvent] = []
        self._done = threading.Event()
        self._error: BaseException | None = None

    def add(self, events: list[PublishedEvent]) -> None:
        self.size += 1
        self.events.extend(events)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def finish(self, error: BaseException | None) -> None:
        self._error = error
        self._done.set()

    def wait(self) -> None:
        """Return once the group's COMMIT is on disk; raise what made it fail."""
        self._done.wait()
        if self._error is not None:
            # Each unit raises its own copy: they are raised in several threads at once.
            raise copy.copy(self._error) from self._error


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
        if self._writable:
            try:
                store._begin_unit()
            except BaseException:
                store._end_turn()
                raise
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
        if not self._writable:
            session.open = False
            try:
                if session.connection.in_transaction:
                    session.connection.execute("ROLLBACK")
            finally:
                self._store._return_reader(session.connection)
            return
        if session.open:
            # Left without a commit: nothing of this unit stays, the others' work does.
            session.open = False
            session.events.clear()
            try:
                self._store._undo_unit()
            finally:
                self._store._end_turn()

    def commit(self) -> None:
        session = self._entered()
        if not self._writable:
            raise RuntimeError("a reading unit of work cannot commit; use store.unit_of_work()")
        if not session.open:
            raise RuntimeError("the unit of work is closed")
        store = self._store
        session.open = False
        events, session.events = session.events, []
        if session.conflict is not None:
            try:
                store._undo_unit()
            finally:
                store._end_turn()
            raise StorageConflict(str(session.conflict))
        try:
            group = store._keep_unit(events)
        finally:
            store._end_turn()
        batch = store._batch_of_thread()
        if batch is not None:
            # The batch's end waits for it (see SqliteStore.batch).
            batch.append(group)
        else:
            group.wait()

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
        # Threads waiting for the write lock: while there are some, a committing unit
        # leaves the transaction open for them (group commit).
        self._waiting_lock = threading.Lock()
        self._waiting = 0
        # Batches open (any thread): while there are some, a commit leaves the transaction
        # open too, for their next units. Each thread's open batch: its units' groups.
        self._held = 0
        self._batches = threading.local()
        # The units whose savepoints were kept in the open transaction, to COMMIT together.
        self._group: _Group | None = None
        # Whether the unit whose turn it is runs in a savepoint (it joined a transaction).
        self._in_savepoint = False
        self._commits = CommitStats(0, 0)
        self._writer: sqlite3.Connection | None = None
        self._pool_lock = threading.Lock()
        self._idle_readers: list[sqlite3.Connection] = []
        self._readers: list[sqlite3.Connection] = []
        self._closed = False
        self._sink: EventSink | None = None
        self._checkpointer: Checkpointer | None = None
        # The file the store opened: if the path stops naming it, writes would go
        # to a file nobody will open again.
        self._file_id: tuple[int, int] | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    def prepare(self) -> None:
        """Open (or create) the database file and bring its schema up to date."""
        with self._write_lock:
            self._closed = False
            if self._writer is not None:
                self._finish_transaction()
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
                # Savepoints keep the pages they change in a sub-journal: in memory, not a file.
                writer.execute("PRAGMA temp_store = MEMORY")
                # A burst of writes may grow the log; once checkpointed it shrinks back to this.
                writer.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT_BYTES}")
                # The checkpointer copies the log; a COMMIT does only when it falls behind.
                writer.execute(f"PRAGMA wal_autocheckpoint = {WRITER_CHECKPOINT_PAGES}")
                version = schema.migrate(writer)
                checkpointer = Checkpointer(lambda: _connect(self.path), str(self.path))
                checkpointer.start()
            except BaseException:
                writer.close()
                raise
            self._writer = writer
            self._checkpointer = checkpointer
            self._file_id = _file_id(self.path)
        log.info("sqlite store %s ready at schema version %d", self.path, version)

    def close(self) -> None:
        """Close every connection; units of work still running then fail."""
        with self._pool_lock:
            self._closed = True
            readers, self._readers, self._idle_readers = self._readers, [], []
        for reader in readers:
            reader.close()
        checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None:
            checkpointer.stop()
        acquired = self._take_turn(timeout=CLOSE_WAIT_SECONDS)
        try:
            if acquired and self._writer is not None:
                # Units left a group open for a writer still waiting: theirs is committed.
                self._finish_transaction()
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

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Units of work run in this thread that share COMMITs (see `Store.batch`): each
        unit's commit keeps its changes in the open transaction and returns; the batch's
        end COMMITs what is still open and waits until every unit of the batch is on disk.
        A unit that fails is undone alone, as outside a batch."""
        if self._batch_of_thread() is not None:
            raise RuntimeError("this thread already has a batch open")
        groups: list[_Group] = []
        self._batches.groups = groups
        with self._waiting_lock:
            self._held += 1
        try:
            yield
        finally:
            self._batches.groups = None
            with self._waiting_lock:
                self._held -= 1
            self._commit_batch(groups)

    def _batch_of_thread(self) -> list[_Group] | None:
        groups: list[_Group] | None = getattr(self._batches, "groups", None)
        return groups

    def _commit_batch(self, groups: list[_Group]) -> None:
        """COMMIT the open transaction if it holds units of the batch, or if it was left
        open for the batch alone; then wait until every unit of the batch is on disk."""
        self._take_turn()
        try:
            if self._group is not None:
                mine = any(not group.done for group in groups)
                with self._waiting_lock:
                    others = self._waiting or self._held
                if mine or not others:
                    self._finish_transaction()
        finally:
            self._write_lock.release()
        for group in dict.fromkeys(groups):
            group.wait()

    def _start_writing(self) -> sqlite3.Connection:
        """Take the writer's turn: the write lock, and with it the writing connection."""
        me = threading.get_ident()
        if self._writing_thread == me:
            # The lock is not reentrant: waiting here would wait for ourselves.
            raise RuntimeError("this thread already has a unit of work that writes open")
        self._take_turn()
        if self._writer is None or self._closed:
            self._write_lock.release()
            raise RuntimeError(f"the store {self.path} is not open; call prepare() first")
        self._writing_thread = me
        return self._writer

    def _take_turn(self, timeout: float = -1) -> bool:
        """Wait for the write lock, counted among the waiting writers meanwhile."""
        with self._waiting_lock:
            self._waiting += 1
        try:
            return self._write_lock.acquire(timeout=timeout)
        finally:
            with self._waiting_lock:
                self._waiting -= 1

    def commit_stats(self) -> CommitStats:
        """How many COMMITs the store made, and how many units of work they stored."""
        return self._commits

    def writers_waiting(self) -> int:
        """Threads waiting for the writer: their units will join the open transaction."""
        with self._waiting_lock:
            return self._waiting

    def _begin_unit(self) -> None:
        """Open a unit's part of the writer's transaction: the transaction itself when none
        is open (taking SQLite's write lock at once, so that the unit reads the latest
        state), else a savepoint in it, so that the unit can be undone alone."""
        writer = self._connection()
        self._in_savepoint = writer.in_transaction
        writer.execute("SAVEPOINT unit" if self._in_savepoint else "BEGIN IMMEDIATE")

    def _keep_unit(self, events: list[PublishedEvent]) -> _Group:
        """Keep the unit's changes in the open transaction; its group will COMMIT them."""
        writer = self._connection()
        if self._in_savepoint:
            try:
                writer.execute("RELEASE unit")
            except BaseException as error:
                self._lose_transaction(error)
                raise
        if not writer.in_transaction:
            lost = _rolled_back()
            self._lose_transaction(lost)
            raise lost
        group = self._group = self._group or _Group()
        group.add(events)
        return group

    def _undo_unit(self) -> None:
        """Undo what the unit did; the units before it in the transaction keep theirs."""
        writer = self._connection()
        try:
            if writer.in_transaction:
                if self._in_savepoint:
                    writer.execute("ROLLBACK TO unit")
                    writer.execute("RELEASE unit")
                else:
                    # The unit began the transaction: nothing else is in it.
                    writer.execute("ROLLBACK")
        except BaseException as error:
            self._lose_transaction(error)
        if not writer.in_transaction and self._group is not None:
            self._lose_transaction(_rolled_back())

    def _lose_transaction(self, error: BaseException) -> None:
        """Roll the whole transaction back: every unit kept in it fails with `error`."""
        group, self._group = self._group, None
        try:
            writer = self._connection()
            if writer.in_transaction:
                writer.execute("ROLLBACK")
        finally:
            if group is not None:
                group.finish(error)

    def _end_turn(self) -> None:
        """Hand the open transaction to the next waiting unit, or end it: COMMIT the group
        (publishing its events, then waking its units) or roll back an empty transaction.
        Errors of the COMMIT go to the group's units, not to the caller."""
        try:
            group = self._group
            with self._waiting_lock:
                waiting = self._waiting
                held = self._held
            if group is not None and (waiting or held) and group.size < MAX_GROUP:
                return
            self._finish_transaction()
        finally:
            self._stop_writing()

    def _finish_transaction(self) -> None:
        group, self._group = self._group, None
        writer = self._writer
        if writer is None:
            # Closed under a unit that outlasted close()'s wait: nothing can commit now.
            if group is not None:
                group.finish(RuntimeError(f"the store {self.path} was closed before the commit"))
            return
        if group is None:
            if writer.in_transaction:
                writer.execute("ROLLBACK")
            return
        try:
            writer.execute("COMMIT")
        except BaseException as error:
            try:
                if writer.in_transaction:
                    writer.execute("ROLLBACK")
            finally:
                group.finish(error)
            return
        self._commits = CommitStats(self._commits.commits + 1, self._commits.units + group.size)
        if self._checkpointer is not None:
            self._checkpointer.committed()
        # Still under the write lock: the next group's events cannot overtake these.
        self._publish(group.events)
        group.finish(None)

    def _connection(self) -> sqlite3.Connection:
        writer = self._writer
        if writer is None:
            raise RuntimeError(f"the store {self.path} is not open; call prepare() first")
        return writer

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
        names = (
            "journal_mode",
            "synchronous",
            "foreign_keys",
            "busy_timeout",
            "wal_autocheckpoint",
        )
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
