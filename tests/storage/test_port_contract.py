"""The storage port's contract (core/storage/port.py), held against every adapter:
round trips of every record, the unit of work, conflicts, ids, the history's
paging and filters, the event log and its sink, retention and recordings."""

from __future__ import annotations

import dataclasses
import random
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from core.domain import CardChange, CardEvent, Direction, Employee, Status, StatusChange
from core.model import (
    EVENT_TTL,
    IDEMPOTENCY_TTL,
    Call,
    CallQuery,
    CallView,
    Channel,
    Comment,
    Contact,
    Department,
    Group,
    IdempotencyRecord,
    PageCursor,
    PublishedEvent,
    Recording,
    Reply,
    Ticket,
    Token,
    utc_now,
)
from core.storage.port import StorageConflict, Store, UnitOfWork
from tests.storage.storage_marks import ON_ATOMIC_BACKENDS

if TYPE_CHECKING:
    from tests.storage.conftest import Backend

T = TypeVar("T")

MOSCOW = "+74951234567"
SPB = "+78121234567"
DIGITS = "digits:0042"

# --- factories -------------------------------------------------------------------------------


def minutes(value: float) -> timedelta:
    return timedelta(minutes=value)


def make_channel(channel_id: int, **fields: Any) -> Channel:
    channel = Channel(
        channel_id=channel_id,
        name=f"Line {channel_id}",
        department_id=1,
        key_hash=f"key-hash-{channel_id}",
        created_at=utc_now(),
        pbx_users={"101": 1, "102": 2},
    )
    return dataclasses.replace(channel, **fields)


def make_ticket(call: Call, **fields: Any) -> Ticket:
    ticket = Ticket(
        ticket_id=call.ticket_id,
        call_id=call.call_id,
        channel_id=call.channel_id,
        department_id=1,
        created_at=call.created_at,
        contact_id=call.contact_id,
    )
    return dataclasses.replace(ticket, **fields)


def make_call(uow: UnitOfWork, *, created_at: datetime | None = None, **fields: Any) -> Call:
    """A ringing call on channel 1, with ids for it and its ticket from `uow`."""
    created = created_at or utc_now()
    call = Call(
        call_id=uow.calls.next_id(),
        channel_id=1,
        direction=Direction.INCOMING,
        phone="8 (495) 123-45-67",
        status=Status.RINGING,
        created_at=created,
        updated_at=created,
        history=[StatusChange(Status.RINGING, created)],
        ticket_id=uow.tickets.next_id(),
        phone_e164=MOSCOW,
        phone_key=MOSCOW,
    )
    return dataclasses.replace(call, **fields)


def new_call(uow: UnitOfWork, *, created_at: datetime | None = None, **fields: Any) -> Call:
    """A call made by make_call and its ticket, both added to `uow`."""
    call = make_call(uow, created_at=created_at, **fields)
    uow.calls.add(call)
    uow.tickets.add(make_ticket(call))
    return call


def add_call(store: Store, **fields: Any) -> Call:
    with store.unit_of_work() as uow:
        call = new_call(uow, **fields)
        uow.commit()
    return call


def make_recording(recording_id: str, created_at: datetime, **fields: Any) -> Recording:
    recording = Recording(
        recording_id=recording_id,
        channel_id=1,
        format="mp3",
        content_type="audio/mpeg",
        size=48_000,
        sha256="ab" * 32,
        created_at=created_at,
        duration_seconds=12.5,
        file_name=f"{recording_id}.mp3",
    )
    return dataclasses.replace(recording, **fields)


def make_view(call: Call, **fields: Any) -> CallView:
    """A view with every part filled in, so that payload round trips cover them all."""
    at = call.created_at
    view = CallView(
        call=call,
        ticket=make_ticket(
            call,
            executor_id=1,
            contact_id=7,
            comments=[Comment("first", at), Comment("from Anna", at + minutes(1), "employee:1")],
        ),
        contact=Contact(7, MOSCOW, MOSCOW, at, "Ivan"),
        channel_name="Line 1",
        user_name="Anna",
        recordings=[
            make_recording("rec-a", at, call_id=call.call_id),
            make_recording("rec-b", at + minutes(2), call_id=call.call_id, duration_seconds=None),
        ],
    )
    return dataclasses.replace(view, **fields)


def make_token(token_id: str, created_at: datetime, **fields: Any) -> Token:
    token = Token(
        token_id=token_id,
        secret_hash=f"secret-hash-{token_id}",
        role="employee",
        created_at=created_at,
        employee_id=1,
        description=f"token {token_id}",
    )
    return dataclasses.replace(token, **fields)


def make_record(
    channel_id: int, key: str, created_at: datetime, view: CallView
) -> IdempotencyRecord:
    return IdempotencyRecord(
        channel_id=channel_id,
        key=key,
        fingerprint="f0" * 32,
        created_at=created_at,
        reply=Reply(view=view, created=True),
    )


class CollectingSink:
    """An event sink that keeps what it was given, and on which thread."""

    def __init__(self) -> None:
        self.events: list[PublishedEvent] = []
        self.threads: list[int] = []
        self._lock = threading.Lock()

    def publish(self, event: PublishedEvent) -> None:
        with self._lock:
            self.events.append(event)
            self.threads.append(threading.get_ident())

    @property
    def seqs(self) -> list[int]:
        return [e.seq for e in self.events]


def read(store: Store, work: Callable[[UnitOfWork], T]) -> T:
    with store.reading() as uow:
        return work(uow)


def read_elsewhere(store: Store, work: Callable[[UnitOfWork], T]) -> T:
    """Run `work` in a reading unit on another thread, as a concurrent request would."""
    results: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(read(store, work))
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive(), "a reading unit was held up by an open writing unit"
    if errors:
        raise errors[0]
    return results[0]


def log_event(
    store: Store,
    call: Call,
    card_events: Iterable[CardEvent] = (),
    at: datetime | None = None,
    kind: str = "updated",
) -> None:
    with store.unit_of_work() as uow:
        uow.events.add(kind, make_view(call), card_events, at or utc_now())
        uow.commit()


def assert_utc(*values: datetime | None) -> None:
    for value in values:
        assert value is not None and value.utcoffset() == timedelta(0), value


@pytest.fixture
def seeded(store: Store) -> Store:
    """A store with department 1, channels 1 and 2 and employees 1-3, as calls need."""
    with store.unit_of_work() as uow:
        uow.departments.save(Department(1, "Support"))
        uow.channels.reserve_ids_through(2)
        uow.channels.add(make_channel(1))
        uow.channels.add(make_channel(2, key_hash="key-hash-2", pbx_users={}))
        for employee_id, name in ((1, "Anna"), (2, "Boris"), (3, "Vera")):
            uow.employees.save(Employee(employee_id, name, True))
        uow.commit()
    return store


# --- the store ---------------------------------------------------------------------------------


def test_store_describes_itself(store: Store, backend: Backend) -> None:
    assert store.kind == ("sqlite" if backend.name == "sqlite" else "mongodb")
    assert store.single_writer is (backend.name == "sqlite")
    assert store.blobs is backend.blobs
    store.ping()


def test_a_committed_change_is_seen_by_another_store_and_survives_prepare(
    seeded: Store, backend: Backend
) -> None:
    call = add_call(seeded, pbx_call_id="p1")
    log_event(seeded, call)
    seeded.prepare()
    again = backend.open()
    again.prepare()
    try:
        assert read(again, lambda uow: uow.calls.get(call.call_id)) == call
        assert read(again, lambda uow: uow.channels.list()) == read(
            seeded, lambda uow: uow.channels.list()
        )
        assert read(again, lambda uow: uow.events.last_seq()) == 1
        with again.unit_of_work() as uow:
            later = new_call(uow)
            uow.commit()
        assert later.call_id > call.call_id
    finally:
        again.close()


