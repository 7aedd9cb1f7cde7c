"""The SQLite store beyond the port's contract: durability, WAL settings, schema
migrations, the query plans of the hot paths, online backups and the single writer."""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from core.domain import ACTIVE_STATUSES, CardChange, CardEvent, Direction, Status
from core.model import (
    EVENT_TTL,
    IDEMPOTENCY_TTL,
    Call,
    CallQuery,
    Comment,
    Department,
    IdempotencyRecord,
    PageCursor,
    PublishedEvent,
    Reply,
    utc_now,
)
from core.recordings.blobs import FileBlobStore
from core.storage.port import StorageConflict
from core.storage.sqlite import LATEST_VERSION, SchemaError, SqliteStore, backup_file, schema
from core.storage.sqlite import repositories as sql
from core.storage.sqlite.checkpoints import WRITER_CHECKPOINT_PAGES
from tests.storage.killed_writer import killed_after
from tests.storage.query_plans import add_analyzed_copy, assert_indexed, plan
from tests.storage.sqlite_records import T0, add_call, view_of

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture
def store(sqlite_store: SqliteStore) -> SqliteStore:
    return sqlite_store


def open_store(path: Path, blobs_dir: Path) -> SqliteStore:
    opened = SqliteStore(path, FileBlobStore(blobs_dir))
    opened.prepare()
    return opened


# --- durability and settings ---------------------------------------------------------------------


def test_the_writer_runs_in_wal_mode_with_full_synchronous_commits(store: SqliteStore) -> None:
    settings = store.settings()
    assert settings["journal_mode"] == "wal"
    assert settings["synchronous"] == 2  # FULL
    assert settings["foreign_keys"] == 1
    assert int(str(settings["busy_timeout"])) > 0
    # WAL is a property of the file: any other connection finds it too.
    with sqlite3.connect(store.path) as other:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


COMMIT_THEN_WAIT = """
import sqlite3, sys, time
from pathlib import Path
from core.model import Channel, Department, utc_now
from core.recordings.blobs import FileBlobStore
from core.storage.sqlite import SqliteStore

data = Path(sys.argv[1])
store = SqliteStore(data / "vats.db", FileBlobStore(data))
store.prepare()
# A read begun before the commit: no checkpoint copies the commit past it into the file.
pinned = sqlite3.connect(data / "vats.db", isolation_level=None)
pinned.execute("BEGIN")
pinned.execute("SELECT count(*) FROM channels").fetchone()
with store.unit_of_work() as uow:
    uow.departments.save(Department(7, "Night shift"))
    channel_id = uow.channels.next_id()
    uow.channels.add(Channel(channel_id, "Night line", 7, "night-key-hash", utc_now()))
    uow.commit()
print("committed", channel_id, flush=True)
time.sleep(60)
"""


def test_a_commit_survives_sigkill_right_after_it_returns(tmp_path: Path) -> None:
    with killed_after(COMMIT_THEN_WAIT, tmp_path) as printed:
        line = printed.readline().split()
        assert line[:1] == ["committed"]
    # The change is in the log, not yet checkpointed into the database file:
    # reopening has to recover it from there.
    assert (tmp_path / "vats.db-wal").stat().st_size > 0
    assert rows_in_database_file(tmp_path / "vats.db", "channels") == 0
    reopened = open_store(tmp_path / "vats.db", tmp_path)
    try:
        with reopened.reading() as uow:
            channel = uow.channels.get(int(line[1]))
            department = uow.departments.get(7)
        assert channel is not None and channel.name == "Night line"
        assert department == Department(7, "Night shift")
    finally:
        reopened.close()


