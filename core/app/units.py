"""Running a use case in a unit of work, again on fresh reads when a concurrent
change won, and building what is shown of a call from the stored records."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from core.errors import Conflict, NotFound
from core.model import Call, CallView, Channel, Ticket
from core.storage.port import StorageConflict, Store, UnitOfWork

T = TypeVar("T")

# A unit that keeps losing to concurrent changes is refused (retryable) after this many runs.
ATTEMPTS = 8


def write(store: Store, work: Callable[[UnitOfWork], T]) -> T:
    """Run `work` in a unit of work and commit it; run it afresh when a concurrent
    change won. `work` must not commit itself."""
    for _ in range(ATTEMPTS):
        try:
            with store.unit_of_work() as uow:
                result = work(uow)
                uow.commit()
                return result
        except StorageConflict:
            continue
    raise Conflict("the data kept changing under this request; retry")


def read(store: Store, work: Callable[[UnitOfWork], T]) -> T:
    with store.reading() as uow:
        return work(uow)


def view_of(uow: UnitOfWork, call: Call, channel: Channel | None = None) -> CallView:
    """The call with its ticket, contact, channel name, bound employee's name and recordings."""
    if channel is None or channel.channel_id != call.channel_id:
        channel = uow.channels.get(call.channel_id)
    ticket = uow.tickets.get(call.ticket_id) or Ticket(
        ticket_id=call.ticket_id,
        call_id=call.call_id,
        channel_id=call.channel_id,
        department_id=0,
        created_at=call.created_at,
    )
    contact = uow.contacts.get(call.contact_id) if call.contact_id is not None else None
    return CallView(
        call=call,
        ticket=ticket,
        contact=contact,
        channel_name=channel.name if channel else "",
        user_name=employee_name(uow, call.user_id),
        recordings=uow.recordings.of_call(call.call_id),
    )


def employee_name(uow: UnitOfWork, employee_id: int | None) -> str:
    """The name a call or card shows for its bound employee ("" for none or unknown)."""
    if employee_id is None:
        return ""
    employee = uow.employees.get_many([employee_id]).get(employee_id)
    return employee.name if employee else ""


def stored_view(uow: UnitOfWork, call_id: int) -> CallView:
    call = uow.calls.get(call_id)
    if call is None:
        raise NotFound(f"call {call_id} not found")
    return view_of(uow, call)
