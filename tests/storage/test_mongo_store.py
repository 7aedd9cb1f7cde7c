"""What the MongoDB adapter adds to the port's contract: its indexes, all-or-nothing
units (undo on mongomock, transactions on a replica set), events reaching the sink
in seq order, and query plans on indexes.

Runs on mongomock always and on a real MongoDB when VATS_TEST_MONGODB_URI is set.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mongomock
import pymongo
import pytest
from pymongo import monitoring
from pymongo.errors import InvalidOperation

from core.domain import CardChange, CardEvent, Direction, Employee, Status, StatusChange
from core.model import (
    Call,
    CallQuery,
    CallView,
    Channel,
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
from core.recordings.blobs import FileBlobStore
from core.storage.mongo import GridFSBlobStore, MongoStore
from core.storage.port import StorageConflict, UnitOfWork
from tests.storage.event_sink import Sink

MONGODB_URI = os.environ.get("VATS_TEST_MONGODB_URI")
DAY = 24 * 3600


class CommandLog(monitoring.CommandListener):
    """Every command the client sent, as sent."""

    def __init__(self) -> None:
        self.commands: list[monitoring.CommandStartedEvent] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.commands.append(event)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def named(self, name: str) -> list[dict[str, Any]]:
        return [dict(e.command) for e in self.commands if e.command_name == name]


@dataclasses.dataclass
class Server:
    store: MongoStore
    # Only on a real server: mongomock sends no commands.
    log: CommandLog | None = None


@pytest.fixture(params=["mongomock", pytest.param("mongodb", marks=pytest.mark.mongodb)])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    if request.param == "mongomock":
        client: Any = mongomock.MongoClient(tz_aware=True)
        store = MongoStore(client["vats"], blobs=FileBlobStore(tmp_path))
        store.prepare()
        yield Server(store)
        return
    yield from _real_server(tmp_path)


@pytest.fixture
def real(tmp_path: Path) -> Iterator[Server]:
    yield from _real_server(tmp_path)


def _real_server(tmp_path: Path) -> Iterator[Server]:
    if not MONGODB_URI:
        pytest.skip("VATS_TEST_MONGODB_URI is not set")
    log = CommandLog()
    client: pymongo.MongoClient[Any] = pymongo.MongoClient(
        MONGODB_URI, tz_aware=True, w="majority", event_listeners=[log]
    )
    name = f"vats_test_{uuid.uuid4().hex[:8]}"
    store = MongoStore(client[name], blobs=FileBlobStore(tmp_path))
    try:
        store.prepare()
        yield Server(store, log)
    finally:
        client.drop_database(name)
        client.close()


@pytest.fixture
def store(server: Server) -> MongoStore:
    return server.store


# --- records ---------------------------------------------------------------------------------


def make_call(call_id: int, **fields: Any) -> Call:
    now = utc_now()
    call = Call(
        call_id=call_id,
        channel_id=1,
        direction=Direction.INCOMING,
        phone="+74951234567",
        status=Status.RINGING,
        created_at=now,
        updated_at=now,
        history=[StatusChange(Status.RINGING, now)],
        audience=(1, 2),
        viewers=(1, 2),
        ticket_id=call_id,
        phone_e164="+74951234567",
        phone_key="+74951234567",
    )
    return dataclasses.replace(call, **fields)


def make_ticket(call: Call) -> Ticket:
    return Ticket(
        ticket_id=call.ticket_id,
        call_id=call.call_id,
        channel_id=call.channel_id,
        department_id=1,
        created_at=call.created_at,
    )


def make_view(call: Call) -> CallView:
    return CallView(call, make_ticket(call), None, channel_name="Line 1", user_name="")


def make_recording(recording_id: str, **fields: Any) -> Recording:
    recording = Recording(
        recording_id=recording_id,
        channel_id=1,
        format="mp3",
        content_type="audio/mpeg",
        size=1000,
        sha256="0" * 64,
        created_at=utc_now(),
    )
    return dataclasses.replace(recording, **fields)


def read(store: MongoStore) -> UnitOfWork:
    return store.reading()


@dataclasses.dataclass
class Before:
    """What a test stored before the unit of work that is to fail."""

    call: Call
    ticket: Ticket
    employee: Employee
    recording: Recording
    record: IdempotencyRecord


def store_before(store: MongoStore) -> Before:
    call = make_call(1, pbx_call_id="pbx-1")
    ticket = make_ticket(call)
    employee = Employee(1, "Anna", telephony=True)
    recording = make_recording("rec1")
    record = IdempotencyRecord(1, "key-1", "f" * 64, utc_now(), Reply(make_view(call), True))
    with store.unit_of_work() as uow:
        uow.calls.add(call)
        uow.tickets.add(ticket)
        uow.employees.save(employee)
        uow.recordings.add(recording)
        uow.idempotency.add(record)
        uow.commit()
    return Before(call, ticket, employee, recording, record)


def write_everything_but_the_last(uow: UnitOfWork, before: Before) -> None:
    """One of every kind of write the adapter applies, each over stored records."""
    uow.calls.add(make_call(2, pbx_call_id="pbx-2"))
    uow.tickets.save(dataclasses.replace(before.ticket, executor_id=7))
    uow.employees.save(Employee(1, "Anna Petrova", telephony=False))
    uow.employees.save(Employee(2, "Boris", telephony=True))
    uow.groups.save(Group(10, "First line", (1, 2)))
    changed = dataclasses.replace(before.call, status=Status.ANSWERED)
    uow.calls.save(changed)
    assert uow.recordings.remove("rec1") is True
    uow.idempotency.remove(1, "key-1")
    uow.events.add("updated", make_view(changed), [CardEvent(1, CardChange.HIDE)], utc_now())


def assert_nothing_changed(store: MongoStore, before: Before) -> None:
    with read(store) as uow:
        assert uow.calls.get(1) == before.call
        assert uow.calls.get(2) is None
        assert uow.tickets.get(before.ticket.ticket_id) == before.ticket
        assert uow.employees.list() == [before.employee]
        assert uow.groups.list() == []
        assert uow.recordings.get("rec1") == before.recording
        assert uow.idempotency.get(1, "key-1") == before.record
        assert uow.events.after(0) == []
        assert uow.events.last_seq() == 0


# --- indexes -----------------------------------------------------------------------------------


def indexes(store: MongoStore, collection: str) -> dict[tuple[tuple[str, int], ...], Any]:
    """A collection's indexes by their keys."""
    found = store.database[collection].index_information()
    return {tuple((k, int(d)) for k, d in info["key"]): info for info in found.values()}


