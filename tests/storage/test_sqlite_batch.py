"""Batches in the SQLite store (`Store.batch`): the units a thread commits inside one share
the COMMIT its end makes, nothing of them is seen or published before it, each unit still
stands or falls alone, and units other threads commit meanwhile are neither lost nor left
waiting once the batch ends."""

from __future__ import annotations

import dataclasses
import functools
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from core.recordings.blobs import FileBlobStore
from core.storage.sqlite import SqliteStore
from core.storage.sqlite.store import MAX_GROUP, CommitStats
from tests.storage.event_sink import Sink
from tests.storage.killed_writer import killed_after
from tests.storage.sqlite_records import add_call_with_event as add_call
from tests.storage.sqlite_records import (
    commit_call,
    fail_unit,
    stored_departments,
    stored_pbx_ids,
    units_failing_between_two_commits,
)

WAIT_SECONDS = 10.0


@pytest.fixture
def store(sqlite_store: SqliteStore) -> SqliteStore:
    return sqlite_store


def seen_by_a_writing_unit(store: SqliteStore, pbx_call_id: str) -> bool:
    """Whether a unit that writes sees the call (kept changes included); it commits nothing."""
    with store.unit_of_work() as uow:
        return uow.calls.by_pbx_call_id(1, pbx_call_id) is not None


def since(store: SqliteStore, before: CommitStats) -> tuple[int, int]:
    """COMMITs made, and units they stored, since `before`."""
    after = store.commit_stats()
    return after.commits - before.commits, after.units - before.units


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, "the condition was not met in time"
        time.sleep(0.005)


@dataclasses.dataclass
class Outcome:
    error: BaseException | None = None
    done: bool = False


class Worker:
    """`work` on a thread of its own, whose end is awaited with a timeout."""

    def __init__(self, work: Callable[[], Any]) -> None:
        self.outcome = Outcome()

        def run() -> None:
            try:
                work()
                self.outcome.done = True
            except BaseException as error:
                self.outcome.error = error

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def finish(self) -> Outcome:
        self._thread.join(WAIT_SECONDS)
        assert not self._thread.is_alive(), "the thread is still waiting"
        return self.outcome


def test_units_of_a_batch_share_one_commit_at_its_end(store: SqliteStore) -> None:
    sink = Sink()
    store.set_event_sink(sink)
    before = store.commit_stats()
    with store.batch():
        for pbx_call_id in ("a", "b", "c", "d"):
            commit_call(store, pbx_call_id)
        # Each commit returned; nothing is committed, seen or published yet.
        assert since(store, before) == (0, 0)
        assert stored_pbx_ids(store) == set()
        assert sink.events == []
    assert since(store, before) == (1, 4)
    assert stored_pbx_ids(store) == {"a", "b", "c", "d"}
    assert sink.seqs == [1, 2, 3, 4]
    assert sink.pbx_ids == ["a", "b", "c", "d"]
    with store.reading() as uow:
        assert uow.events.after(0) == sink.events


def test_a_later_unit_of_a_batch_sees_what_earlier_ones_kept(store: SqliteStore) -> None:
    with store.batch():
        with store.unit_of_work() as uow:
            call = add_call(uow, "a")
            uow.commit()
        with store.unit_of_work() as uow:
            kept = uow.calls.by_pbx_call_id(1, "a")
            assert kept is not None
            assert (kept.call_id, kept.ticket_id) == (call.call_id, call.ticket_id)
            assert uow.events.last_seq() == 1
            assert uow.calls.next_id() > call.call_id
            # Saved from what it read: no conflict with the earlier unit's kept version.
            uow.calls.save(kept)
            uow.commit()
        assert stored_pbx_ids(store) == set()
    with store.reading() as uow:
        stored = uow.calls.get(call.call_id)
        assert stored is not None and stored.version == kept.version
        assert stored.version == call.version + 1


def test_a_unit_that_fails_in_a_batch_is_undone_alone(store: SqliteStore) -> None:
    commit_call(store, "taken")
    sink = Sink()
    store.set_event_sink(sink)
    before = store.commit_stats()
    with store.batch():
        units_failing_between_two_commits(store)
    assert since(store, before) == (1, 2)
    assert stored_pbx_ids(store) == {"taken", "a", "e"}
    assert stored_departments(store) == []
    assert sink.pbx_ids == ["a", "e"]
    # The seqs the failed units took are given out again: none is skipped.
    assert sink.seqs == [2, 3]


