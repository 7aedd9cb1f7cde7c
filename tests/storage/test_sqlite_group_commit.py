"""Group commit in the SQLite store: units that wait for the writer share one COMMIT,
each unit still stands or falls alone, and none returns before its changes are on disk."""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from core.model import Department
from core.recordings.blobs import FileBlobStore
from core.storage.port import StorageConflict, UnitOfWork
from core.storage.sqlite import SqliteStore
from tests.storage.event_sink import Sink
from tests.storage.killed_writer import killed_after
from tests.storage.sqlite_records import add_call_with_event as add_call
from tests.storage.sqlite_records import stored_pbx_ids

WAIT_SECONDS = 10.0


@pytest.fixture
def store(sqlite_store: SqliteStore) -> SqliteStore:
    return sqlite_store


@dataclasses.dataclass
class Outcome:
    error: BaseException | None = None
    done: bool = False


class Group:
    """A first unit held open inside its work while `others` queue for the writer; then
    all are let through, so that they meet in one transaction."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.inside = threading.Event()
        self.go_on = threading.Event()
        self.threads: list[threading.Thread] = []
        self.outcomes: list[Outcome] = []

    def first(self, work: Callable[[UnitOfWork], Any]) -> None:
        def held(uow: UnitOfWork) -> None:
            work(uow)
            self.inside.set()
            assert self.go_on.wait(WAIT_SECONDS)

        self._start(held)
        assert self.inside.wait(WAIT_SECONDS)

    def then(self, work: Callable[[UnitOfWork], Any], commit: bool = True) -> None:
        waiting = self.store.writers_waiting()
        self._start(work, commit)
        wait_until(lambda: self.store.writers_waiting() == waiting + 1)

    def release(self) -> list[Outcome]:
        self.go_on.set()
        for thread in self.threads:
            thread.join(WAIT_SECONDS)
            assert not thread.is_alive()
        return self.outcomes

    def _start(self, work: Callable[[UnitOfWork], Any], commit: bool = True) -> None:
        outcome = Outcome()
        self.outcomes.append(outcome)

        def run() -> None:
            try:
                with self.store.unit_of_work() as uow:
                    work(uow)
                    if commit:
                        uow.commit()
                outcome.done = True
            except BaseException as error:
                outcome.error = error

        thread = threading.Thread(target=run, daemon=True)
        self.threads.append(thread)
        thread.start()


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, "the writers did not queue"
        time.sleep(0.005)


def test_units_waiting_for_the_writer_share_one_commit(store: SqliteStore) -> None:
    sink = Sink()
    store.set_event_sink(sink)
    before = store.commit_stats()
    group = Group(store)
    group.first(lambda uow: add_call(uow, "a"))
    group.then(lambda uow: add_call(uow, "b"))
    group.then(lambda uow: add_call(uow, "c"))
    group.then(lambda uow: add_call(uow, "d"))
    # Nothing is visible, or published, before the COMMIT.
    assert stored_pbx_ids(store) == set() and sink.events == []

    outcomes = group.release()

    assert [(o.done, o.error) for o in outcomes] == [(True, None)] * 4
    after = store.commit_stats()
    assert (after.commits - before.commits, after.units - before.units) == (1, 4)
    assert stored_pbx_ids(store) == {"a", "b", "c", "d"}
    assert [e.seq for e in sink.events] == [1, 2, 3, 4]
    assert [e.view.call.pbx_call_id for e in sink.events] == ["a", "b", "c", "d"]


def test_a_unit_that_fails_in_a_group_leaves_the_others_whole(store: SqliteStore) -> None:
    with store.unit_of_work() as uow:
        add_call(uow, "taken")
        uow.commit()
    sink = Sink()
    store.set_event_sink(sink)

    def broken(uow: UnitOfWork) -> None:
        uow.departments.save(Department(9, "Never"))
        raise ValueError("the work failed")

    def conflicting(uow: UnitOfWork) -> None:
        uow.departments.save(Department(8, "Never either"))
        add_call(uow, "taken")

    group = Group(store)
    group.first(lambda uow: add_call(uow, "a"))
    group.then(broken)
    group.then(conflicting)
    group.then(lambda uow: uow.departments.save(Department(7, "Left open")), commit=False)
    group.then(lambda uow: add_call(uow, "e"))
    first, failed, conflict, uncommitted, last = group.release()

    assert first.done and last.done and uncommitted.done
    assert isinstance(failed.error, ValueError)
    assert isinstance(conflict.error, StorageConflict)
    assert stored_pbx_ids(store) == {"taken", "a", "e"}
    with store.reading() as uow:
        assert [d.department_id for d in uow.departments.list()] == []
    assert [e.view.call.pbx_call_id for e in sink.events] == ["a", "e"]
    # The seqs the failed units took are given out again: none is skipped.
    assert [e.seq for e in sink.events] == [2, 3]


def deny_commit(action: int, operation: str | None, *args: Any) -> int:
    if action == sqlite3.SQLITE_TRANSACTION and operation == "COMMIT":
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def test_when_the_commit_fails_every_unit_of_the_group_fails(store: SqliteStore) -> None:
    sink = Sink()
    store.set_event_sink(sink)
    group = Group(store)
    group.first(lambda uow: add_call(uow, "a"))
    group.then(lambda uow: add_call(uow, "b"))

    def last(uow: UnitOfWork) -> None:
        add_call(uow, "c")
        # The COMMIT this unit makes for the group is refused, as a failing disk would.
        writer = store._writer
        assert writer is not None
        writer.set_authorizer(deny_commit)

    group.then(last)
    outcomes = group.release()
    assert store._writer is not None
    store._writer.set_authorizer(None)

    assert all(isinstance(o.error, sqlite3.DatabaseError) for o in outcomes), outcomes
    assert len({id(o.error) for o in outcomes}) == 3  # each its own copy
    assert stored_pbx_ids(store) == set() and sink.events == []
    with store.unit_of_work() as uow:  # the writer goes on
        add_call(uow, "after")
        uow.commit()
    assert stored_pbx_ids(store) == {"after"}


def test_closing_commits_a_group_left_open_for_it(store: SqliteStore) -> None:
    group = Group(store)
    group.first(lambda uow: add_call(uow, "a"))
    # close() waits for the writer like a unit: the first unit leaves the transaction
    # open for it, and close() has to commit it before it closes the connection.
    closer = threading.Thread(target=store.close)
    closer.start()
    wait_until(lambda: store.writers_waiting() == 1)
    (first,) = group.release()
    closer.join(WAIT_SECONDS)
    assert not closer.is_alive()
    assert first.done and first.error is None
    reopened = SqliteStore(store.path, FileBlobStore(store.path.parent))
    reopened.prepare()
    try:
        assert stored_pbx_ids(reopened) == {"a"}
        assert reopened.commit_stats().commits == 0  # read back, not committed again
    finally:
        reopened.close()


COMMIT_FROM_THREADS_THEN_WAIT = """
import sys, threading, time
from pathlib import Path
from core.model import Department
from core.recordings.blobs import FileBlobStore
from core.storage.sqlite import SqliteStore
from tests.storage.sqlite_records import add_call as stored_call
from tests.storage.sqlite_records import view_of

