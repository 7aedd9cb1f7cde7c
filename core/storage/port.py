"""The storage port: repositories in the helpdesk's words and a unit of work
that is the transaction boundary.

Use cases see only this module's protocols and `core.model`'s records: no SQL,
collection names or query operators. Two adapters implement it: SQLite
(`core.storage.sqlite`, the embedded default) and MongoDB
(`core.storage.mongo`). `tests/storage/test_port_contract.py` holds every
adapter to the same behaviour.

Rules every adapter keeps:
- Every method blocks; core calls them on worker threads, never on the loop.
- A unit of work is used by one thread. Its writes are applied at `commit()`
  all together or not at all; leaving the `with` block without `commit()`
  applies nothing. Use cases never read back in a unit what they wrote in it.
- `commit()` (or a write) raises `StorageConflict` when a concurrent change
  won (a call saved from a stale version, a duplicate PBX call id or contact
  key or idempotency key, a channel key in use): nothing of the unit is
  applied, and the use case runs again on fresh reads.
- Once `commit()` returns, the change is durable (SQLite: WAL, synchronous
  commit; MongoDB: majority write concern).
- Ids from `next_id()` are unique and increasing; a unit that is not
  committed may leave a gap.
- Datetimes are timezone-aware UTC and come back equal to what was stored at
  millisecond precision (`core.model.utc_now` rounds to it).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self

from core.domain import Callback, CallFacts, CardEvent, Status
from core.model import (
    AuditEntry,
    AuditQuery,
    Call,
    CallbackCursor,
    CallbackQuery,
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
    StreamTicket,
    Ticket,
    Token,
)
from core.recordings.blobs import BlobStore


class StorageConflict(Exception):
    """A concurrent change won; nothing of the unit of work was applied."""


class CallRepository(Protocol):
    def next_id(self) -> int: ...

    def add(self, call: Call) -> None:
        """A new call; StorageConflict when its (channel, pbx_call_id) is taken."""

    def save(self, call: Call) -> None:
        """Store a changed call that was read at `call.version`: the stored
        version, and `call.version` at once, become one more. StorageConflict
        (here or at commit) when someone saved the call since it was read."""

    def get(self, call_id: int) -> Call | None: ...

    def by_pbx_call_id(self, channel_id: int, pbx_call_id: str) -> Call | None: ...

    def page(self, query: CallQuery, after: PageCursor | None, limit: int) -> list[Call]:
        """Up to `limit` calls matching `query`, newest first (created_at, then
        call_id, both descending), starting after `after`. Indexed on every filter."""

    def shown_to(self, employee_id: int) -> list[Call]:
        """Calls whose card the employee sees now (`call.viewers`), by call id."""

    def stale(self, status: Status, updated_before: datetime) -> list[Call]:
        """Calls in `status`, not expired, last updated at or before the time."""

    def active(self) -> list[Call]:
        """Every call in an active status (ringing, in-progress)."""

    def count(self) -> int: ...


class TicketRepository(Protocol):
    def next_id(self) -> int: ...

    def add(self, ticket: Ticket) -> None: ...

    def save(self, ticket: Ticket) -> None:
        """Replace the stored ticket (executor, comments)."""

    def get(self, ticket_id: int) -> Ticket | None: ...


class ContactRepository(Protocol):
    def next_id(self) -> int: ...

    def add(self, contact: Contact) -> None:
        """A new contact; StorageConflict when its key is taken."""

    def save(self, contact: Contact) -> None: ...

    def get(self, contact_id: int) -> Contact | None: ...

    def by_key(self, key: str) -> Contact | None: ...

    def list(self, after: int = 0, limit: int | None = None) -> list[Contact]:
        """By contact id: those with an id greater than `after`, at most `limit`
        of them (all when None)."""

    def remove(self, contact_id: int) -> bool:
        """Whether the contact was stored; its key may then be added again."""


class ChannelRepository(Protocol):
    def next_id(self) -> int: ...

    def reserve_ids_through(self, channel_id: int) -> None:
        """Make next_id() return more than `channel_id` (seeded channels keep their ids)."""

    def add(self, channel: Channel) -> None:
        """A new channel; StorageConflict when its key hash is taken."""

    def save(self, channel: Channel) -> None:
        """Replace the stored channel (name, department, enabled, key, PBX users);
        StorageConflict when the key hash is another channel's."""

    def get(self, channel_id: int) -> Channel | None: ...

    def by_key_hash(self, key_hash: str) -> Channel | None: ...

    def list(self) -> list[Channel]:
        """By channel id."""