def rows_in_database_file(path: Path, table: str) -> int:
    """Rows of `table` in the database file itself, without its log: what checkpoints
    copied there (0 when the table itself is not there yet)."""
    uri = f"{path.as_uri()}?mode=ro&immutable=1"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as file_only:
        try:
            return int(file_only.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
        except sqlite3.OperationalError as error:
            assert "no such table" in str(error)
            return 0


def test_commits_are_copied_into_the_database_file_by_the_checkpoint_thread(
    store: SqliteStore,
) -> None:
    # Far fewer pages than make a COMMIT checkpoint by itself.
    assert store.settings()["wal_autocheckpoint"] == WRITER_CHECKPOINT_PAGES
    for _ in range(3):
        with store.unit_of_work() as uow:
            add_call(uow)
            uow.commit()
    deadline = time.monotonic() + 10
    while rows_in_database_file(store.path, "calls") < 3:
        assert time.monotonic() < deadline, "the commits never reached the database file"
        time.sleep(0.01)


def test_closing_the_store_ends_its_checkpoint_thread(tmp_path: Path) -> None:
    opened = open_store(tmp_path / "vats.db", tmp_path)
    name = f"checkpoints {opened.path}"

    def running() -> bool:
        return any(thread.name == name for thread in threading.enumerate())

    assert running()
    opened.close()
    assert not running()
    # The last connection closed checkpointed the log and removed it.
    assert not (tmp_path / "vats.db-wal").exists()


# --- migrations ----------------------------------------------------------------------------------


def load_fixture(path: Path, name: str) -> None:
    with sqlite3.connect(path) as connection:
        connection.executescript((FIXTURES / name).read_text(encoding="utf-8"))
    connection.close()


def schema_of(path: Path) -> set[tuple[str, str, str]]:
    with sqlite3.connect(path) as connection:
        rows = connection.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL"
        ).fetchall()
    connection.close()
    return {(kind, name, " ".join(text.split())) for kind, name, text in rows}


def test_the_version_1_fixture_is_what_migration_1_creates(tmp_path: Path) -> None:
    # Migration 1 is never edited once released: the fixture keeps it honest.
    load_fixture(tmp_path / "old.db", "sqlite_v1.sql")
    with sqlite3.connect(tmp_path / "fresh.db", isolation_level=None) as connection:
        assert schema.migrate(connection, target=1) == 1
    connection.close()
    assert schema_of(tmp_path / "old.db") == schema_of(tmp_path / "fresh.db")