def test_a_batch_left_by_an_error_stores_the_units_it_committed(store: SqliteStore) -> None:
    sink = Sink()
    store.set_event_sink(sink)
    before = store.commit_stats()
    with pytest.raises(KeyError), store.batch():
        commit_call(store, "a")
        commit_call(store, "b")
        raise KeyError("the caller failed after two commits returned")
    assert since(store, before) == (1, 2)
    assert stored_pbx_ids(store) == {"a", "b"}
    assert sink.pbx_ids == ["a", "b"]


def deny_commit(action: int, operation: str | None, *args: Any) -> int:
    if action == sqlite3.SQLITE_TRANSACTION and operation == "COMMIT":
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def test_a_refused_commit_at_the_end_of_a_batch_fails_all_of_it(store: SqliteStore) -> None:
    sink = Sink()
    store.set_event_sink(sink)
    before = store.commit_stats()
    writer = store._writer
    assert writer is not None
    try:
        with pytest.raises(sqlite3.DatabaseError), store.batch():
            commit_call(store, "a")
            other = Worker(lambda: commit_call(store, "t"))
            wait_until(lambda: seen_by_a_writing_unit(store, "t"))
            commit_call(store, "b")
            # The COMMIT the batch's end makes is refused, as a failing disk would.
            writer.set_authorizer(deny_commit)
    finally:
        writer.set_authorizer(None)
    # The other thread's unit was in the refused COMMIT: it fails too, not silently.
    assert isinstance(other.finish().error, sqlite3.DatabaseError)
    assert since(store, before) == (0, 0)
    assert stored_pbx_ids(store) == set()
    assert sink.events == []
    commit_call(store, "after")  # the writer goes on
    assert stored_pbx_ids(store) == {"after"}
    assert sink.pbx_ids == ["after"]


def test_a_refused_commit_inside_a_long_batch_is_raised_at_its_end(store: SqliteStore) -> None:
    writer = store._writer
    assert writer is not None
    refused: list[str] = []

    def deny_first_commit(action: int, operation: str | None, *args: Any) -> int:
        if action == sqlite3.SQLITE_TRANSACTION and operation == "COMMIT" and not refused:
            refused.append("COMMIT")
            return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK

    first_group = {f"c{n}" for n in range(MAX_GROUP)}
    writer.set_authorizer(deny_first_commit)
    try:
        # The batch's first MAX_GROUP units COMMIT at the last of them; that COMMIT fails,
        # yet the unit's commit() returns: leaving the batch must report it.
        with pytest.raises(sqlite3.DatabaseError), store.batch():
            for pbx_call_id in sorted(first_group):
                commit_call(store, pbx_call_id)
            assert refused == ["COMMIT"]
            commit_call(store, "later")
    finally:
        writer.set_authorizer(None)
    assert not first_group & stored_pbx_ids(store)


@pytest.mark.parametrize("own_units", ["kept", "failed"])
def test_a_unit_another_thread_commits_during_a_batch_returns_at_its_end(
    store: SqliteStore, own_units: str
) -> None:
    sink = Sink()
    store.set_event_sink(sink)
    before = store.commit_stats()
    with store.batch():
        if own_units == "kept":
            commit_call(store, "a")
        else:
            fail_unit(store, 1)
        other = Worker(lambda: commit_call(store, "t"))
        # The other unit is kept in the transaction the batch holds open...
        wait_until(lambda: seen_by_a_writing_unit(store, "t"))
        # ...and its commit() has not returned: it is not on disk yet.
        assert not other.outcome.done and other.outcome.error is None
        assert stored_pbx_ids(store) == set() and sink.events == []
        if own_units == "failed":
            fail_unit(store, 2)
    # The batch's end COMMITs it even when none of the batch's own units is in it.
    outcome = other.finish()
    assert outcome.done and outcome.error is None
    expected = ["a", "t"] if own_units == "kept" else ["t"]
    assert stored_pbx_ids(store) == set(expected)
    assert since(store, before) == (1, len(expected))
    assert sink.pbx_ids == expected
    assert stored_departments(store) == []