# --- round trips -----------------------------------------------------------------------------


def test_call_round_trips_with_every_field(seeded: Store) -> None:
    created = utc_now() - minutes(10)
    with seeded.unit_of_work() as uow:
        contact = Contact(uow.contacts.next_id(), MOSCOW, MOSCOW, created, "Ivan")
        uow.contacts.add(contact)
        call = new_call(
            uow,
            created_at=created,
            channel_id=2,
            direction=Direction.OUTGOING,
            status=Status.ANSWERED,
            updated_at=created + minutes(5),
            pbx_call_id="pbx-1",
            user_id=2,
            pbx_user_id="102",
            audience=(3, 1, 2),
            viewers=(2, 1),
            history=[
                StatusChange(Status.RINGING, created),
                StatusChange(Status.IN_PROGRESS, created + minutes(1)),
                StatusChange(Status.ANSWERED, created + minutes(5)),
            ],
            answered_at=created + minutes(1),
            ended_at=created + minutes(5),
            expired=True,
            contact_id=contact.contact_id,
        )
        uow.commit()
    stored = read(seeded, lambda uow: uow.calls.get(call.call_id))
    assert stored == call
    assert stored is not None
    assert_utc(stored.created_at, stored.updated_at, stored.answered_at, stored.ended_at)
    assert_utc(*(h.at for h in stored.history))
    assert stored.audience == (3, 1, 2) and stored.viewers == (2, 1)


def test_call_round_trips_with_empty_fields(seeded: Store) -> None:
    call = add_call(seeded, phone="0042", phone_e164="", phone_key=DIGITS, history=[])
    stored = read(seeded, lambda uow: uow.calls.get(call.call_id))
    assert stored == call
    assert stored is not None
    assert stored.pbx_call_id is None and stored.user_id is None and stored.contact_id is None
    assert stored.answered_at is None and stored.ended_at is None
    assert stored.audience == () and stored.viewers == () and stored.history == []


def test_datetimes_come_back_to_the_millisecond(store: Store) -> None:
    precise = utc_now().replace(microsecond=123_456)
    with store.unit_of_work() as uow:
        contact = Contact(uow.contacts.next_id(), MOSCOW, MOSCOW, precise)
        uow.contacts.add(contact)
        uow.commit()
    stored = read(store, lambda uow: uow.contacts.get(contact.contact_id))
    assert stored is not None
    assert_utc(stored.created_at)
    assert abs(stored.created_at - precise) < timedelta(milliseconds=1)


def test_unknown_records_are_none(store: Store) -> None:
    def look(uow: UnitOfWork) -> list[object]:
        return [
            uow.calls.get(404),
            uow.calls.by_pbx_call_id(1, "nope"),
            uow.tickets.get(404),
            uow.contacts.get(404),
            uow.contacts.by_key(MOSCOW),
            uow.channels.get(404),
            uow.channels.by_key_hash("nope"),
            uow.departments.get(404),
            uow.tokens.get("nope"),
            uow.tokens.by_secret_hash("nope"),
            uow.idempotency.get(1, "nope"),
            uow.recordings.get("nope"),
        ]

    assert read(store, look) == [None] * 12
    assert read(store, lambda uow: uow.employees.get_many([1, 2])) == {}
    assert read(store, lambda uow: uow.groups.get_many([1])) == {}
    assert read(store, lambda uow: uow.recordings.of_call(404)) == []
    assert read(store, lambda uow: uow.calls.count()) == 0


def test_call_is_found_by_its_pbx_call_id_on_its_channel_only(seeded: Store) -> None:
    call = add_call(seeded, pbx_call_id="p-7")
    assert read(seeded, lambda uow: uow.calls.by_pbx_call_id(1, "p-7")) == call
    assert read(seeded, lambda uow: uow.calls.by_pbx_call_id(2, "p-7")) is None
    assert read(seeded, lambda uow: uow.calls.by_pbx_call_id(1, "p-8")) is None


def test_saved_call_replaces_the_stored_one_and_bumps_its_version(seeded: Store) -> None:
    call = add_call(seeded, audience=(1, 2), viewers=(1, 2))
    assert call.version == 0
    later = call.created_at + minutes(2)
    with seeded.unit_of_work() as uow:
        loaded = uow.calls.get(call.call_id)
        assert loaded is not None and loaded.version == 0
        loaded.apply(
            status=Status.IN_PROGRESS,
            user_id=2,
            pbx_user_id="102",
            telephony_ids={1, 2, 3},
            now=later,
        )
        uow.calls.save(loaded)
        assert loaded.version == 1
        uow.commit()
    stored = read(seeded, lambda uow: uow.calls.get(call.call_id))
    assert stored == loaded
    assert stored is not None and stored.version == 1
    assert stored.viewers == (2,) and stored.user_id == 2 and stored.answered_at == later
    with seeded.unit_of_work() as uow:
        stored.expire()
        uow.calls.save(stored)
        uow.commit()
    again = read(seeded, lambda uow: uow.calls.get(call.call_id))
    assert again == stored
    assert again is not None and again.version == 2 and again.expired and again.viewers == ()


def test_ticket_round_trips_and_save_replaces_executor_and_comments(seeded: Store) -> None:
    call = add_call(seeded)
    at = call.created_at
    stored = read(seeded, lambda uow: uow.tickets.get(call.ticket_id))
    assert stored == make_ticket(call)
    assert stored is not None and stored.executor_id is None and stored.comments == []
    assert_utc(stored.created_at)
    with seeded.unit_of_work() as uow:
        contact = Contact(uow.contacts.next_id(), MOSCOW, MOSCOW, at)
        uow.contacts.add(contact)
        changed = make_ticket(
            call,
            executor_id=3,
            contact_id=contact.contact_id,
            comments=[Comment("hello", at), Comment("call back", at + minutes(3), "employee:3")],
        )
        uow.tickets.save(changed)
        uow.commit()
    again = read(seeded, lambda uow: uow.tickets.get(call.ticket_id))
    assert again == changed
    assert again is not None
    assert [c.text for c in again.comments] == ["hello", "call back"]
    assert_utc(*(c.at for c in again.comments))


def test_contact_round_trips_and_is_found_by_key(store: Store) -> None:
    at = utc_now()
    with store.unit_of_work() as uow:
        moscow = Contact(uow.contacts.next_id(), MOSCOW, MOSCOW, at, "Ivan")
        digits = Contact(uow.contacts.next_id(), DIGITS, "", at + minutes(1))
        uow.contacts.add(moscow)
        uow.contacts.add(digits)
        uow.commit()
    assert read(store, lambda uow: uow.contacts.get(moscow.contact_id)) == moscow
    assert read(store, lambda uow: uow.contacts.by_key(DIGITS)) == digits
    assert read(store, lambda uow: uow.contacts.by_key(SPB)) is None
    renamed = dataclasses.replace(moscow, name="Ivan Petrov")
    with store.unit_of_work() as uow:
        uow.contacts.save(renamed)
        uow.commit()
    assert read(store, lambda uow: uow.contacts.by_key(MOSCOW)) == renamed