def test_a_version_1_database_is_migrated_and_read_back_whole(tmp_path: Path) -> None:
    path = tmp_path / "vats.db"
    load_fixture(path, "sqlite_v1.sql")
    store = open_store(path, tmp_path)
    try:
        assert store.schema_version() == LATEST_VERSION == 5
        t = datetime(2026, 3, 2, 9, 30, 15, 123000, tzinfo=UTC)

        def at(seconds: int) -> datetime:
            return t + timedelta(seconds=seconds)

        with store.reading() as uow:
            assert [d.name for d in uow.departments.list()] == ["Support"]
            assert sorted(uow.employees.with_telephony()) == [1, 3]
            assert uow.employees.get_many([2, 9])[2].telephony is False
            assert uow.groups.get_many([10])[10].members == (3, 1)
            channel = uow.channels.by_key_hash("a" * 64)
            assert channel is not None
            assert (channel.channel_id, channel.created_at) == (1, at(0))
            assert channel.pbx_users == {"101": 1, "103": 3}
            assert [(c.channel_id, c.enabled) for c in uow.channels.list()] == [
                (1, True),
                (2, False),
            ]
            assert [token.token_id for token in uow.tokens.list_active()] == ["tok-admin"]
            revoked = uow.tokens.by_secret_hash("d" * 64)
            assert revoked is not None and revoked.revoked_at == at(4)
            contact = uow.contacts.by_key("+74951234567")
            assert contact is not None and contact.name == "Ivan"

            answered = uow.calls.by_pbx_call_id(1, "pbx-1")
            assert answered is not None
            assert answered.status is Status.ANSWERED
            assert [h.status for h in answered.history] == [
                Status.RINGING,
                Status.IN_PROGRESS,
                Status.ANSWERED,
            ]
            assert (answered.answered_at, answered.ended_at) == (at(20), at(70))
            assert (answered.user_id, answered.audience, answered.version) == (1, (1, 3), 2)
            ticket = uow.tickets.get(answered.ticket_id)
            assert ticket is not None
            assert ticket.comments == [
                Comment("called back about order 42", at(11)),
                Comment("resolved", at(70), "anna"),
            ]
            assert [r.recording_id for r in uow.recordings.of_call(answered.call_id)] == ["rec-1"]
            assert uow.recordings.unattached_before(at(100)) == ["rec-orphan"]

            ringing = uow.calls.page(CallQuery(employee_id=3), None, 10)
            assert [c.call_id for c in ringing] == [2, 1]
            assert [c.call_id for c in uow.calls.shown_to(3)] == [2]
            # The live-calls index of version 2 holds the calls version 1 wrote.
            assert [c.call_id for c in uow.calls.stale(Status.RINGING, at(100))] == [2]
            assert [c.call_id for c in uow.calls.active()] == [2]

            assert uow.events.last_seq() == 2
            events = uow.events.after(0)
            assert [(e.seq, e.kind) for e in events] == [(1, "updated"), (2, "created")]
            assert events[0].view.recordings[0].duration_seconds == 61.5
            # Version 5 keeps the card events' employees by bucket of ids: the same replays.
            assert [e.seq for e in uow.events.after(0, employee_id=3)] == [1, 2]
            assert [e.seq for e in uow.events.after(1, employee_id=1)] == [2]
            assert uow.events.after(0, employee_id=2) == []
            record = uow.idempotency.get(1, "idem-1")
            assert record is not None and record.reply.created
            assert record.reply.view.call.call_id == 2

        # New ids carry on from what version 1 gave out.
        with store.unit_of_work() as uow:
            assert uow.calls.next_id() == 3
            assert uow.channels.next_id() == 3
    finally:
        store.close()
    names = {name for _, name, _ in schema_of(path)}
    assert "calls_live" in names and "calls_stale" not in names
    assert "event_audience" in names and "event_cards" not in names


def test_a_database_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "vats.db"
    open_store(path, tmp_path).close()
    with sqlite3.connect(path) as connection:
        connection.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")
    connection.close()
    newer = SqliteStore(path, FileBlobStore(tmp_path))
    with pytest.raises(SchemaError, match="newer than this version"):
        newer.prepare()
    newer.close()


def test_a_database_of_another_application_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE notes (body TEXT)")
    connection.close()
    with pytest.raises(SchemaError, match="another application"):
        SqliteStore(path, FileBlobStore(tmp_path)).prepare()


def test_prepare_twice_keeps_the_data(store: SqliteStore) -> None:
    with store.unit_of_work() as uow:
        call = add_call(uow)
        uow.commit()
    store.prepare()
    with store.reading() as uow:
        assert uow.calls.get(call.call_id) == call


# --- query plans -------------------------------------------------------------------------------