data = Path(sys.argv[1])
store = SqliteStore(data / "vats.db", FileBlobStore(data))
store.prepare()
lock = threading.Lock()

def write(thread):
    for n in range(1000):
        department_id = thread * 10000 + n
        with store.unit_of_work() as uow:
            uow.departments.save(Department(department_id, f"Shift {department_id}"))
            uow.commit()
        with lock:
            stats = store.commit_stats()
            print("committed", department_id, stats.commits, stats.units, flush=True)

for thread in range(1, 5):
    threading.Thread(target=write, args=(thread,), daemon=True).start()
time.sleep(60)
"""


def test_grouped_commits_survive_sigkill_right_after_they_return(tmp_path: Path) -> None:
    committed: list[int] = []
    grouped = False
    with killed_after(COMMIT_FROM_THREADS_THEN_WAIT, tmp_path) as printed:
        while len(committed) < 200:
            word, department_id, commits, units = printed.readline().split()
            assert word == "committed"
            committed.append(int(department_id))
            grouped = grouped or int(units) > int(commits)
    reopened = SqliteStore(tmp_path / "vats.db", FileBlobStore(tmp_path))
    reopened.prepare()
    try:
        with reopened.reading() as uow:
            stored = {d.department_id for d in uow.departments.list()}
    finally:
        reopened.close()
    assert grouped, "four threads writing at once never shared a commit"
    assert set(committed) <= stored