def test_contacts_are_listed_by_id_a_page_at_a_time_and_removed(store: Store) -> None:
    at = utc_now()
    with store.unit_of_work() as uow:
        contacts = [
            Contact(uow.contacts.next_id(), key, key, at, name)
            for key, name in ((SPB, "Olga"), (MOSCOW, "Ivan"), (DIGITS, ""))
        ]
        # Added out of id order: the listing is by id all the same.
        for contact in reversed(contacts):
            uow.contacts.add(contact)
        uow.commit()
    first, second, third = contacts
    assert read(store, lambda uow: uow.contacts.list()) == contacts
    assert read(store, lambda uow: uow.contacts.list(limit=2)) == [first, second]
    assert read(store, lambda uow: uow.contacts.list(after=first.contact_id)) == [second, third]
    assert read(store, lambda uow: uow.contacts.list(after=second.contact_id, limit=5)) == [third]
    assert read(store, lambda uow: uow.contacts.list(after=third.contact_id)) == []
    assert read(store, lambda uow: uow.contacts.list(limit=0)) == []

    with store.unit_of_work() as uow:
        assert uow.contacts.remove(second.contact_id) is True
        assert uow.contacts.remove(404) is False
        uow.commit()
    assert read(store, lambda uow: uow.contacts.get(second.contact_id)) is None
    assert read(store, lambda uow: uow.contacts.by_key(MOSCOW)) is None
    assert read(store, lambda uow: uow.contacts.list()) == [first, third]
    with store.unit_of_work() as uow:
        uow.contacts.remove(first.contact_id)
    # Not committed: the contact stays.
    assert read(store, lambda uow: uow.contacts.list()) == [first, third]
    # A removed contact's number may be added again, under a new id.
    with store.unit_of_work() as uow:
        again = Contact(uow.contacts.next_id(), MOSCOW, MOSCOW, at, "Ivan again")
        uow.contacts.add(again)
        uow.commit()
    assert again.contact_id > third.contact_id
    assert read(store, lambda uow: uow.contacts.by_key(MOSCOW)) == again


def test_channel_round_trips_and_save_replaces_it(store: Store) -> None:
    with store.unit_of_work() as uow:
        first = make_channel(uow.channels.next_id(), enabled=False)
        second = make_channel(uow.channels.next_id(), pbx_users={})
        # Added out of order: the list is by id all the same.
        uow.channels.add(second)
        uow.channels.add(first)
        uow.commit()
    assert read(store, lambda uow: uow.channels.get(first.channel_id)) == first
    assert read(store, lambda uow: uow.channels.by_key_hash(second.key_hash)) == second
    assert read(store, lambda uow: uow.channels.list()) == [first, second]
    changed = dataclasses.replace(
        first,
        name="Sales",
        department_id=2,
        enabled=True,
        key_hash="rotated",
        pbx_users={"102": 3, "205": 1},
    )
    with store.unit_of_work() as uow:
        uow.channels.save(changed)
        uow.commit()
    assert read(store, lambda uow: uow.channels.get(first.channel_id)) == changed
    assert read(store, lambda uow: uow.channels.by_key_hash("rotated")) == changed
    assert read(store, lambda uow: uow.channels.by_key_hash(first.key_hash)) is None
    stored = read(store, lambda uow: uow.channels.get(first.channel_id))
    assert stored is not None
    assert stored.pbx_users == {"102": 3, "205": 1}
    assert_utc(stored.created_at)


def test_channel_ids_are_reserved_through_seeded_ones(store: Store) -> None:
    with store.unit_of_work() as uow:
        uow.channels.reserve_ids_through(10)
        uow.channels.add(make_channel(10))
        uow.commit()
    with store.unit_of_work() as uow:
        assert uow.channels.next_id() > 10
        # Reserving below what was given out never goes back.
        uow.channels.reserve_ids_through(3)
        uow.commit()
    with store.unit_of_work() as uow:
        fresh = uow.channels.next_id()
        uow.channels.add(make_channel(fresh))
        uow.commit()
    assert fresh > 11
    assert [c.channel_id for c in read(store, lambda uow: uow.channels.list())] == [10, fresh]


def test_departments_are_saved_by_id(store: Store) -> None:
    with store.unit_of_work() as uow:
        uow.departments.save(Department(2, "Sales"))
        uow.departments.save(Department(1, "Support"))
        uow.commit()
    with store.unit_of_work() as uow:
        uow.departments.save(Department(2, "Sales and returns"))
        uow.commit()
    assert read(store, lambda uow: uow.departments.get(2)) == Department(2, "Sales and returns")
    listed = read(store, lambda uow: uow.departments.list())
    assert sorted(listed, key=lambda d: d.department_id) == [
        Department(1, "Support"),
        Department(2, "Sales and returns"),
    ]


def test_employees_are_saved_by_id_and_found_many_at_once(store: Store) -> None:
    anna, boris, gleb = (
        Employee(1, "Anna", True),
        Employee(2, "Boris", True),
        Employee(4, "Gleb", False),
    )
    with store.unit_of_work() as uow:
        for employee in (anna, boris, gleb):
            uow.employees.save(employee)
        uow.commit()
    assert read(store, lambda uow: uow.employees.get_many(iter([4, 1, 99]))) == {4: gleb, 1: anna}
    assert read(store, lambda uow: uow.employees.get_many([])) == {}
    assert read(store, lambda uow: uow.employees.with_telephony()) == {1: anna, 2: boris}
    boris_left = Employee(2, "Boris", False)
    with store.unit_of_work() as uow:
        uow.employees.save(boris_left)
        uow.commit()
    assert read(store, lambda uow: uow.employees.with_telephony()) == {1: anna}
    listed = read(store, lambda uow: uow.employees.list())
    assert sorted(listed, key=lambda e: e.employee_id) == [anna, boris_left, gleb]


def test_groups_keep_their_members_order(store: Store) -> None:
    night, day = Group(10, "Night", (3, 1, 2)), Group(20, "Day", ())
    with store.unit_of_work() as uow:
        uow.groups.save(night)
        uow.groups.save(day)
        uow.commit()
    assert read(store, lambda uow: uow.groups.get_many([10, 20, 30])) == {10: night, 20: day}
    moved = Group(10, "Night shift", (2, 3))
    with store.unit_of_work() as uow:
        uow.groups.save(moved)
        uow.commit()
    assert read(store, lambda uow: uow.groups.get_many(iter([10]))) == {10: moved}
    listed = read(store, lambda uow: uow.groups.list())
    assert sorted(listed, key=lambda g: g.group_id) == [moved, day]


def test_tokens_round_trip_and_only_unrevoked_ones_are_active(store: Store) -> None:
    at = utc_now()
    admin = make_token("t-admin", at, role="admin", employee_id=None, description="")
    service = make_token("t-service", at + minutes(1), role="service", employee_id=None)
    anna = make_token("t-anna", at + minutes(2))
    boris = make_token("t-boris", at + minutes(3), employee_id=2)
    with store.unit_of_work() as uow:
        # Neither the order added nor the ids follow creation; the list is oldest first.
        for token in (anna, boris, service, admin):
            uow.tokens.add(token)
        uow.commit()
    assert read(store, lambda uow: uow.tokens.get("t-anna")) == anna
    assert read(store, lambda uow: uow.tokens.by_secret_hash(admin.secret_hash)) == admin
    assert read(store, lambda uow: uow.tokens.list_active()) == [admin, service, anna, boris]
    revoked = dataclasses.replace(anna, revoked_at=at + minutes(5))
    with store.unit_of_work() as uow:
        uow.tokens.save(revoked)
        uow.commit()
    assert read(store, lambda uow: uow.tokens.get("t-anna")) == revoked
    assert read(store, lambda uow: uow.tokens.by_secret_hash(anna.secret_hash)) == revoked
    assert read(store, lambda uow: uow.tokens.list_active()) == [admin, service, boris]
    stored = read(store, lambda uow: uow.tokens.get("t-anna"))
    assert stored is not None
    assert_utc(stored.created_at, stored.revoked_at)