def test_threads_running_batches_at_once_store_every_unit(store: SqliteStore) -> None:
    sink = Sink()
    store.set_event_sink(sink)
    before = store.commit_stats()

    def run_batches(thread: int) -> None:
        for batch in range(5):
            with store.batch():
                for n in range(4):
                    commit_call(store, f"{thread}-{batch}-{n}")

    workers = [Worker(functools.partial(run_batches, thread)) for thread in (1, 2, 3)]
    outcomes = [worker.finish() for worker in workers]

    assert [(o.done, o.error) for o in outcomes] == [(True, None)] * 3
    expected = {f"{t}-{b}-{n}" for t in (1, 2, 3) for b in range(5) for n in range(4)}
    assert stored_pbx_ids(store) == expected
    commits, units = since(store, before)
    # Only a batch's end COMMITs here (while any batch is open, commits are held).
    assert units == 60 and commits <= 15
    assert sink.seqs == list(range(1, 61))
    assert set(sink.pbx_ids) == expected


def test_a_long_batch_commits_every_max_group_units(store: SqliteStore) -> None:
    sink = Sink()
    store.set_event_sink(sink)
    before = store.commit_stats()
    with store.batch():
        for n in range(MAX_GROUP + 3):
            commit_call(store, f"c{n}")
            # The transaction stays bounded: the unit that fills a group COMMITs it.
            full = (n + 1) // MAX_GROUP
            assert since(store, before) == (full, full * MAX_GROUP)
        assert len(stored_pbx_ids(store)) == MAX_GROUP
        assert sink.seqs == list(range(1, MAX_GROUP + 1))
    assert since(store, before) == (2, MAX_GROUP + 3)
    assert len(stored_pbx_ids(store)) == MAX_GROUP + 3
    assert sink.seqs == list(range(1, MAX_GROUP + 4))


def test_a_batch_cannot_be_opened_inside_another_in_one_thread(store: SqliteStore) -> None:
    before = store.commit_stats()
    with store.batch():
        commit_call(store, "a")
        with pytest.raises(RuntimeError), store.batch():
            pass
        commit_call(store, "b")  # the outer batch goes on
        assert stored_pbx_ids(store) == set()
    assert since(store, before) == (1, 2)
    assert stored_pbx_ids(store) == {"a", "b"}


def test_a_batch_without_units_commits_nothing(store: SqliteStore) -> None:
    before = store.commit_stats()
    with store.batch():
        pass
    with store.batch():
        fail_unit(store, 1)
    assert since(store, before) == (0, 0)
    commit_call(store, "after")  # the writer is free
    assert since(store, before) == (1, 1)


BATCHES_THEN_WAIT = """
import sys, time
from pathlib import Path
from core.model import Department
from core.recordings.blobs import FileBlobStore
from core.storage.sqlite import SqliteStore

data = Path(sys.argv[1])
store = SqliteStore(data / "vats.db", FileBlobStore(data))
store.prepare()
for batch in range(1, 1000):
    before = store.commit_stats()
    ids = [batch * 10 + n for n in range(4)]
    with store.batch():
        for department_id in ids:
            with store.unit_of_work() as uow:
                uow.departments.save(Department(department_id, f"Shift {department_id}"))
                uow.commit()
        with store.unit_of_work() as uow:  # left without commit
            uow.departments.save(Department(batch * 10 + 9, "Never"))
    after = store.commit_stats()
    print("stored", after.commits - before.commits, after.units - before.units, *ids, flush=True)
time.sleep(60)
"""


def test_a_batch_is_on_disk_when_it_returns_even_under_sigkill(tmp_path: Path) -> None:
    stored_ids: list[int] = []
    with killed_after(BATCHES_THEN_WAIT, tmp_path) as printed:
        while len(stored_ids) < 200:
            word, commits, units, *ids = printed.readline().split()
            assert word == "stored"
            # Each batch of four units made one COMMIT.
            assert (int(commits), int(units)) == (1, 4)
            stored_ids.extend(int(i) for i in ids)
    reopened = SqliteStore(tmp_path / "vats.db", FileBlobStore(tmp_path))
    reopened.prepare()
    try:
        stored = set(stored_departments(reopened))
    finally:
        reopened.close()
    assert set(stored_ids) <= stored
    assert not {i for i in stored if i % 10 == 9}