class DepartmentRepository(Protocol):
    def save(self, department: Department) -> None:
        """Insert or replace by id."""

    def get(self, department_id: int) -> Department | None: ...

    def list(self) -> list[Department]: ...


class EmployeeRepository(Protocol):
    def save(self, employee: Employee) -> None:
        """Insert or replace by id."""

    def get_many(self, employee_ids: Iterable[int]) -> dict[int, Employee]:
        """The known ones of `employee_ids`, by id; unknown ids are absent."""

    def with_telephony(self) -> dict[int, Employee]: ...

    def list(self) -> list[Employee]: ...


class GroupRepository(Protocol):
    def save(self, group: Group) -> None:
        """Insert or replace by id; members keep their order."""

    def get_many(self, group_ids: Iterable[int]) -> dict[int, Group]: ...

    def list(self) -> list[Group]: ...


class TokenRepository(Protocol):
    def add(self, token: Token) -> None:
        """StorageConflict when the id or the secret hash is taken."""

    def save(self, token: Token) -> None:
        """Replace the stored token (revocation)."""

    def get(self, token_id: str) -> Token | None: ...

    def by_secret_hash(self, secret_hash: str) -> Token | None: ...

    def list_active(self) -> list[Token]:
        """Tokens not revoked, oldest first (expired ones too)."""

    def get_many(self, token_ids: Iterable[str]) -> dict[str, Token]:
        """The known ones of `token_ids`, by id; unknown ids are absent."""


class StreamTicketRepository(Protocol):
    def add(self, ticket: StreamTicket) -> None:
        """StorageConflict when the hash is taken."""

    def take(self, ticket_hash: str) -> StreamTicket | None:
        """The ticket, removed at commit: of two units that take the same ticket,
        the second to commit gets StorageConflict (and, run again, None)."""

    def remove_expired(self, now: datetime) -> int:
        """Drop tickets that expired at or before `now`; returns how many."""


class AuditLog(Protocol):
    """Append-only: entries are added, read and never changed or removed."""

    def next_id(self) -> int: ...

    def add(self, entry: AuditEntry) -> None: ...

    def newest(self, query: AuditQuery, before: int | None, limit: int) -> list[AuditEntry]:
        """Up to `limit` entries matching `query`, newest first (by entry id), with an
        id below `before` (all when None). Indexed on every filter."""

    def oldest(self, query: AuditQuery, after: int, limit: int) -> list[AuditEntry]:
        """Up to `limit` entries matching `query`, oldest first, with an id above `after`."""


class IdempotencyRepository(Protocol):
    def add(self, record: IdempotencyRecord) -> None:
        """StorageConflict when (channel_id, key) is taken."""

    def get(self, channel_id: int, key: str) -> IdempotencyRecord | None: ...

    def remove(self, channel_id: int, key: str) -> None: ...

    def remove_older_than(self, cutoff: datetime) -> int: ...


class EventLog(Protocol):
    def add(
        self, kind: str, view: CallView, card_events: Iterable[CardEvent], at: datetime
    ) -> None:
        """Append an event; its seq is given at commit, one more than the last
        ever given in the deployment, and committed events reach the store's
        event sink in seq order."""

    def last_seq(self) -> int:
        """The highest seq given out (0 before the first); never decreases, not
        even when old events are removed."""

    def oldest_seq(self) -> int | None:
        """The lowest seq still kept; None when the log is empty."""

    def after(self, seq: int, employee_id: int | None = None) -> list[PublishedEvent]:
        """Events with a greater seq, in seq order; with `employee_id`, only those
        with a card event for that employee."""

    def remove_older_than(self, cutoff: datetime) -> int: ...

    def remove_through(self, seq: int) -> int:
        """Drop the events up to and including `seq` (retention)."""