def test_idempotency_records_round_trip_with_their_reply(seeded: Store) -> None:
    call = add_call(seeded, pbx_call_id="p1", audience=(1,), viewers=(1,))
    at = utc_now()
    record = make_record(1, "key-1", at, make_view(call))
    other_channel = make_record(2, "key-1", at, make_view(call, contact=None, recordings=[]))
    with seeded.unit_of_work() as uow:
        uow.idempotency.add(record)
        uow.idempotency.add(other_channel)
        uow.commit()
    stored = read(seeded, lambda uow: uow.idempotency.get(1, "key-1"))
    assert stored == record
    assert stored is not None
    assert_utc(stored.created_at)
    assert read(seeded, lambda uow: uow.idempotency.get(2, "key-1")) == other_channel
    assert read(seeded, lambda uow: uow.idempotency.get(1, "key-2")) is None
    with seeded.unit_of_work() as uow:
        uow.idempotency.remove(1, "key-1")
        uow.idempotency.remove(1, "never-used")
        uow.commit()
    assert read(seeded, lambda uow: uow.idempotency.get(1, "key-1")) is None
    assert read(seeded, lambda uow: uow.idempotency.get(2, "key-1")) == other_channel
    # A removed key may be used again.
    reused = make_record(1, "key-1", at + minutes(1), make_view(call))
    with seeded.unit_of_work() as uow:
        uow.idempotency.add(reused)
        uow.commit()
    assert read(seeded, lambda uow: uow.idempotency.get(1, "key-1")) == reused


def test_idempotency_records_older_than_a_cutoff_are_removed(seeded: Store) -> None:
    call = add_call(seeded)
    now = utc_now()
    view = make_view(call)
    with seeded.unit_of_work() as uow:
        uow.idempotency.add(make_record(1, "old-1", now - minutes(30), view))
        uow.idempotency.add(make_record(2, "old-2", now - minutes(20), view))
        uow.idempotency.add(make_record(1, "new", now - minutes(5), view))
        uow.commit()
    with seeded.unit_of_work() as uow:
        removed = uow.idempotency.remove_older_than(now - minutes(10))
        uow.commit()
    assert removed == 2
    assert read(seeded, lambda uow: uow.idempotency.get(1, "old-1")) is None
    assert read(seeded, lambda uow: uow.idempotency.get(2, "old-2")) is None
    assert read(seeded, lambda uow: uow.idempotency.get(1, "new")) is not None


# --- the unit of work ----------------------------------------------------------------------------


def test_nothing_is_visible_before_commit(seeded: Store) -> None:
    def look(uow: UnitOfWork) -> tuple[Any, ...]:
        return (
            uow.channels.get(5),
            uow.calls.count(),
            uow.events.last_seq(),
            uow.idempotency.get(1, "k"),
        )

    with seeded.unit_of_work() as uow:
        uow.channels.add(make_channel(5, key_hash="key-hash-5"))
        call = new_call(uow)
        uow.events.add("created", make_view(call), [], utc_now())
        uow.idempotency.add(make_record(1, "k", utc_now(), make_view(call)))
        assert read_elsewhere(seeded, look) == (None, 0, 0, None)
        uow.commit()
        channel, count, last_seq, record = read_elsewhere(seeded, look)
    assert channel is not None and count == 1 and last_seq == 1 and record is not None
    assert read(seeded, lambda uow: uow.tickets.get(call.ticket_id)) == make_ticket(call)


def _write_a_bit_of_everything(uow: UnitOfWork) -> Call:
    uow.channels.add(make_channel(5, key_hash="key-hash-5"))
    uow.departments.save(Department(9, "Returns"))
    uow.employees.save(Employee(9, "Gleb", True))
    uow.groups.save(Group(9, "Everyone", (1, 9)))
    uow.tokens.add(make_token("t-9", utc_now()))
    uow.contacts.add(Contact(uow.contacts.next_id(), SPB, SPB, utc_now()))
    call = new_call(uow, pbx_call_id="p-9")
    uow.events.add("created", make_view(call), [CardEvent(1, CardChange.SHOW)], utc_now())
    uow.idempotency.add(make_record(1, "k-9", utc_now(), make_view(call)))
    uow.recordings.add(make_recording("rec-9", utc_now()))
    return call


def _nothing_of_everything(store: Store, call: Call) -> None:
    def look(uow: UnitOfWork) -> list[object]:
        return [
            uow.channels.get(5),
            uow.departments.get(9),
            uow.employees.get_many([9]) or None,
            uow.groups.get_many([9]) or None,
            uow.tokens.get("t-9"),
            uow.contacts.by_key(SPB),
            uow.calls.get(call.call_id),
            uow.calls.by_pbx_call_id(1, "p-9"),
            uow.tickets.get(call.ticket_id),
            uow.events.after(0) or None,
            uow.events.oldest_seq(),
            uow.idempotency.get(1, "k-9"),
            uow.recordings.get("rec-9"),
        ]

    assert read(store, look) == [None] * 13
    assert read(store, lambda uow: (uow.calls.count(), uow.events.last_seq())) == (0, 0)


def test_leaving_a_unit_without_commit_applies_nothing(seeded: Store) -> None:
    sink = CollectingSink()
    seeded.set_event_sink(sink)
    with seeded.unit_of_work() as uow:
        call = _write_a_bit_of_everything(uow)
    _nothing_of_everything(seeded, call)
    assert sink.events == []


def test_an_exception_inside_a_unit_applies_nothing_and_is_not_swallowed(seeded: Store) -> None:
    sink = CollectingSink()
    seeded.set_event_sink(sink)
    with pytest.raises(RuntimeError, match="half-way"), seeded.unit_of_work() as uow:
        call = _write_a_bit_of_everything(uow)
        raise RuntimeError("failed half-way")
    _nothing_of_everything(seeded, call)
    assert sink.events == []


def test_a_reading_unit_refuses_to_commit(seeded: Store) -> None:
    with seeded.reading() as uow:
        with pytest.raises(Exception) as refused:  # the port names no error type
            uow.commit()
        assert not isinstance(refused.value, StorageConflict)


def test_ids_are_unique_and_increasing_even_past_uncommitted_units(seeded: Store) -> None:
    store = seeded
    given: list[int] = []
    for commit in (True, False, True, True):
        with store.unit_of_work() as uow:
            calls = [new_call(uow) for _ in range(3)]
            if commit:
                uow.commit()
                given.extend(c.call_id for c in calls)
    # An uncommitted unit may leave a gap or have its ids given again; never an id stored before.
    assert given[0] > 0
    assert given == sorted(set(given))
    assert read(store, lambda uow: uow.calls.count()) == 9
    for next_id in (
        lambda uow: uow.tickets.next_id(),
        lambda uow: uow.contacts.next_id(),
        lambda uow: uow.channels.next_id(),
    ):
        ids: list[int] = []
        for _ in range(3):
            with store.unit_of_work() as uow:
                ids.append(next_id(uow))
                uow.commit()
        assert ids[0] > 0 and ids == sorted(set(ids))


# --- conflicts -------------------------------------------------------------------------------


def test_a_duplicate_pbx_call_id_on_a_channel_conflicts(seeded: Store) -> None:
    first = add_call(seeded, pbx_call_id="p1")
    with pytest.raises(StorageConflict), seeded.unit_of_work() as uow:
        duplicate = make_call(uow, pbx_call_id="p1")
        uow.tickets.add(make_ticket(duplicate))
        uow.calls.add(duplicate)
        uow.commit()
    assert read(seeded, lambda uow: uow.calls.by_pbx_call_id(1, "p1")) == first
    assert read(seeded, lambda uow: uow.calls.get(duplicate.call_id)) is None
    # Its ticket, added in the same unit, is not there either.
    assert read(seeded, lambda uow: uow.tickets.get(duplicate.ticket_id)) is None
    assert read(seeded, lambda uow: uow.calls.count()) == 1


