"""Missed callbacks (SPEC 5a): opened and resolved as calls change, listed to those who may
see them, marked called back by whoever called."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from datetime import datetime

from core import domain
from core.app import audit, paging, units
from core.app.audit import Action
from core.auth import Principal
from core.domain import Call, Callback, CallbackState, Status
from core.errors import InvalidRequest, NotFound, PermissionDenied
from core.model import CallbackCursor, CallbackQuery, utc_now
from core.storage.port import Store, UnitOfWork

# --- following the calls --------------------------------------------------------------


def follow_call(
    uow: UnitOfWork, call: Call, before: Status | None, answered_before: datetime | None
) -> None:
    """Open, extend or resolve the callback a change of `call` makes (from status `before`
    and answer time `answered_before`; None for a new call). Part of the caller's unit of
    work: the callback changes exactly when the call does."""
    if domain.opens_callback(before, call):
        _record_miss(uow, call)
    elif domain.resolves_callback(answered_before, call):
        callback = uow.callbacks.open_for(call.channel_id, call.phone_key)
        if callback is not None and callback.resolve_by_answer(call):
            uow.callbacks.save(callback)


def _record_miss(uow: UnitOfWork, call: Call) -> None:
    callback = uow.callbacks.open_for(call.channel_id, call.phone_key)
    if callback is None:
        uow.callbacks.add(Callback.of_missed(uow.callbacks.next_id(), call))
        return
    callback.record_miss(call)
    uow.callbacks.save(callback)


# --- what is shown of a callback -------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CallbackView:
    """A callback with the names it is shown with."""

    callback: Callback
    channel_name: str
    contact_name: str
    resolved_by_name: str

    @property
    def phone_display(self) -> str:
        return domain.phone_display(self.callback.phone, self.callback.phone_e164)


@dataclasses.dataclass(frozen=True)
class CallbackPage:
    callbacks: list[CallbackView]
    # Empty on the last page.
    next_page_token: str
    # Every open callback the caller may see (on the channel asked for), whatever the page.
    open_count: int


def view_of(uow: UnitOfWork, callback: Callback) -> CallbackView:
    channel = uow.channels.get(callback.channel_id)
    contact = None if callback.contact_id is None else uow.contacts.get(callback.contact_id)
    return CallbackView(
        callback=callback,
        channel_name=channel.name if channel else "",
        contact_name=contact.name if contact else "",
        resolved_by_name=units.employee_name(uow, callback.resolved_by_employee_id),
    )


# --- the use cases ---------------------------------------------------------------------


class CallbackDesk:
    def __init__(self, store: Store, clock: Callable[[], datetime] = utc_now) -> None:
        self.store = store
        self.clock = clock
        # Told when a callback is marked (set by the server's wiring: the board shows the
        # open callbacks, and marking one changes no call).
        self.on_marked: Callable[[], None] | None = None

    def list(
        self,
        principal: Principal,
        query: CallbackQuery,
        page_size: int = 0,
        page_token: str = "",
    ) -> CallbackPage:
        """A page of the callbacks `principal` may see: an employee those of calls it could
        see, every other role all of them."""
        size = paging.size(page_size)
        after = _decode_page_token(page_token) if page_token else None
        if principal.is_employee:
            query = dataclasses.replace(query, employee_id=principal.employee_id)

        def work(uow: UnitOfWork) -> CallbackPage:
            found, next_token = paging.cut(
                uow.callbacks.page(query, after, size + 1), size, _encode_page_token
            )
            return CallbackPage(
                callbacks=[view_of(uow, c) for c in found],
                next_page_token=next_token,
                open_count=uow.callbacks.count_open(query.channel_id, query.employee_id),
            )

        page = units.read(self.store, work)
        audit.record(
            self.store,
            principal,
            Action.CALLBACKS_LISTED,
            self.clock(),
            states=sorted(s.value for s in query.states),
            channel_id=query.channel_id,
            count=len(page.callbacks),
        )
        return page

    def mark_called_back(
        self, principal: Principal, callback_id: int, employee_id: int | None = None
    ) -> CallbackView:
        """Record that the number was called back, by `employee_id` (an employee token: its
        own employee) and when. A callback resolved already is returned as it is."""
        caller = _caller(principal, employee_id)

        def work(uow: UnitOfWork) -> CallbackView:
            callback = uow.callbacks.get(callback_id)
            if callback is None or (
                principal.is_employee and not callback.visible_to(principal.employee_id)
            ):
                # Not found rather than forbidden: an employee learns nothing of others' calls.
                raise NotFound(f"callback {callback_id} not found")
            if caller is not None and not uow.employees.get_many([caller]):
                raise InvalidRequest.of({"employee_id": f"unknown employee {caller}"})
            now = self.clock()
            if callback.mark_called_back(caller, principal.token_id, now):
                uow.callbacks.save(callback)
                audit.note(uow, principal, Action.CALLBACK_MARKED, now, callback_id, by=caller)
            return view_of(uow, callback)

        view = units.write(self.store, work)
        if self.on_marked is not None:
            self.on_marked()
        return view


def _caller(principal: Principal, employee_id: int | None) -> int | None:
    """Who called back: an employee token is its own employee and names no other."""
    if not principal.is_employee:
        return employee_id or None
    if employee_id not in (None, 0, principal.employee_id):
        raise PermissionDenied("an employee token marks callbacks as its own employee")
    return principal.employee_id


def _encode_page_token(last: Callback) -> str:
    return paging.token(
        json.dumps([last.state.value, last.listed_at.isoformat(), last.callback_id])
    )


def _decode_page_token(token: str) -> CallbackCursor:
    try:
        state, at, callback_id = json.loads(paging.token_text(token))
        return CallbackCursor(CallbackState(state), paging.instant(at), int(callback_id))
    except (ValueError, TypeError) as exc:
        raise paging.not_a_token() from exc