class RecordingRepository(Protocol):
    def add(self, recording: Recording) -> None: ...

    def save(self, recording: Recording) -> None:
        """Replace the stored recording (a call took it: `call_id`)."""

    def get(self, recording_id: str) -> Recording | None: ...

    def of_call(self, call_id: int) -> list[Recording]:
        """The call's recordings, oldest first (the last one is the current)."""

    def remove(self, recording_id: str) -> bool: ...

    def unattached_before(self, cutoff: datetime) -> list[str]:
        """Ids of recordings no call took, stored at or before `cutoff`."""

    def ids(self) -> Iterator[str]:
        """Every stored recording's id (start-up reconciliation with the blobs)."""


class CallbackRepository(Protocol):
    """Missed callbacks (core.domain.Callback): at most one open per (channel, phone key)."""

    def next_id(self) -> int: ...

    def add(self, callback: Callback) -> None:
        """A new callback; StorageConflict when one is open for its channel and phone key."""

    def save(self, callback: Callback) -> None:
        """Store a changed callback read at `callback.version`: the stored version, and
        `callback.version` at once, become one more. StorageConflict (here or at commit) when
        someone saved it since it was read."""

    def get(self, callback_id: int) -> Callback | None: ...

    def open_for(self, channel_id: int, phone_key: str) -> Callback | None:
        """The callback open for the phone key on the channel."""

    def page(
        self, query: CallbackQuery, after: CallbackCursor | None, limit: int
    ) -> list[Callback]:
        """Up to `limit` callbacks matching `query` in its order (see CallbackQuery), starting
        after `after`. Indexed on every filter."""

    def count_open(self, channel_id: int | None = None, employee_id: int | None = None) -> int:
        """How many callbacks are open (on the channel, seen by the employee)."""


class CallFactsRepository(Protocol):
    """What the day's figures read of the calls (core.domain.CallFacts)."""

    def created_between(self, start: datetime, end: datetime) -> list[CallFacts]:
        """Calls created in [start, end), by creation time."""

    def ended_between(self, start: datetime, end: datetime) -> list[CallFacts]:
        """Calls that ended in [start, end) after being answered, by end time."""


class UnitOfWork(Protocol):
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

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Roll back whatever was not committed."""

    def commit(self) -> None: ...


class EventSink(Protocol):
    """Where committed events go live (the in-process hub); called on the
    committing thread, in seq order."""

    def publish(self, event: PublishedEvent) -> None: ...


class Store(Protocol):
    """One storage backend: opened by the wiring, shared by every use case."""

    # "sqlite" or "mongodb", for logs and metrics.
    kind: str
    # True when every change passes through this process (one writer): the
    # event hub then needs no change stream to learn of other cores' events.
    single_writer: bool
    # Where recording bytes live (files beside the database, or GridFS).
    blobs: BlobStore

    def prepare(self) -> None:
        """Create or migrate the schema and indexes; safe to run at every start."""

    def unit_of_work(self) -> UnitOfWork:
        """A unit of work for a use case that may write."""

    def reading(self) -> UnitOfWork:
        """A unit of work for reads only (it may run beside writers); commit() is refused."""

    def set_event_sink(self, sink: EventSink | None) -> None: ...

    def batch(self) -> AbstractContextManager[None]:
        """Units of work that commit together, for a thread that runs many in a row.

        Inside it, a unit's commit() in this thread may return before the unit's changes
        are on disk (they are kept, and its later units see them); leaving it returns
        once every unit committed inside it is on disk, or raises what made that fail,
        and no unit's events are published before its changes are on disk. A store
        whose every commit is durable on its own treats it as nothing more."""

    def remove_expired(self, now: datetime) -> int:
        """Drop idempotency records, events and stream tickets past retention (where
        the database has no TTL of its own); returns how many."""

    def ping(self) -> None:
        """Raise when the database cannot be reached."""

    def close(self) -> None: ...