def test_pbx_call_ids_are_unique_per_channel_and_none_never_collides(seeded: Store) -> None:
    with seeded.unit_of_work() as uow:
        on_first = new_call(uow, pbx_call_id="p1")
        on_second = new_call(uow, pbx_call_id="p1", channel_id=2)
        uow.commit()
    with seeded.unit_of_work() as uow:
        anonymous = [new_call(uow), new_call(uow)]
        uow.commit()
    with seeded.unit_of_work() as uow:
        anonymous.append(new_call(uow))
        uow.commit()
    assert read(seeded, lambda uow: uow.calls.by_pbx_call_id(1, "p1")) == on_first
    assert read(seeded, lambda uow: uow.calls.by_pbx_call_id(2, "p1")) == on_second
    assert read(seeded, lambda uow: uow.calls.count()) == 5
    assert read(seeded, lambda uow: [uow.calls.get(c.call_id) for c in anonymous]) == anonymous


def test_a_duplicate_contact_key_conflicts(store: Store) -> None:
    at = utc_now()
    with store.unit_of_work() as uow:
        first = Contact(uow.contacts.next_id(), MOSCOW, MOSCOW, at, "Ivan")
        uow.contacts.add(first)
        uow.commit()
    with pytest.raises(StorageConflict), store.unit_of_work() as uow:
        uow.departments.save(Department(3, "Written beside the duplicate"))
        uow.contacts.add(Contact(uow.contacts.next_id(), MOSCOW, MOSCOW, at, "Other"))
        uow.commit()
    assert read(store, lambda uow: uow.contacts.by_key(MOSCOW)) == first
    assert read(store, lambda uow: uow.departments.get(3)) is None


def test_a_channel_key_in_use_conflicts(store: Store) -> None:
    with store.unit_of_work() as uow:
        first, second = make_channel(uow.channels.next_id()), make_channel(uow.channels.next_id())
        uow.channels.add(first)
        uow.channels.add(second)
        uow.commit()
    with pytest.raises(StorageConflict), store.unit_of_work() as uow:
        third = make_channel(uow.channels.next_id(), key_hash=first.key_hash)
        uow.channels.add(third)
        uow.commit()
    with pytest.raises(StorageConflict), store.unit_of_work() as uow:
        uow.channels.save(dataclasses.replace(second, name="Renamed", key_hash=first.key_hash))
        uow.commit()
    assert read(store, lambda uow: uow.channels.list()) == [first, second]
    assert read(store, lambda uow: uow.channels.by_key_hash(first.key_hash)) == first


def test_a_duplicate_idempotency_key_conflicts(seeded: Store) -> None:
    call = add_call(seeded)
    record = make_record(1, "key-1", utc_now(), make_view(call))
    with seeded.unit_of_work() as uow:
        uow.idempotency.add(record)
        uow.commit()
    with pytest.raises(StorageConflict), seeded.unit_of_work() as uow:
        uow.events.add("created", make_view(call), [], utc_now())
        uow.idempotency.add(dataclasses.replace(record, fingerprint="other"))
        uow.commit()
    assert read(seeded, lambda uow: uow.idempotency.get(1, "key-1")) == record
    assert read(seeded, lambda uow: uow.events.last_seq()) == 0


def test_a_duplicate_token_id_or_secret_hash_conflicts(store: Store) -> None:
    token = make_token("t-1", utc_now())
    with store.unit_of_work() as uow:
        uow.tokens.add(token)
        uow.commit()
    for clash in (
        make_token("t-1", utc_now(), secret_hash="fresh"),
        make_token("t-2", utc_now(), secret_hash=token.secret_hash),
    ):
        with pytest.raises(StorageConflict), store.unit_of_work() as uow:
            uow.tokens.add(clash)
            uow.commit()
    assert read(store, lambda uow: uow.tokens.list_active()) == [token]


def test_a_call_saved_from_a_stale_version_conflicts_and_nothing_of_its_unit_applies(
    seeded: Store,
) -> None:
    call = add_call(seeded, audience=(1, 2), viewers=(1, 2))
    sink = CollectingSink()
    seeded.set_event_sink(sink)
    # Two requests read the same version of the call.
    first = read(seeded, lambda uow: uow.calls.get(call.call_id))
    second = read(seeded, lambda uow: uow.calls.get(call.call_id))
    assert first is not None and second is not None
    later = call.created_at + minutes(1)
    with seeded.unit_of_work() as uow:
        first.apply(
            status=Status.IN_PROGRESS,
            user_id=1,
            pbx_user_id=None,
            telephony_ids={1, 2, 3},
            now=later,
        )
        uow.calls.save(first)
        uow.commit()
    with pytest.raises(StorageConflict), seeded.unit_of_work() as uow:
        uow.tickets.save(make_ticket(call, executor_id=2, comments=[Comment("lost", later)]))
        uow.events.add("updated", make_view(second), [], later)
        second.apply(
            status=Status.MISSED, user_id=None, pbx_user_id=None, telephony_ids={1, 2, 3}, now=later
        )
        uow.calls.save(second)
        uow.commit()
    stored = read(seeded, lambda uow: uow.calls.get(call.call_id))
    assert stored is not None
    assert stored.status is Status.IN_PROGRESS and stored.user_id == 1 and stored.version == 1
    assert read(seeded, lambda uow: uow.tickets.get(call.ticket_id)) == make_ticket(call)
    assert read(seeded, lambda uow: uow.events.last_seq()) == 0
    assert sink.events == []
    # On fresh reads the same change goes through.
    with seeded.unit_of_work() as uow:
        fresh = uow.calls.get(call.call_id)
        assert fresh is not None
        fresh.apply(
            status=Status.MISSED, user_id=None, pbx_user_id=None, telephony_ids={1, 2, 3}, now=later
        )
        uow.calls.save(fresh)
        uow.commit()
    final = read(seeded, lambda uow: uow.calls.get(call.call_id))
    assert final is not None and final.status is Status.MISSED and final.version == 2


def test_a_call_saved_twice_from_one_read_conflicts_the_second_time(seeded: Store) -> None:
    call = add_call(seeded)
    stale = read(seeded, lambda uow: uow.calls.get(call.call_id))
    assert stale is not None
    with seeded.unit_of_work() as uow:
        uow.calls.save(dataclasses.replace(stale, phone="first"))
        uow.commit()
    with pytest.raises(StorageConflict), seeded.unit_of_work() as uow:
        uow.calls.save(dataclasses.replace(stale, phone="second"))
        uow.commit()
    stored = read(seeded, lambda uow: uow.calls.get(call.call_id))
    assert stored is not None and stored.phone == "first" and stored.version == 1


# --- the history -----------------------------------------------------------------------------

# (minutes after the start, channel, status, direction, phone key, audience, bound employee)
HISTORY: list[tuple[int, int, Status, Direction, str, tuple[int, ...], int | None]] = [
    (0, 1, Status.ANSWERED, Direction.INCOMING, MOSCOW, (1, 2), 1),
    (1, 1, Status.MISSED, Direction.INCOMING, SPB, (1, 2), None),
    (1, 2, Status.RINGING, Direction.OUTGOING, MOSCOW, (3,), 3),
    (1, 1, Status.BUSY, Direction.OUTGOING, MOSCOW, (), 2),
    (2, 2, Status.IN_PROGRESS, Direction.INCOMING, SPB, (2, 3), 3),
    (3, 1, Status.CANCELED, Direction.INCOMING, MOSCOW, (1,), None),
    (3, 1, Status.FAILED, Direction.OUTGOING, DIGITS, (2,), 2),
    (4, 2, Status.ANSWERED, Direction.INCOMING, MOSCOW, (1, 3), 1),
    (5, 1, Status.RINGING, Direction.INCOMING, SPB, (1, 2, 3), None),
    (5, 2, Status.ANSWERED, Direction.OUTGOING, DIGITS, (3,), 1),
    (6, 1, Status.ANSWERED, Direction.INCOMING, MOSCOW, (1,), 1),
    (7, 1, Status.MISSED, Direction.INCOMING, MOSCOW, (2, 3), None),
]