def newest_first(key: str) -> tuple[tuple[str, int], ...]:
    return ((key, 1), ("created_at", -1), ("_id", -1))


def test_prepare_creates_an_index_for_every_query(store: MongoStore) -> None:
    calls = indexes(store, "calls")
    pbx = calls[(("channel_id", 1), ("pbx_call_id", 1))]
    assert pbx["unique"] is True
    assert pbx["partialFilterExpression"] == {"pbx_call_id": {"$type": "string"}}
    assert (("created_at", -1), ("_id", -1)) in calls
    for key in ("channel_id", "phone_key", "status", "direction", "audience", "user_id"):
        assert newest_first(key) in calls, key
    assert (("viewers", 1), ("_id", 1)) in calls
    assert (("status", 1), ("expired", 1), ("updated_at", 1), ("_id", 1)) in calls

    events = indexes(store, "events")
    assert events[(("at", 1),)]["expireAfterSeconds"] == 2 * DAY
    assert (("card_viewers", 1), ("_id", 1)) in events
    assert indexes(store, "idempotency")[(("created_at", 1),)]["expireAfterSeconds"] == DAY

    for collection, key in (
        ("contacts", "key"),
        ("channels", "key_hash"),
        ("tokens", "secret_hash"),
    ):
        assert indexes(store, collection)[((key, 1),)]["unique"] is True, collection
    assert (("revoked_at", 1), ("created_at", 1), ("_id", 1)) in indexes(store, "tokens")
    assert (("call_id", 1),) in indexes(store, "tickets")
    assert (("telephony", 1),) in indexes(store, "employees")
    assert (("members", 1),) in indexes(store, "groups")
    assert (("call_id", 1), ("created_at", 1), ("_id", 1)) in indexes(store, "recordings")


