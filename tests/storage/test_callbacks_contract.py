"""The storage port's callbacks and call facts (core/storage/port.py), held against every
adapter: round trips, one open callback per phone, stale saves, the listing's order, filters
and keyset paging, the open counts, and the calls the day's figures read."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

import pytest

from core.domain import (
    Call,
    Callback,
    CallbackState,
    CallFacts,
    Direction,
    Resolution,
    Status,
    StatusChange,
)
from core.model import CallbackCursor, CallbackQuery, utc_now
from core.storage.port import StorageConflict, Store, UnitOfWork

T = TypeVar("T")

MOSCOW = "+74951234567"
SPB = "+78121234567"
OPEN = frozenset({CallbackState.OPEN})
RESOLVED = frozenset({CallbackState.RESOLVED})
BOTH = frozenset(CallbackState)


def minutes(value: float) -> timedelta:
    return timedelta(minutes=value)


def read(store: Store, work: Callable[[UnitOfWork], T]) -> T:
    with store.reading() as uow:
        return work(uow)


def make_callback(callback_id: int, missed_at: datetime, **fields: Any) -> Callback:
    callback = Callback(
        callback_id=callback_id,
        channel_id=1,
        phone_key=MOSCOW,
        phone="8 (495) 123-45-67",
        phone_e164=MOSCOW,
        first_missed_at=missed_at,
        last_missed_at=missed_at,
        last_call_id=100 + callback_id,
        last_status=Status.MISSED,
        contact_id=7,
        audience=(1, 2),
    )
    return dataclasses.replace(callback, **fields)


def add_callback(store: Store, missed_at: datetime, **fields: Any) -> Callback:
    with store.unit_of_work() as uow:
        callback = make_callback(uow.callbacks.next_id(), missed_at, **fields)
        uow.callbacks.add(callback)
        uow.commit()
    return callback


def resolve(store: Store, callback: Callback, at: datetime) -> Callback:
    with store.unit_of_work() as uow:
        stored = uow.callbacks.get(callback.callback_id)
        assert stored is not None
        assert stored.mark_called_back(3, "tok_x", at)
        uow.callbacks.save(stored)
        uow.commit()
    return stored


def ids(callbacks: list[Callback]) -> list[int]:
    return [c.callback_id for c in callbacks]


def page_through(store: Store, query: CallbackQuery, size: int) -> list[int]:
    """Every callback of `query`, page by page, each page starting after the last one."""
    seen: list[int] = []
    after: CallbackCursor | None = None
    while True:
        with store.reading() as uow:
            page = uow.callbacks.page(query, after, size)
        seen += ids(page)
        if len(page) < size:
            return seen
        last = page[-1]
        after = CallbackCursor(last.state, last.listed_at, last.callback_id)


def test_a_callback_round_trips_and_each_save_bumps_its_version(store: Store) -> None:
    at = utc_now()
    callback = add_callback(store, at)
    assert read(store, lambda uow: uow.callbacks.get(callback.callback_id)) == callback
    stored = read(store, lambda uow: uow.callbacks.get(callback.callback_id))
    assert stored is not None
    stored.attempts = 3
    stored.audience = (1, 2, 5)
    stored.last_missed_at = at + minutes(5)
    with store.unit_of_work() as uow:
        uow.callbacks.save(stored)
        uow.commit()
    assert stored.version == 1
    assert read(store, lambda uow: uow.callbacks.get(callback.callback_id)) == stored
    resolved = resolve(store, stored, at + minutes(9))
    again = read(store, lambda uow: uow.callbacks.get(callback.callback_id))
    assert again == resolved
    assert again is not None and again.version == 2
    assert again.resolution is Resolution.CALLED_BACK
    assert again.resolved_by_employee_id == 3 and again.resolved_by_token_id == "tok_x"
    assert read(store, lambda uow: uow.callbacks.get(999)) is None


def test_ids_increase(store: Store) -> None:
    with store.unit_of_work() as uow:
        first, second = uow.callbacks.next_id(), uow.callbacks.next_id()
    assert 0 < first < second


def test_only_one_callback_is_open_per_phone_on_a_channel(store: Store) -> None:
    at = utc_now()
    first = add_callback(store, at)
    with pytest.raises(StorageConflict), store.unit_of_work() as uow:
        uow.callbacks.add(make_callback(uow.callbacks.next_id(), at + minutes(1)))
        uow.commit()
    # Another phone, or the same phone on another channel, is another callback.
    spb = add_callback(store, at, phone_key=SPB)
    other_line = add_callback(store, at, channel_id=2)
    found = read(store, lambda uow: uow.callbacks.open_for(1, MOSCOW))
    assert found == first
    assert read(store, lambda uow: uow.callbacks.open_for(1, SPB)) == spb
    assert read(store, lambda uow: uow.callbacks.open_for(2, MOSCOW)) == other_line
    # Once resolved, the phone may wait for a callback again.
    resolve(store, first, at + minutes(2))
    assert read(store, lambda uow: uow.callbacks.open_for(1, MOSCOW)) is None
    reopened = add_callback(store, at + minutes(3))
    assert read(store, lambda uow: uow.callbacks.open_for(1, MOSCOW)) == reopened


def test_a_callback_saved_from_a_stale_version_conflicts(store: Store) -> None:
    callback = add_callback(store, utc_now())
    first = read(store, lambda uow: uow.callbacks.get(callback.callback_id))
    second = read(store, lambda uow: uow.callbacks.get(callback.callback_id))
    assert first is not None and second is not None
    later = callback.first_missed_at + minutes(1)
    first.mark_called_back(1, "tok_a", later)
    with store.unit_of_work() as uow:
        uow.callbacks.save(first)
        uow.commit()
    second.mark_called_back(2, "tok_b", later)
    with pytest.raises(StorageConflict), store.unit_of_work() as uow:
        uow.callbacks.save(second)
        uow.commit()
    stored = read(store, lambda uow: uow.callbacks.get(callback.callback_id))
    assert stored is not None and stored.resolved_by_employee_id == 1


def test_open_ones_are_listed_oldest_waiting_first_and_resolved_ones_latest_first(
    store: Store,
) -> None:
    at = utc_now() - timedelta(hours=2)
    newer = add_callback(store, at + minutes(10), phone_key="k1")
    older = add_callback(store, at, phone_key="k2")
    tied = add_callback(store, at, phone_key="k3")
    first_resolved = add_callback(store, at + minutes(1), phone_key="k4")
    last_resolved = add_callback(store, at + minutes(2), phone_key="k5")
    resolve(store, first_resolved, at + minutes(30))
    resolve(store, last_resolved, at + minutes(40))
    open_order = [older.callback_id, tied.callback_id, newer.callback_id]
    resolved_order = [last_resolved.callback_id, first_resolved.callback_id]
    for states, expected in (
        (OPEN, open_order),
        (RESOLVED, resolved_order),
        (BOTH, open_order + resolved_order),
    ):
        query = CallbackQuery(states=states)
        for size in (1, 2, 3, 50):
            assert page_through(store, query, size) == expected
    assert (
        read(store, lambda uow: uow.callbacks.page(CallbackQuery(states=frozenset()), None, 5))
        == []
    )
    assert read(store, lambda uow: uow.callbacks.page(CallbackQuery(), None, 0)) == []


def test_listing_filters_by_channel_and_by_who_could_see_the_missed_calls(store: Store) -> None:
    at = utc_now() - timedelta(hours=1)
    anna_line1 = add_callback(store, at, phone_key="k1", audience=(1,))
    both_line1 = add_callback(store, at + minutes(1), phone_key="k2", audience=(1, 2))
    boris_line2 = add_callback(store, at + minutes(2), phone_key="k3", channel_id=2, audience=(2,))
    anna_line2 = add_callback(store, at + minutes(3), phone_key="k4", channel_id=2, audience=(1,))
    resolve(store, anna_line2, at + minutes(5))

    def listed(**fields: Any) -> list[int]:
        query = CallbackQuery(**fields)
        every = page_through(store, query, 1)
        assert every == ids(read(store, lambda uow: uow.callbacks.page(query, None, 50)))
        return every

    assert listed(employee_id=1) == [anna_line1.callback_id, both_line1.callback_id]
    assert listed(employee_id=1, states=BOTH) == [
        anna_line1.callback_id,
        both_line1.callback_id,
        anna_line2.callback_id,
    ]
    assert listed(employee_id=2, states=BOTH) == [both_line1.callback_id, boris_line2.callback_id]
    assert listed(employee_id=2, channel_id=1) == [both_line1.callback_id]
    assert listed(channel_id=2, states=BOTH) == [boris_line2.callback_id, anna_line2.callback_id]
    assert listed(channel_id=2, states=RESOLVED) == [anna_line2.callback_id]
    assert listed(employee_id=9, states=BOTH) == []

    def count(**fields: Any) -> int:
        return read(store, lambda uow: uow.callbacks.count_open(**fields))

    assert count() == 3
    assert count(channel_id=1) == 2 and count(channel_id=2) == 1 and count(channel_id=3) == 0
    assert count(employee_id=1) == 2 and count(employee_id=2) == 2
    assert count(employee_id=1, channel_id=2) == 0 and count(employee_id=2, channel_id=2) == 1


def test_who_may_see_a_callback_follows_its_saved_audience(store: Store) -> None:
    callback = add_callback(store, utc_now(), audience=(1,))
    stored = read(store, lambda uow: uow.callbacks.get(callback.callback_id))
    assert stored is not None
    stored.audience = (2,)
    with store.unit_of_work() as uow:
        uow.callbacks.save(stored)
        uow.commit()
    assert read(store, lambda uow: uow.callbacks.page(CallbackQuery(employee_id=1), None, 9)) == []
    assert ids(
        read(store, lambda uow: uow.callbacks.page(CallbackQuery(employee_id=2), None, 9))
    ) == [callback.callback_id]


# --- the calls the figures read --------------------------------------------------------------


def make_call(
    uow: UnitOfWork,
    created_at: datetime,
    *,
    answered_at: datetime | None = None,
    ended_at: datetime | None = None,
    status: Status = Status.RINGING,
    **fields: Any,
) -> Call:
    call = Call(
        call_id=uow.calls.next_id(),
        channel_id=1,
        direction=Direction.INCOMING,
        phone="8 (495) 123-45-67",
        status=status,
        created_at=created_at,
        updated_at=ended_at or answered_at or created_at,
        history=[StatusChange(status, created_at)],
        answered_at=answered_at,
        ended_at=ended_at,
        ticket_id=uow.tickets.next_id(),
        phone_e164=MOSCOW,
        phone_key=MOSCOW,
    )
    call = dataclasses.replace(call, **fields)
    uow.calls.add(call)
    return call


def facts_of(call: Call) -> CallFacts:
    return CallFacts(
        call_id=call.call_id,
        channel_id=call.channel_id,
        direction=call.direction,
        status=call.status,
        created_at=call.created_at,
        answered_at=call.answered_at,
        ended_at=call.ended_at,
    )


def test_call_facts_are_read_by_creation_and_by_the_end_of_answered_calls(store: Store) -> None:
    start = utc_now().replace(microsecond=0) - timedelta(days=1)
    end = start + timedelta(hours=12)
    with store.unit_of_work() as uow:
        before = make_call(
            uow,
            start - minutes(5),
            answered_at=start - minutes(4),
            ended_at=start + minutes(3),
            status=Status.ANSWERED,
        )
        ringing = make_call(uow, start)
        missed = make_call(
            uow, start + minutes(1), ended_at=start + minutes(2), status=Status.MISSED, channel_id=2
        )
        talking = make_call(
            uow,
            start + minutes(6),
            answered_at=start + minutes(7),
            status=Status.IN_PROGRESS,
            direction=Direction.OUTGOING,
        )
        late_end = make_call(
            uow,
            end - minutes(1),
            answered_at=end - minutes(1),
            ended_at=end,
            status=Status.ANSWERED,
        )
        make_call(uow, end)
        uow.commit()
    created = read(store, lambda uow: uow.call_facts.created_between(start, end))
    assert created == [facts_of(c) for c in (ringing, missed, talking, late_end)]
    ended = read(store, lambda uow: uow.call_facts.ended_between(start, end))
    # The missed call ended unanswered; the late one ended at the end, which is outside.
    assert ended == [facts_of(before)]
    assert read(store, lambda uow: uow.call_facts.ended_between(end, end + minutes(1))) == [
        facts_of(late_end)
    ]
