"""Batches (`Store.batch`, core/storage/port.py) held against every adapter: the units a
thread commits inside one are all stored when it ends, their events published in order,
a failing unit fails alone, later units see what earlier ones committed, and
`CallCommands.in_batch` answers each command with its result or its refusal."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from core.app import UseCases
from core.app.admin import ChannelRef
from core.app.calls import CallCommands
from core.app.seed import apply_seed
from core.domain import (
    CreateCall,
    Direction,
    Status,
    UpdateCall,
)
from core.errors import NotFound
from core.model import CallView
from core.storage.port import Store, UnitOfWork
from tests.storage.event_sink import Sink
from tests.storage.sqlite_records import add_call_with_event as add_call
from tests.storage.sqlite_records import (
    commit_call,
    stored_departments,
    stored_pbx_ids,
    units_failing_between_two_commits,
)
from tests.storage.storage_marks import ON_ATOMIC_BACKENDS

T = TypeVar("T")

CHANNEL = ChannelRef(key="batch-channel-key")
SEED = {
    "departments": [{"id": 1, "name": "Support"}],
    "employees": [{"id": 1, "name": "Anna Petrova", "telephony": True}],
    "channels": [{"key": CHANNEL.key, "name": "Line 1", "department_id": 1}],
}


def read(store: Store, work: Callable[[UnitOfWork], T]) -> T:
    with store.reading() as uow:
        return work(uow)


def test_units_committed_in_a_batch_are_all_stored_and_published_in_order(store: Store) -> None:
    sink = Sink()
    store.set_event_sink(sink)
    with store.batch():
        for pbx_call_id in ("a", "b", "c"):
            commit_call(store, pbx_call_id)
    assert stored_pbx_ids(store) == {"a", "b", "c"}
    assert sink.seqs == [1, 2, 3]
    assert sink.pbx_ids == ["a", "b", "c"]
    assert read(store, lambda uow: uow.events.after(0)) == sink.events


def test_a_later_unit_of_a_batch_sees_what_earlier_ones_committed(store: Store) -> None:
    with store.batch():
        with store.unit_of_work() as uow:
            call = add_call(uow, "a")
            uow.commit()
        with store.unit_of_work() as uow:
            seen = uow.calls.by_pbx_call_id(1, "a")
            assert seen is not None and seen.call_id == call.call_id
            assert uow.events.last_seq() == 1
            uow.calls.save(seen)
            uow.commit()
    stored = read(store, lambda uow: uow.calls.get(call.call_id))
    assert stored is not None and stored.version == call.version + 1


def test_a_unit_that_fails_in_a_batch_leaves_the_others(store: Store) -> None:
    commit_call(store, "taken")
    sink = Sink()
    store.set_event_sink(sink)
    with store.batch():
        units_failing_between_two_commits(store)
    assert stored_pbx_ids(store) == {"taken", "a", "e"}
    assert stored_departments(store) == []
    assert sink.pbx_ids == ["a", "e"]
    assert sink.seqs == [2, 3]


def test_call_commands_in_a_batch_answer_each_command_in_order(store: Store) -> None:
    apply_seed(UseCases.over(store, region="RU", timezone="Europe/Moscow"), SEED)
    commands = CallCommands(store, region="RU")
    sink = Sink()
    store.set_event_sink(sink)

    def create(pbx_call_id: str, phone: str) -> Callable[[], tuple[CallView, bool]]:
        command = CreateCall(direction=Direction.INCOMING, phone=phone, pbx_call_id=pbx_call_id)
        return lambda: commands.create_call(CHANNEL, command)

    def update(
        call_id: int | None = None, pbx_call_id: str | None = None
    ) -> Callable[[], CallView]:
        command = UpdateCall(Status.ANSWERED, call_id=call_id, pbx_call_id=pbx_call_id, user_id=1)
        return lambda: commands.update_call(CHANNEL, command)

    results = commands.in_batch(
        [
            create("one", "+7 495 111-11-11"),
            update(call_id=999_999),
            create("two", "+7 812 222-22-22"),
            # A later command finds the call an earlier one of the batch created.
            update(pbx_call_id="one"),
        ]
    )

    first, unknown, second, answered = results
    assert isinstance(first, tuple) and first[1] is True
    assert isinstance(unknown, NotFound)
    assert isinstance(second, tuple) and second[1] is True
    assert isinstance(answered, CallView) and answered.call.call_id == first[0].call_id
    assert str(unknown) == "call 999999 not found"
    channel_id = first[0].call.channel_id
    calls = read(
        store, lambda uow: [uow.calls.by_pbx_call_id(channel_id, p) for p in ("one", "two")]
    )
    assert [c.call_id if c else None for c in calls] == [first[0].call_id, second[0].call_id]
    assert calls[0] is not None and calls[0].status is Status.ANSWERED
    assert [(e.kind, e.view.call.pbx_call_id) for e in sink.events] == [
        ("created", "one"),
        ("created", "two"),
        ("updated", "one"),
    ]
    assert sink.seqs == sorted(sink.seqs)


@ON_ATOMIC_BACKENDS
def test_units_other_threads_commit_during_a_batch_are_all_stored(store: Store) -> None:
    sink = Sink()
    store.set_event_sink(sink)
    started = threading.Barrier(4, timeout=10)

    def singles(thread: int) -> None:
        started.wait()
        for n in range(5):
            commit_call(store, f"single-{thread}-{n}")

    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(singles, thread) for thread in (1, 2, 3)]
        with store.batch():
            started.wait()
            for n in range(5):
                commit_call(store, f"batch-{n}")
        for future in futures:
            future.result(timeout=10)

    expected = {f"batch-{n}" for n in range(5)}
    expected |= {f"single-{t}-{n}" for t in (1, 2, 3) for n in range(5)}
    assert stored_pbx_ids(store) == expected
    assert sink.seqs == list(range(1, 21))
    assert set(sink.pbx_ids) == expected