def test_prepare_runs_again_on_a_prepared_database(store: MongoStore) -> None:
    first = {name: indexes(store, name) for name in ("calls", "events", "tokens")}

    store.prepare()

    assert {name: indexes(store, name) for name in ("calls", "events", "tokens")} == first


# --- all or nothing ------------------------------------------------------------------------------


def test_a_duplicate_pbx_call_id_last_in_a_unit_leaves_nothing_of_the_unit(
    store: MongoStore,
) -> None:
    before = store_before(store)
    sink = Sink()
    store.set_event_sink(sink)

    with pytest.raises(StorageConflict), store.unit_of_work() as uow:
        write_everything_but_the_last(uow, before)
        uow.calls.add(make_call(3, pbx_call_id="pbx-1"))
        uow.commit()

    assert_nothing_changed(store, before)
    assert sink.events == []


def test_a_stale_save_last_in_a_unit_leaves_nothing_of_the_unit(store: MongoStore) -> None:
    before = store_before(store)
    with store.unit_of_work() as other:
        moved_on = dataclasses.replace(before.call)
        other.calls.save(moved_on)
        other.commit()
    before.call = moved_on

    with pytest.raises(StorageConflict), store.unit_of_work() as uow:
        write_everything_but_the_last(uow, before)
        uow.calls.save(dataclasses.replace(moved_on, version=0, status=Status.MISSED))
        uow.commit()

    assert_nothing_changed(store, before)


def test_a_unit_that_fails_for_another_reason_raises_it_and_leaves_nothing(
    store: MongoStore,
) -> None:
    before = store_before(store)

    # BSON holds 8-byte integers at most: the last write cannot be encoded.
    with pytest.raises(OverflowError), store.unit_of_work() as uow:
        write_everything_but_the_last(uow, before)
        uow.recordings.add(make_recording("rec2", size=2**70))
        uow.commit()

    assert_nothing_changed(store, before)
    with read(store) as uow:
        assert uow.recordings.get("rec2") is None


def test_a_unit_left_without_commit_writes_nothing(store: MongoStore) -> None:
    before = store_before(store)

    with store.unit_of_work() as uow:
        write_everything_but_the_last(uow, before)

    assert_nothing_changed(store, before)


# --- events ------------------------------------------------------------------------------------