@pytest.fixture
def history(seeded: Store) -> tuple[datetime, dict[int, Call]]:
    """The calls of HISTORY by row, added in a shuffled order so that call ids
    do not follow creation times."""
    start = utc_now() - timedelta(days=1)
    rows = list(enumerate(HISTORY))
    random.Random(7).shuffle(rows)
    calls: dict[int, Call] = {}
    with seeded.unit_of_work() as uow:
        for row, (offset, channel_id, status, direction, phone_key, audience, user_id) in rows:
            created = start + minutes(offset)
            calls[row] = new_call(
                uow,
                created_at=created,
                channel_id=channel_id,
                status=status,
                direction=direction,
                phone_key=phone_key,
                audience=audience,
                user_id=user_id,
                history=[StatusChange(status, created)],
            )
        uow.commit()
    return start, calls


def _matches(query: CallQuery, call: Call) -> bool:
    return (
        (query.channel_id is None or call.channel_id == query.channel_id)
        and (query.phone_key is None or call.phone_key == query.phone_key)
        and (not query.statuses or call.status in query.statuses)
        and (query.direction is None or call.direction == query.direction)
        and (
            query.employee_id is None
            or query.employee_id in call.audience
            or call.user_id == query.employee_id
        )
        and (query.created_from is None or call.created_at >= query.created_from)
        and (query.created_to is None or call.created_at < query.created_to)
    )


def _newest_first(calls: Iterable[Call]) -> list[Call]:
    return sorted(calls, key=lambda c: (c.created_at, c.call_id), reverse=True)


def _page(store: Store, query: CallQuery, after: PageCursor | None, limit: int) -> list[Call]:
    return read(store, lambda uow: uow.calls.page(query, after, limit))


def _all_pages(store: Store, query: CallQuery, limit: int) -> list[list[Call]]:
    pages: list[list[Call]] = []
    cursor: PageCursor | None = None
    while True:
        page = _page(store, query, cursor, limit)
        if not page:
            return pages
        pages.append(page)
        cursor = PageCursor(page[-1].created_at, page[-1].call_id)
        assert len(pages) <= len(HISTORY), "paging does not end"


# Filters by name, as minutes after the start for the created range.
QUERIES: dict[str, dict[str, Any]] = {
    "everything": {},
    "channel": {"channel_id": 1},
    "phone": {"phone_key": MOSCOW},
    "unknown phone": {"phone_key": "+10000000000"},
    "one status": {"statuses": (Status.ANSWERED,)},
    "several statuses": {"statuses": (Status.MISSED, Status.CANCELED, Status.BUSY)},
    "direction": {"direction": Direction.OUTGOING},
    "employee 1": {"employee_id": 1},
    "employee 2": {"employee_id": 2},
    "employee 3": {"employee_id": 3},
    "nobody's": {"employee_id": 4},
    "from": {"created_from": 1},
    "to": {"created_to": 5},
    "range": {"created_from": 1, "created_to": 3},
    "combined": {
        "channel_id": 1,
        "phone_key": MOSCOW,
        "direction": Direction.INCOMING,
        "statuses": (Status.ANSWERED, Status.CANCELED, Status.MISSED),
        "employee_id": 1,
        "created_from": 0,
        "created_to": 7,
    },
    "combined elsewhere": {
        "channel_id": 2,
        "employee_id": 3,
        "statuses": (Status.RINGING, Status.IN_PROGRESS, Status.ANSWERED),
        "created_from": 2,
    },
}


def _query(start: datetime, filters: dict[str, Any]) -> CallQuery:
    fields = dict(filters)
    for name in ("created_from", "created_to"):
        if name in fields:
            fields[name] = start + minutes(fields[name])
    return CallQuery(**fields)


@pytest.mark.parametrize("filters", QUERIES.values(), ids=QUERIES.keys())
def test_history_pages_match_the_filters_newest_first(
    seeded: Store, history: tuple[datetime, dict[int, Call]], filters: dict[str, Any]
) -> None:
    start, rows = history
    calls = list(rows.values())
    query = _query(start, filters)
    expected = _newest_first(c for c in calls if _matches(query, c))
    for limit in (1, 2, 5, 100):
        pages = _all_pages(seeded, query, limit)
        assert [c for page in pages for c in page] == expected, f"limit {limit}"
        assert [len(p) for p in pages[:-1]] == [limit] * (len(pages) - 1), f"limit {limit}"


def test_history_filters_pick_the_calls_they_name(
    seeded: Store, history: tuple[datetime, dict[int, Call]]
) -> None:
    """The reference filter above, checked against hand-picked rows of HISTORY."""
    start, calls = history
    row_of = {c.call_id: row for row, c in calls.items()}

    def rows(filters: dict[str, Any]) -> list[int]:
        page = read(seeded, lambda uow: uow.calls.page(_query(start, filters), None, 100))
        return sorted(row_of[c.call_id] for c in page)

    # Employee 2 through the audience (rows 0, 1, 4, 6, 8, 11) and bound only (row 3).
    assert rows({"employee_id": 2}) == [0, 1, 3, 4, 6, 8, 11]
    # Employee 1 bound without being in the audience: row 9.
    assert rows({"employee_id": 1, "channel_id": 2}) == [7, 9]
    # created_from is inclusive, created_to exclusive.
    assert rows({"created_from": 3, "created_to": 5}) == [5, 6, 7]
    assert rows({"phone_key": DIGITS}) == [6, 9]
    assert rows(QUERIES["combined"]) == [0, 5, 10]


def test_ties_on_creation_time_are_broken_by_call_id(
    seeded: Store, history: tuple[datetime, dict[int, Call]]
) -> None:
    start, rows = history
    calls = list(rows.values())
    tied = sorted((c.call_id for c in calls if c.created_at == start + minutes(1)), reverse=True)
    assert len(tied) == 3
    query = _query(start, {"created_from": 1, "created_to": 2})
    assert [c.call_id for c in read(seeded, lambda uow: uow.calls.page(query, None, 10))] == tied
    one_by_one = [c.call_id for page in _all_pages(seeded, query, 1) for c in page]
    assert one_by_one == tied
    # A cursor inside the tie: the page goes on with lower ids of the same time, then older calls.
    middle = PageCursor(start + minutes(1), tied[1])
    after_middle = read(seeded, lambda uow: uow.calls.page(CallQuery(), middle, 10))
    assert [c.call_id for c in after_middle] == [
        tied[2],
        *(c.call_id for c in calls if c.created_at == start),
    ]


def test_a_cursor_need_not_be_a_stored_call(
    seeded: Store, history: tuple[datetime, dict[int, Call]]
) -> None:
    start, rows = history
    calls = list(rows.values())
    cursor = PageCursor(start + minutes(4) + timedelta(seconds=30), 10**9)
    page = read(seeded, lambda uow: uow.calls.page(CallQuery(), cursor, 100))
    assert page == _newest_first(c for c in calls if c.created_at <= start + minutes(4))
    newest = _newest_first(calls)[0]
    past_the_end = PageCursor(start, 0)
    assert read(seeded, lambda uow: uow.calls.page(CallQuery(), past_the_end, 100)) == []
    assert read(seeded, lambda uow: uow.calls.page(CallQuery(), None, 1)) == [newest]
    assert read(seeded, lambda uow: uow.calls.count()) == len(HISTORY)


# --- cards, expiry, active calls ---------------------------------------------------------------


