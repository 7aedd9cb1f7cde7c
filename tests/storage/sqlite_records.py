"""Calls as create_call stores them, and the units of work that store them, for the
storage tests."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest

from core.domain import CardChange, CardEvent, Direction, Status, StatusChange
from core.model import Call, CallQuery, CallView, Department, Ticket, utc_now
from core.storage.port import StorageConflict, Store, UnitOfWork

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)


def add_call(uow: UnitOfWork, *, created_at: datetime = T0, **fields: Any) -> Call:
    """A call with its ticket, as create_call stores them."""
    call = Call(
        call_id=uow.calls.next_id(),
        channel_id=1,
        direction=Direction.INCOMING,
        phone="8 495 123-45-67",
        status=Status.RINGING,
        created_at=created_at,
        updated_at=created_at,
        history=[StatusChange(Status.RINGING, created_at)],
        phone_e164="+74951234567",
        phone_key="+74951234567",
    )
    call = dataclasses.replace(call, **fields)
    call.ticket_id = uow.tickets.next_id()
    uow.calls.add(call)
    uow.tickets.add(Ticket(call.ticket_id, call.call_id, call.channel_id, 1, created_at))
    return call


def view_of(call: Call) -> CallView:
    return CallView(call, Ticket(call.ticket_id, call.call_id, 1, 1, call.created_at), None, "", "")


def add_call_with_event(uow: UnitOfWork, pbx_call_id: str) -> Call:
    """A call with its ticket and its created event (employee 1's card shown), made now."""
    call = add_call(uow, pbx_call_id=pbx_call_id, created_at=utc_now())
    uow.events.add("created", view_of(call), [CardEvent(1, CardChange.SHOW)], utc_now())
    return call


def commit_call(store: Store, pbx_call_id: str) -> None:
    """One unit of work that stores a call with its event, and commits."""
    with store.unit_of_work() as uow:
        add_call_with_event(uow, pbx_call_id)
        uow.commit()


def stored_pbx_ids(store: Store) -> set[str]:
    """What a reading unit sees: only what is committed."""
    with store.reading() as uow:
        return {c.pbx_call_id for c in uow.calls.page(CallQuery(), None, 500) if c.pbx_call_id}


def stored_departments(store: Store) -> list[int]:
    with store.reading() as uow:
        return [d.department_id for d in uow.departments.list()]


def fail_unit(store: Store, department_id: int) -> None:
    """A unit that writes, then fails inside its work."""
    with pytest.raises(ValueError), store.unit_of_work() as uow:
        uow.departments.save(Department(department_id, "Never"))
        add_call_with_event(uow, f"never-{department_id}")
        raise ValueError("the work failed")


def units_failing_between_two_commits(store: Store) -> None:
    """Within a batch: "a" commits; then a unit fails in its work, one is left without a
    commit, and one is refused (it reuses the pbx_call_id "taken", stored before); "e"
    commits. Only "a" and "e" are to be kept."""
    commit_call(store, "a")
    fail_unit(store, 9)
    with store.unit_of_work() as uow:  # left without commit
        uow.departments.save(Department(8, "Left open"))
        add_call_with_event(uow, "left-open")
    with pytest.raises(StorageConflict), store.unit_of_work() as uow:
        uow.departments.save(Department(7, "Conflicting"))
        add_call_with_event(uow, "taken")
        uow.commit()
    commit_call(store, "e")