PAGE_QUERIES: dict[str, tuple[CallQuery, str]] = {
    "everything": (CallQuery(), "calls_newest"),
    "channel": (CallQuery(channel_id=2), "calls_by_channel"),
    "phone": (CallQuery(phone_key="+74951234567", channel_id=1), "calls_by_phone"),
    "one status": (CallQuery(statuses=(Status.MISSED,)), "calls_by_status"),
    "direction": (CallQuery(direction=Direction.OUTGOING), "calls_by_direction"),
    "employee": (CallQuery(employee_id=3, channel_id=1), "PRIMARY KEY (employee_id=?"),
    "employee and phone": (
        CallQuery(employee_id=3, phone_key="+74951234567"),
        "calls_by_phone",
    ),
    "time range": (
        CallQuery(created_from=T0, created_to=T0 + timedelta(days=1)),
        "calls_newest",
    ),
}
LOOKUPS: dict[str, tuple[str, tuple[Any, ...], str]] = {
    "call by id": (sql.CALL_BY_ID, (1,), "INTEGER PRIMARY KEY"),
    "call by pbx call id": (sql.CALL_BY_PBX_CALL_ID, (1, "pbx-1"), "calls_by_pbx_call_id"),
    "cards shown": (sql.CALLS_SHOWN_TO, (3,), "PRIMARY KEY (employee_id=?)"),
    "stale calls": (sql.STALE_LIVE_CALLS, ("ringing", 0), "calls_live"),
    "active calls": (sql.ACTIVE_CALLS, (), "calls_live"),
    "events after": (sql.EVENTS_AFTER, (5,), "INTEGER PRIMARY KEY (rowid>?)"),
    "card events after": (sql.CARD_EVENTS_AFTER, (3, 5), "PRIMARY KEY (bucket=? AND seq>?)"),
    "recordings of a call": (sql.RECORDINGS_OF_CALL, (1,), "recordings_by_call"),
    "recordings no call took": (sql.UNATTACHED_RECORDINGS, (0,), "recordings_by_call"),
}


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A few thousand calls shaped like a real history: nearly all final."""
    data = tmp_path_factory.mktemp("plans")
    store = open_store(data / "vats.db", data)
    pick = random.Random(7)
    final = [s for s in Status if s not in ACTIVE_STATUSES]
    with store.unit_of_work() as uow:
        for n in range(3000):
            status = pick.choice(final) if n < 2990 else Status.RINGING
            add_call(
                uow,
                created_at=T0 + timedelta(seconds=n),
                channel_id=pick.randint(1, 3),
                status=status,
                direction=pick.choice(list(Direction)),
                phone_key=f"+7495{pick.randint(0, 300):07d}",
                audience=tuple(pick.sample(range(1, 20), 3)),
                viewers=(3,) if status is Status.RINGING else (),
                pbx_call_id=f"pbx-{n}",
            )
        uow.commit()
    store.close()
    add_analyzed_copy(data)
    yield data


# The call history's tables and their aliases in the statements.
TABLES = "c|calls|e|events|k|v|recordings"


@pytest.mark.parametrize("analyzed", [False, True], ids=["fresh", "analyzed"])
@pytest.mark.parametrize("name", list(PAGE_QUERIES))
def test_history_pages_walk_an_index(populated: Path, name: str, analyzed: bool) -> None:
    query, index = PAGE_QUERIES[name]
    for after in (None, PageCursor(T0 + timedelta(minutes=30), 1800)):
        statement, params = sql.page_statement(query, after, 50)
        assert_indexed(plan(populated, statement, params, analyzed), index, TABLES)


@pytest.mark.parametrize("analyzed", [False, True], ids=["fresh", "analyzed"])
def test_several_statuses_merge_one_indexed_walk_each(populated: Path, analyzed: bool) -> None:
    query = CallQuery(statuses=(Status.MISSED, Status.BUSY, Status.FAILED), channel_id=2)
    statement, params = sql.page_statement(query, PageCursor(T0, 1800), 50)
    lines = plan(populated, statement, params, analyzed)
    # Only the (at most 3 x 50) rows the branches yield are sorted.
    assert sum("calls_by_status (status=?" in line for line in lines) == 3, lines
    assert_indexed(lines, "calls_by_status", TABLES, sorted_in_memory=True)


@pytest.mark.parametrize("analyzed", [False, True], ids=["fresh", "analyzed"])
@pytest.mark.parametrize("name", list(LOOKUPS))
def test_lookups_use_an_index(populated: Path, name: str, analyzed: bool) -> None:
    statement, params, index = LOOKUPS[name]
    assert_indexed(plan(populated, statement, params, analyzed), index, TABLES)


def test_live_call_queries_repeat_the_partial_index_condition() -> None:
    # The planner uses a partial index only when the query states its condition verbatim.
    assert f"WHERE status IN {sql.LIVE_STATUSES}" in schema.LIVE_CALLS_INDEX
    assert set(re.findall(r"'([^']+)'", sql.LIVE_STATUSES)) == {s.value for s in ACTIVE_STATUSES}


def test_history_pages_agree_with_a_plain_filter(store: SqliteStore) -> None:
    """Every filter combination and driver, paged in small steps with ties on
    created_at, gives exactly the calls a plain filter gives, newest first."""
    pick = random.Random(11)
    with store.unit_of_work() as uow:
        calls = []
        for n in range(240):
            call = add_call(
                uow,
                created_at=T0 + timedelta(seconds=n // 3),
                channel_id=pick.randint(1, 3),
                status=pick.choice(list(Status)),
                direction=pick.choice(list(Direction)),
                phone_key=pick.choice(["+74950000001", "+74950000002", "digits:7"]),
                audience=tuple(pick.sample(range(1, 6), pick.randint(0, 2))),
                user_id=pick.choice([None, None, 4, 5]),
            )
            calls.append(call)
        uow.commit()

    def matches(call: Call, query: CallQuery) -> bool:
        concerned = set(call.audience) | {call.user_id}
        return (
            query.channel_id in (None, call.channel_id)
            and query.phone_key in (None, call.phone_key)
            and (not query.statuses or call.status in query.statuses)
            and query.direction in (None, call.direction)
            and (query.employee_id is None or query.employee_id in concerned)
            and (query.created_from is None or call.created_at >= query.created_from)
            and (query.created_to is None or call.created_at < query.created_to)
        )

    options: dict[str, list[Any]] = {
        "channel_id": [None, 2],
        "phone_key": [None, "digits:7"],
        "statuses": [(), (Status.MISSED,), (Status.ANSWERED, Status.BUSY, Status.ANSWERED)],
        "direction": [None, Direction.OUTGOING],
        "employee_id": [None, 4],
        "created_from": [None, T0 + timedelta(seconds=10)],
        "created_to": [None, T0 + timedelta(seconds=60)],
    }
    newest_first = sorted(calls, key=lambda c: (c.created_at, c.call_id), reverse=True)
    for values in itertools.product(*options.values()):
        query = CallQuery(**dict(zip(options, values, strict=True)))
        expected = [c.call_id for c in newest_first if matches(c, query)]
        got: list[int] = []
        after: PageCursor | None = None
        with store.reading() as uow:
            while True:
                page = uow.calls.page(query, after, 4)
                got.extend(c.call_id for c in page)
                if len(page) < 4:
                    break
                after = PageCursor(page[-1].created_at, page[-1].call_id)
        assert got == expected, query


def test_saving_a_call_keeps_its_history_and_card_indexes_current(store: SqliteStore) -> None:
    with store.unit_of_work() as uow:
        call = add_call(uow, audience=(1, 2), viewers=(1, 2))
        uow.commit()
    call.user_id = 3
    call.audience = (2, 4)
    call.viewers = (3,)
    with store.unit_of_work() as uow:
        uow.calls.save(call)
        uow.commit()
    with store.reading() as uow:
        for employee_id, in_history in ((1, False), (2, True), (3, True), (4, True)):
            page = uow.calls.page(CallQuery(employee_id=employee_id), None, 10)
            assert (page == [call]) is in_history, employee_id
        assert [uow.calls.shown_to(e) for e in (1, 2, 3)] == [[], [], [call]]


# --- units of work and the single writer --------------------------------------------------------


def test_datetimes_round_trip_to_the_millisecond(store: SqliteStore) -> None:
    moment = datetime(2026, 5, 1, 8, 0, 0, 123456, tzinfo=UTC)
    with store.unit_of_work() as uow:
        call = add_call(uow, created_at=moment)
        uow.commit()
    with store.reading() as uow:
        stored = uow.calls.get(call.call_id)
    assert stored is not None
    assert stored.created_at == moment.replace(microsecond=123000)
    with pytest.raises(ValueError, match="naive"), store.unit_of_work() as uow:
        add_call(uow, created_at=datetime(2026, 5, 1, 8, 0))


def test_a_reading_unit_gives_out_no_ids_and_writes_nothing(store: SqliteStore) -> None:
    with store.reading() as uow:
        with pytest.raises(RuntimeError, match="ids are given out only"):
            uow.calls.next_id()
        with pytest.raises(RuntimeError, match="cannot write"):
            uow.departments.save(Department(1, "Support"))
        with pytest.raises(RuntimeError, match="cannot commit"):
            uow.commit()
    with store.reading() as uow:
        assert uow.departments.list() == []


def test_a_second_writing_unit_on_one_thread_fails_instead_of_waiting(store: SqliteStore) -> None:
    with store.unit_of_work() as outer:
        outer.departments.save(Department(1, "Support"))
        with pytest.raises(RuntimeError, match="already has a unit of work"):
            store.unit_of_work().__enter__()
        outer.commit()
    with store.unit_of_work() as uow:  # the lock was released
        uow.commit()


def test_after_a_conflict_nothing_of_the_unit_commits(store: SqliteStore) -> None:
    with store.unit_of_work() as uow:
        add_call(uow, pbx_call_id="p1")
        uow.commit()
    with store.unit_of_work() as uow:
        uow.departments.save(Department(5, "Sales"))
        with pytest.raises(StorageConflict):
            add_call(uow, pbx_call_id="p1")
        with pytest.raises(StorageConflict):
            uow.commit()
    with store.reading() as uow:
        assert uow.departments.get(5) is None
        assert uow.calls.count() == 1


def test_events_reach_the_sink_in_seq_order_from_concurrent_writers(store: SqliteStore) -> None:
    published: list[PublishedEvent] = []

    class Hub:
        def publish(self, event: PublishedEvent) -> None:
            published.append(event)

    store.set_event_sink(Hub())

    def write(rounds: int) -> None:
        for _ in range(rounds):
            with store.unit_of_work() as uow:
                call = add_call(uow, created_at=utc_now())
                uow.events.add("created", view_of(call), [CardEvent(1, CardChange.SHOW)], utc_now())
                uow.commit()

    threads = [threading.Thread(target=write, args=(25,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [e.seq for e in published] == list(range(1, 101))
    with store.reading() as uow:
        assert uow.events.after(0, employee_id=1) == published


def test_a_failing_sink_does_not_undo_the_commit(
    store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        def publish(self, event: PublishedEvent) -> None:
            raise OSError("hub gone")

    store.set_event_sink(Broken())
    with store.unit_of_work() as uow:
        call = add_call(uow)
        uow.events.add("created", view_of(call), [], T0)
        uow.commit()
    with store.reading() as uow:
        assert [e.seq for e in uow.events.after(0)] == [1]
    assert "event sink failed on event 1" in caplog.text


def test_removing_expired_records_keeps_the_last_seq(store: SqliteStore) -> None:
    now = T0 + timedelta(days=10)
    with store.unit_of_work() as uow:
        call = add_call(uow)
        for at in (now - EVENT_TTL - timedelta(seconds=1), now - timedelta(minutes=1)):
            uow.events.add("updated", view_of(call), [CardEvent(1, CardChange.UPDATE)], at)
        for key, age in (("old", IDEMPOTENCY_TTL + timedelta(seconds=1)), ("new", timedelta(0))):
            uow.idempotency.add(
                IdempotencyRecord(1, key, "fp", now - age, Reply(view_of(call), created=True))
            )
        uow.commit()
    assert store.remove_expired(now) == 2
    with store.reading() as uow:
        assert (uow.events.oldest_seq(), uow.events.last_seq()) == (2, 2)
        assert [e.seq for e in uow.events.after(0, employee_id=1)] == [2]
        assert uow.idempotency.get(1, "old") is None
        assert uow.idempotency.get(1, "new") is not None


# --- backups -------------------------------------------------------------------------------------


def check_backup(path: Path, blobs_dir: Path) -> int:
    """The copy is a whole database: every call with its ticket and its event."""
    assert path.is_file()
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    raw.close()
    copy = open_store(path, blobs_dir)
    try:
        with copy.reading() as uow:
            calls = uow.calls.page(CallQuery(), None, 1_000_000)
            for call in calls:
                assert uow.tickets.get(call.ticket_id) is not None
            assert uow.events.last_seq() == len(calls)
            assert [e.view.call.call_id for e in uow.events.after(0)] == sorted(
                c.call_id for c in calls
            )
        return len(calls)
    finally:
        copy.close()


def test_a_backup_taken_while_writing_is_a_consistent_copy(
    store: SqliteStore, tmp_path: Path
) -> None:
    stop = threading.Event()
    written = threading.Semaphore(0)

    def write() -> None:
        while not stop.is_set():
            with store.unit_of_work() as uow:
                call = add_call(uow, created_at=utc_now())
                uow.events.add("created", view_of(call), [], utc_now())
                uow.commit()
            written.release()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        assert written.acquire(timeout=10)
        copies = []
        for n in range(3):
            copies.append(tmp_path / f"backup-{n}.db")
            store.backup(copies[-1])
    finally:
        stop.set()
        writer.join()
    counts = [check_backup(copy, tmp_path / "restored") for copy in copies]
    assert counts == sorted(counts) and counts[0] > 0
    with store.reading() as uow:
        assert uow.calls.count() >= counts[-1]


BACKUP_FROM_ANOTHER_PROCESS = """
import sys
from pathlib import Path
from core.storage.sqlite import backup_file
backup_file(Path(sys.argv[1]), Path(sys.argv[2]))
"""


def test_backup_file_copies_a_live_database_from_another_process(
    store: SqliteStore, tmp_path: Path
) -> None:
    with store.unit_of_work() as uow:
        call = add_call(uow)
        uow.events.add("created", view_of(call), [], T0)
        uow.commit()
    subprocess.run(
        [
            sys.executable,
            "-c",
            BACKUP_FROM_ANOTHER_PROCESS,
            str(store.path),
            str(tmp_path / "b.db"),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=True,
        timeout=60,
    )
    assert check_backup(tmp_path / "b.db", tmp_path / "restored") == 1


def test_backup_file_copies_a_stopped_database(store: SqliteStore, tmp_path: Path) -> None:
    with store.unit_of_work() as uow:
        call = add_call(uow)
        uow.events.add("created", view_of(call), [], T0)
        uow.commit()
    store.close()
    assert not (tmp_path / "vats.db-wal").exists()
    backup_file(store.path, tmp_path / "b.db")
    assert check_backup(tmp_path / "b.db", tmp_path / "restored") == 1
    with pytest.raises(ValueError, match="cannot replace"):
        backup_file(store.path, store.path)
    with pytest.raises(FileNotFoundError):
        backup_file(tmp_path / "missing.db", tmp_path / "c.db")


def test_card_events_replay_to_exactly_their_employees_across_id_buckets(
    store: SqliteStore,
) -> None:
    # Ids either side of a bucket's edge, a bucket with one member in and one out, a far one.
    edge = 1 << schema.EMPLOYEE_BUCKET_SHIFT
    first = [edge - 1, edge, 1, 50_000]
    second = [edge, 2]
    with store.unit_of_work() as uow:
        call = add_call(uow)
        for audience in (first, second):
            cards = [CardEvent(e, CardChange.SHOW) for e in audience]
            uow.events.add("created", view_of(call), cards, T0)
        uow.commit()
    with store.reading() as uow:
        seqs = {e: [x.seq for x in uow.events.after(0, employee_id=e)] for e in (*first, 2, 3)}
        last = uow.events.last_seq()
    assert seqs == {
        edge - 1: [last - 1],
        edge: [last - 1, last],
        1: [last - 1],
        50_000: [last - 1],
        2: [last],
        3: [],
    }
    with sqlite3.connect(store.path) as connection:
        rows = connection.execute("SELECT count(*) FROM event_audience").fetchone()[0]
    connection.close()
    # One row an event and bucket: {0, 1, 781} for the first, {1, 0} for the second.
    assert rows == 5
