"""Calls as create_call stores them, for the storage tests."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

from core.domain import CardChange, CardEvent, Direction, Status, StatusChange
from core.model import Call, CallView, Ticket, utc_now
from core.storage.port import UnitOfWork

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