def test_shown_to_lists_the_calls_whose_card_an_employee_sees(seeded: Store) -> None:
    with seeded.unit_of_work() as uow:
        both = new_call(uow, audience=(1, 2), viewers=(1, 2))
        boris = new_call(uow, audience=(1, 2), viewers=(2,))
        nobody = new_call(uow, audience=(1,), status=Status.MISSED)
        anna = new_call(uow, audience=(1,), viewers=(1,))
        uow.commit()
    assert read(seeded, lambda uow: uow.calls.shown_to(1)) == [both, anna]
    assert read(seeded, lambda uow: uow.calls.shown_to(2)) == [both, boris]
    assert read(seeded, lambda uow: uow.calls.shown_to(3)) == []
    assert nobody.viewers == ()
    with seeded.unit_of_work() as uow:
        both.expire()
        uow.calls.save(both)
        uow.commit()
    assert read(seeded, lambda uow: uow.calls.shown_to(1)) == [anna]


def test_stale_calls_are_those_in_the_status_not_updated_since(seeded: Store) -> None:
    cutoff = utc_now() - minutes(30)
    with seeded.unit_of_work() as uow:

        def at(updated: datetime, **fields: Any) -> Call:
            return new_call(uow, created_at=updated - minutes(1), updated_at=updated, **fields)

        before = at(cutoff - minutes(1))
        exactly = at(cutoff)
        after = at(cutoff + timedelta(milliseconds=1))
        at(cutoff - minutes(5), expired=True)
        talking = at(cutoff - minutes(1), status=Status.IN_PROGRESS)
        at(cutoff - minutes(1), status=Status.ANSWERED)
        uow.commit()

    def stale(status: Status, moment: datetime) -> list[int]:
        found = read(seeded, lambda uow: uow.calls.stale(status, moment))
        return sorted(c.call_id for c in found)

    assert stale(Status.RINGING, cutoff) == sorted([before.call_id, exactly.call_id])
    assert stale(Status.IN_PROGRESS, cutoff) == [talking.call_id]
    assert stale(Status.ANSWERED, cutoff - minutes(10)) == []
    later = stale(Status.RINGING, cutoff + minutes(1))
    assert later == sorted([before.call_id, exactly.call_id, after.call_id])
    found = read(seeded, lambda uow: uow.calls.stale(Status.IN_PROGRESS, cutoff))
    assert found == [talking]


def test_active_calls_are_every_call_ringing_or_in_progress(seeded: Store) -> None:
    with seeded.unit_of_work() as uow:
        ringing = new_call(uow)
        talking = new_call(uow, status=Status.IN_PROGRESS)
        hidden = new_call(uow, expired=True)
        for status in (Status.ANSWERED, Status.MISSED, Status.BUSY, Status.CANCELED, Status.FAILED):
            new_call(uow, status=status)
        uow.commit()
    active = read(seeded, lambda uow: uow.calls.active())
    assert sorted(active, key=lambda c: c.call_id) == [ringing, talking, hidden]
    assert read(seeded, lambda uow: uow.calls.count()) == 8


# --- the event log ---------------------------------------------------------------------------


def test_events_get_consecutive_seqs_across_units(seeded: Store) -> None:
    call = add_call(seeded)
    assert read(seeded, lambda uow: (uow.events.last_seq(), uow.events.oldest_seq())) == (0, None)
    at = utc_now()
    with seeded.unit_of_work() as uow:
        uow.events.add("created", make_view(call), [CardEvent(1, CardChange.SHOW)], at)
        uow.events.add("updated", make_view(call), [], at)
        uow.commit()
    # A unit left without commit gives out no seq.
    with seeded.unit_of_work() as uow:
        uow.events.add("updated", make_view(call), [], at)
    log_event(seeded, call, at=at + minutes(1), kind="expired")
    events = read(seeded, lambda uow: uow.events.after(0))
    assert [e.seq for e in events] == [1, 2, 3]
    assert [e.kind for e in events] == ["created", "updated", "expired"]
    assert read(seeded, lambda uow: (uow.events.last_seq(), uow.events.oldest_seq())) == (3, 1)


def test_an_event_carries_its_view_card_events_and_time(seeded: Store) -> None:
    call = add_call(seeded, audience=(1, 2), viewers=(2,), user_id=2)
    view = make_view(call)
    cards = [
        CardEvent(2, CardChange.UPDATE),
        CardEvent(1, CardChange.HIDE, "assigned"),
    ]
    at = utc_now()
    with seeded.unit_of_work() as uow:
        uow.events.add("updated", view, iter(cards), at)
        uow.commit()
    [event] = read(seeded, lambda uow: uow.events.after(0))
    assert event == PublishedEvent(
        seq=1, kind="updated", view=view, card_events=tuple(cards), at=at
    )
    assert_utc(event.at, event.view.call.created_at, event.view.ticket.comments[0].at)


def test_events_after_a_seq_and_for_one_employee(seeded: Store) -> None:
    call = add_call(seeded)
    log_event(seeded, call, [CardEvent(1, CardChange.SHOW), CardEvent(2, CardChange.SHOW)])
    log_event(seeded, call, [CardEvent(2, CardChange.UPDATE)])
    log_event(seeded, call, [])
    log_event(seeded, call, [CardEvent(1, CardChange.HIDE, "final")])

    def seqs(after: int, employee_id: int | None = None) -> list[int]:
        return [e.seq for e in read(seeded, lambda uow: uow.events.after(after, employee_id))]

    assert seqs(0) == [1, 2, 3, 4]
    assert seqs(2) == [3, 4]
    assert seqs(4) == []
    assert seqs(0, 1) == [1, 4]
    assert seqs(1, 1) == [4]
    assert seqs(0, 2) == [1, 2]
    assert seqs(2, 2) == []
    assert seqs(0, 3) == []


def test_removing_old_events_keeps_the_last_seq(seeded: Store) -> None:
    call = add_call(seeded)
    now = utc_now()
    for age in (50, 40, 30, 20, 10):
        log_event(seeded, call, at=now - minutes(age))
    with seeded.unit_of_work() as uow:
        assert uow.events.remove_through(2) == 2
        uow.commit()
    assert read(seeded, lambda uow: (uow.events.oldest_seq(), uow.events.last_seq())) == (3, 5)
    with seeded.unit_of_work() as uow:
        assert uow.events.remove_older_than(now - minutes(15)) == 2
        uow.commit()
    assert [e.seq for e in read(seeded, lambda uow: uow.events.after(0))] == [5]
    with seeded.unit_of_work() as uow:
        assert uow.events.remove_through(5) == 1
        uow.commit()
    assert read(seeded, lambda uow: (uow.events.oldest_seq(), uow.events.last_seq())) == (None, 5)
    assert read(seeded, lambda uow: uow.events.after(0)) == []
    log_event(seeded, call)
    assert [e.seq for e in read(seeded, lambda uow: uow.events.after(0))] == [6]


def test_the_event_sink_gets_committed_events_in_seq_order(seeded: Store) -> None:
    call = add_call(seeded)
    sink = CollectingSink()
    seeded.set_event_sink(sink)
    views = [make_view(call), make_view(call, user_name="Boris"), make_view(call, contact=None)]
    at = utc_now()
    with seeded.unit_of_work() as uow:
        uow.events.add("created", views[0], [CardEvent(1, CardChange.SHOW)], at)
        uow.events.add("updated", views[1], [], at)
        assert sink.events == []
        uow.commit()
    with seeded.unit_of_work() as uow:
        uow.events.add("updated", views[2], [], at)
    log_event(seeded, call, [], at)
    assert sink.seqs == [1, 2, 3]
    assert [e.view for e in sink.events[:2]] == views[:2]
    assert sink.events == read(seeded, lambda uow: uow.events.after(0))
    assert set(sink.threads) == {threading.get_ident()}
    # What the caller does with its objects afterwards changes nothing published.
    views[0].call.history.append(StatusChange(Status.ANSWERED, at))
    views[0].call.status = Status.ANSWERED
    views[0].ticket.comments.append(Comment("later", at))
    views[0].recordings.clear()
    assert sink.events == read(seeded, lambda uow: uow.events.after(0))
    seeded.set_event_sink(None)
    log_event(seeded, call)
    assert sink.seqs == [1, 2, 3]