# Only on a real server: mongomock's counter bump is a read and then a write, so racing
# threads may take one seq twice (tests/storage/storage_marks.py).
@pytest.mark.parametrize(
    "server", [pytest.param("mongodb", marks=pytest.mark.mongodb)], indirect=True
)
def test_concurrent_units_publish_their_events_in_seq_order(store: MongoStore) -> None:
    sink = Sink()
    store.set_event_sink(sink)
    view = make_view(make_call(1))

    def commit_events(worker: int) -> None:
        for _ in range(10):
            with store.unit_of_work() as uow:
                uow.events.add("updated", view, [CardEvent(worker, CardChange.UPDATE)], utc_now())
                uow.events.add("updated", view, [], utc_now())
                uow.commit()

    threads = [threading.Thread(target=commit_events, args=(w,)) for w in range(1, 7)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [e.seq for e in sink.events] == list(range(1, 121))
    with read(store) as uow:
        assert uow.events.after(0) == sink.events
        assert uow.events.last_seq() == 120
        assert [e.seq for e in uow.events.after(0, employee_id=3)] == [
            e.seq for e in sink.events if e.card_events and e.card_events[0].employee_id == 3
        ]


def test_a_failing_sink_does_not_undo_a_committed_unit(
    store: MongoStore, caplog: pytest.LogCaptureFixture
) -> None:
    class BrokenSink:
        def publish(self, event: PublishedEvent) -> None:
            raise RuntimeError("subscriber gone")

    store.set_event_sink(BrokenSink())
    call = make_call(1)

    with caplog.at_level(logging.ERROR, logger="vats.storage"), store.unit_of_work() as uow:
        uow.calls.add(call)
        uow.events.add("created", make_view(call), [CardEvent(1, CardChange.SHOW)], utc_now())
        uow.commit()

    with read(store) as reading:
        assert reading.calls.get(1) == call
        assert [e.seq for e in reading.events.after(0)] == [1]
    assert "publishing event 1 failed" in caplog.text


# --- documents -----------------------------------------------------------------------------------


def test_pbx_user_ids_keep_characters_that_field_names_cannot(store: MongoStore) -> None:
    channel = Channel(
        channel_id=1,
        name="Line 1",
        department_id=1,
        key_hash="k" * 64,
        created_at=utc_now(),
        pbx_users={"1.01": 1, "$ext": 2, "101": 3},
    )
    with store.unit_of_work() as uow:
        uow.channels.add(channel)
        uow.commit()

    with read(store) as uow:
        assert uow.channels.get(1) == channel


def test_mongomock_has_no_transactions_and_keeps_its_client_open(tmp_path: Path) -> None:
    client: Any = mongomock.MongoClient(tz_aware=True)
    store = MongoStore(client["vats"], blobs=FileBlobStore(tmp_path))

    assert store.supports_transactions is False
    assert store.kind == "mongodb" and store.single_writer is False
    store.close()
    store.ping()


# --- a real server only --------------------------------------------------------------------------


def _seed_every_record(store: MongoStore) -> None:
    with store.unit_of_work() as uow:
        for call_id in range(1, 21):
            call = make_call(
                call_id,
                pbx_call_id=f"pbx-{call_id}",
                user_id=call_id % 3 or None,
                status=Status.RINGING if call_id % 2 else Status.ANSWERED,
            )
            uow.calls.add(call)
            uow.tickets.add(make_ticket(call))
            uow.events.add("created", make_view(call), [CardEvent(1, CardChange.SHOW)], utc_now())
        uow.contacts.add(Contact(1, "+74951234567", "+74951234567", utc_now()))
        uow.channels.add(Channel(1, "Line 1", 1, "k" * 64, utc_now(), pbx_users={"101": 1}))
        uow.departments.save(Department(1, "Support"))
        uow.employees.save(Employee(1, "Anna", telephony=True))
        uow.groups.save(Group(10, "First line", (1,)))
        uow.tokens.add(Token("t1", "s" * 64, "admin", utc_now()))
        uow.recordings.add(make_recording("rec1", call_id=1))
        uow.recordings.add(make_recording("rec2"))
        uow.commit()


def _run_every_query(uow: UnitOfWork) -> None:
    now = utc_now()
    uow.calls.get(1)
    uow.calls.by_pbx_call_id(1, "pbx-1")
    cursor = PageCursor(now, 10)
    for query in (
        CallQuery(),
        CallQuery(channel_id=1),
        CallQuery(phone_key="+74951234567"),
        CallQuery(statuses=(Status.RINGING, Status.MISSED)),
        CallQuery(direction=Direction.OUTGOING),
        CallQuery(employee_id=1),
        CallQuery(employee_id=2, channel_id=1, statuses=(Status.ANSWERED,)),
        CallQuery(created_from=now, created_to=now),
    ):
        uow.calls.page(query, None, 20)
        uow.calls.page(query, cursor, 20)
    uow.calls.shown_to(1)
    uow.calls.stale(Status.RINGING, now)
    uow.calls.active()
    uow.tickets.get(1)
    uow.contacts.get(1)
    uow.contacts.by_key("+74951234567")
    uow.channels.get(1)
    uow.channels.by_key_hash("k" * 64)
    uow.channels.list()
    uow.departments.list()
    uow.employees.get_many([1, 2])
    uow.employees.with_telephony()
    uow.groups.get_many([10])
    uow.tokens.get("t1")
    uow.tokens.by_secret_hash("s" * 64)
    uow.tokens.list_active()
    uow.idempotency.get(1, "key-1")
    uow.events.last_seq()
    uow.events.oldest_seq()
    uow.events.after(5)
    uow.events.after(5, employee_id=1)
    uow.recordings.get("rec1")
    uow.recordings.of_call(1)
    uow.recordings.unattached_before(now)


def _stages(plan: Any) -> list[str]:
    if isinstance(plan, dict):
        found = [str(plan["stage"])] if "stage" in plan else []
        return found + [s for value in plan.values() for s in _stages(value)]
    if isinstance(plan, list):
        return [s for value in plan for s in _stages(value)]
    return []


@pytest.mark.mongodb
def test_every_query_the_repositories_send_runs_on_an_index(real: Server) -> None:
    assert real.log is not None
    store = real.store
    _seed_every_record(store)
    real.log.commands.clear()

    with read(store) as uow:
        _run_every_query(uow)

    finds = real.log.named("find")
    assert len(finds) >= 40
    for find in finds:
        body = {k: find[k] for k in ("find", "filter", "sort", "projection", "limit") if k in find}
        explained = store.database.command("explain", body, verbosity="queryPlanner")
        stages = _stages(explained["queryPlanner"]["winningPlan"])
        assert "COLLSCAN" not in stages, body
        assert any("IXSCAN" in s or s in {"IDHACK", "EXPRESS_IXSCAN"} for s in stages), body


@pytest.mark.mongodb
def test_a_unit_of_several_writes_commits_as_one_transaction(real: Server) -> None:
    assert real.log is not None
    store = real.store
    assert store.supports_transactions is True
    call = make_call(1)
    real.log.commands.clear()

    with store.unit_of_work() as uow:
        uow.calls.add(call)
        uow.tickets.add(make_ticket(call))
        uow.events.add("created", make_view(call), [CardEvent(1, CardChange.SHOW)], utc_now())
        uow.commit()

    writes = real.log.named("insert")
    assert [w["insert"] for w in writes] == ["calls", "tickets", "events"]
    assert all(w.get("autocommit") is False and "txnNumber" in w for w in writes)
    assert len({w["txnNumber"] for w in writes}) == 1
    assert writes[0].get("startTransaction") is True
    commits = real.log.named("commitTransaction")
    assert len(commits) == 1 and commits[0]["writeConcern"]["w"] == "majority"
    # Event seqs come from a counter bumped outside the transaction.
    counters = [c for c in real.log.named("findAndModify") if c["findAndModify"] == "counters"]
    assert counters and all("autocommit" not in c for c in counters)


@pytest.mark.mongodb
def test_a_conflicting_unit_aborts_its_transaction(real: Server) -> None:
    assert real.log is not None
    before = store_before(real.store)
    real.log.commands.clear()

    with pytest.raises(StorageConflict), real.store.unit_of_work() as uow:
        write_everything_but_the_last(uow, before)
        uow.calls.add(make_call(3, pbx_call_id="pbx-1"))
        uow.commit()

    assert len(real.log.named("abortTransaction")) == 1
    assert real.log.named("commitTransaction") == []
    assert_nothing_changed(real.store, before)


@pytest.mark.mongodb
def test_recordings_default_to_a_gridfs_bucket_beside_the_records(real: Server) -> None:
    store = MongoStore(real.store.database)

    with store.blobs.open_writer("rec1", "audio/mpeg") as writer:
        writer.write(b"audio")
        writer.commit()

    assert isinstance(store.blobs, GridFSBlobStore)
    assert store.database["recordings.files"].count_documents({"_id": "rec1"}) == 1


@pytest.mark.mongodb
def test_only_a_store_that_made_its_client_closes_it(real: Server) -> None:
    assert MONGODB_URI is not None
    MongoStore(real.store.database).close()
    real.store.ping()

    own = MongoStore.connect(MONGODB_URI, real.store.database.name)
    own.ping()
    own.close()
    with pytest.raises(InvalidOperation):
        own.ping()