@ON_ATOMIC_BACKENDS
def test_events_committed_from_many_threads_reach_the_sink_in_seq_order(seeded: Store) -> None:
    call = add_call(seeded)
    sink = CollectingSink()
    seeded.set_event_sink(sink)

    def work(n: int) -> None:
        for _ in range(8):
            log_event(seeded, call, [CardEvent(n, CardChange.UPDATE)])

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(work, range(1, 5)))
    assert sink.seqs == list(range(1, 33))
    assert [e.seq for e in read(seeded, lambda uow: uow.events.after(0))] == sink.seqs
    per_employee = read(seeded, lambda uow: [len(uow.events.after(0, n)) for n in range(1, 5)])
    assert per_employee == [8, 8, 8, 8]


# --- retention ---------------------------------------------------------------------------------


def test_remove_expired_drops_idempotency_records_and_events_past_retention(
    seeded: Store,
) -> None:
    call = add_call(seeded)
    now = utc_now()
    view = make_view(call)
    with seeded.unit_of_work() as uow:
        uow.idempotency.add(make_record(1, "old", now - IDEMPOTENCY_TTL - minutes(60), view))
        uow.idempotency.add(make_record(1, "new", now - minutes(60), view))
        uow.commit()
    log_event(seeded, call, at=now - EVENT_TTL - minutes(60))
    log_event(seeded, call, at=now - minutes(60))
    removed = seeded.remove_expired(now)
    # Where the database has TTL indexes of its own (MongoDB, mongomock too), they may have
    # dropped some first; SQLite has none.
    assert removed == 2 if seeded.kind == "sqlite" else 0 <= removed <= 2
    assert read(seeded, lambda uow: uow.idempotency.get(1, "old")) is None
    assert read(seeded, lambda uow: uow.idempotency.get(1, "new")) is not None
    assert [e.seq for e in read(seeded, lambda uow: uow.events.after(0))] == [2]
    assert read(seeded, lambda uow: uow.events.last_seq()) == 2


# --- recordings ----------------------------------------------------------------------------------


def test_recordings_round_trip_and_a_call_takes_them(seeded: Store) -> None:
    call = add_call(seeded)
    at = utc_now() - minutes(30)
    # Ids that do not sort in the order the recordings were made.
    first = make_recording("rec-b", at)
    second = make_recording("rec-c", at + minutes(1), duration_seconds=None, file_name="")
    third = make_recording("rec-a", at + minutes(2), format="wav", content_type="audio/wav")
    with seeded.unit_of_work() as uow:
        for recording in (third, first, second):
            uow.recordings.add(recording)
        uow.commit()
    assert read(seeded, lambda uow: uow.recordings.get("rec-c")) == second
    assert read(seeded, lambda uow: uow.recordings.get("rec-a")) == third
    assert sorted(read(seeded, lambda uow: list(uow.recordings.ids()))) == [
        "rec-a",
        "rec-b",
        "rec-c",
    ]
    assert read(seeded, lambda uow: uow.recordings.of_call(call.call_id)) == []
    taken = [dataclasses.replace(r, call_id=call.call_id) for r in (third, first)]
    with seeded.unit_of_work() as uow:
        for recording in taken:
            uow.recordings.save(recording)
        uow.commit()
    stored = read(seeded, lambda uow: uow.recordings.get("rec-a"))
    assert stored == taken[0]
    assert stored is not None and stored.attached
    assert_utc(stored.created_at)
    assert read(seeded, lambda uow: uow.recordings.of_call(call.call_id)) == [taken[1], taken[0]]
    assert read(seeded, lambda uow: uow.recordings.get("rec-c")) == second


def test_unattached_recordings_are_found_by_age_and_removed(seeded: Store) -> None:
    call = add_call(seeded)
    cutoff = utc_now() - minutes(30)
    with seeded.unit_of_work() as uow:
        uow.recordings.add(make_recording("old", cutoff - minutes(5)))
        uow.recordings.add(make_recording("at-cutoff", cutoff))
        uow.recordings.add(make_recording("young", cutoff + timedelta(milliseconds=1)))
        uow.recordings.add(make_recording("taken", cutoff - minutes(9), call_id=call.call_id))
        uow.commit()
    found = read(seeded, lambda uow: uow.recordings.unattached_before(cutoff))
    assert sorted(found) == ["at-cutoff", "old"]
    with seeded.unit_of_work() as uow:
        assert uow.recordings.remove("old") is True
        assert uow.recordings.remove("never-stored") is False
        uow.commit()
    assert read(seeded, lambda uow: uow.recordings.get("old")) is None
    assert read(seeded, lambda uow: uow.recordings.unattached_before(cutoff)) == ["at-cutoff"]
    assert sorted(read(seeded, lambda uow: list(uow.recordings.ids()))) == [
        "at-cutoff",
        "taken",
        "young",
    ]
    with seeded.unit_of_work() as uow:
        uow.recordings.remove("taken")
    # Not committed: the call keeps its recording.
    assert [
        r.recording_id for r in read(seeded, lambda uow: uow.recordings.of_call(call.call_id))
    ] == ["taken"]


# --- concurrency ---------------------------------------------------------------------------------


@ON_ATOMIC_BACKENDS
def test_units_committed_from_many_threads_all_apply_with_unique_ids(seeded: Store) -> None:
    def work(thread: int) -> list[Call]:
        calls = []
        for n in range(10):
            with seeded.unit_of_work() as uow:
                calls.append(new_call(uow, pbx_call_id=f"t{thread}-{n}"))
                uow.commit()
        return calls

    with ThreadPoolExecutor(4) as pool:
        per_thread = list(pool.map(work, range(4)))
    calls = [c for made in per_thread for c in made]
    for made in per_thread:
        ids = [c.call_id for c in made]
        assert ids == sorted(ids)
    assert len({c.call_id for c in calls}) == 40
    assert len({c.ticket_id for c in calls}) == 40
    assert read(seeded, lambda uow: uow.calls.count()) == 40
    stored = read(seeded, lambda uow: uow.calls.page(CallQuery(), None, 100))
    assert sorted(stored, key=lambda c: c.call_id) == sorted(calls, key=lambda c: c.call_id)
    tickets = read(seeded, lambda uow: [uow.tickets.get(c.ticket_id) for c in calls])
    assert tickets == [make_ticket(c) for c in calls]


@ON_ATOMIC_BACKENDS
def test_concurrent_saves_of_one_call_lose_no_change(seeded: Store) -> None:
    call = add_call(seeded)

    def work(employee_id: int) -> int:
        conflicts = 0
        for _ in range(5):
            while True:
                try:
                    with seeded.unit_of_work() as uow:
                        current = uow.calls.get(call.call_id)
                        assert current is not None
                        current.audience = (*current.audience, employee_id)
                        uow.calls.save(current)
                        uow.commit()
                    break
                except StorageConflict:
                    conflicts += 1
                    assert conflicts < 500, "a unit never got through"
        return conflicts

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(work, range(1, 5)))
    stored = read(seeded, lambda uow: uow.calls.get(call.call_id))
    assert stored is not None and stored.version == 20
    assert sorted(stored.audience) == sorted([1, 2, 3, 4] * 5)
