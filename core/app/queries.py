"""Call queries: one call, and the history with filters and keyset paging."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime

from core import domain
from core.app import audit, paging, units
from core.app.audit import Action
from core.auth import Principal
from core.errors import NotFound, PermissionDenied
from core.model import Call, CallQuery, CallView, PageCursor, utc_now
from core.storage.port import Store, UnitOfWork


@dataclasses.dataclass(frozen=True)
class CallFilter:
    """The history's filters as a caller gives them (a phone as typed)."""

    channel_id: int | None = None
    phone: str | None = None
    statuses: tuple[domain.Status, ...] = ()
    direction: domain.Direction | None = None
    employee_id: int | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None


class CallQueries:
    def __init__(self, store: Store, region: str = "RU") -> None:
        self.store = store
        self.region = region

    def get_call(self, principal: Principal, call_id: int) -> CallView:
        view = units.read(self.store, lambda uow: units.stored_view(uow, call_id))
        if principal.is_employee and not _sees(principal, view.call):
            # Not found rather than forbidden: an employee learns nothing of others' calls.
            raise NotFound(f"call {call_id} not found")
        return view

    def list_calls(
        self, principal: Principal, filters: CallFilter, page_size: int, page_token: str
    ) -> tuple[list[CallView], str]:
        if principal.is_employee:
            if filters.employee_id not in (None, principal.employee_id):
                raise PermissionDenied("an employee token lists only its own calls")
            filters = dataclasses.replace(filters, employee_id=principal.employee_id)
        size = paging.size(page_size)
        after = _decode_page_token(page_token) if page_token else None
        query = CallQuery(
            channel_id=filters.channel_id or None,
            phone_key=domain.contact_key(filters.phone, self.region) if filters.phone else None,
            statuses=filters.statuses,
            direction=filters.direction,
            employee_id=filters.employee_id or None,
            created_from=filters.created_from,
            created_to=filters.created_to,
        )

        def work(uow: UnitOfWork) -> tuple[list[CallView], str]:
            calls, next_token = paging.cut(
                uow.calls.page(query, after, size + 1), size, _encode_page_token
            )
            return [units.view_of(uow, c) for c in calls], next_token

        page = units.read(self.store, work)
        details = {**audit.filters_of(filters), "count": len(page[0])}
        audit.record(self.store, principal, Action.CALLS_LISTED, utc_now(), **details)
        return page


def _sees(principal: Principal, call: Call) -> bool:
    return principal.employee_id in call.audience or (
        call.user_id is not None and call.user_id == principal.employee_id
    )


def _encode_page_token(last: Call) -> str:
    return paging.token(json.dumps([last.created_at.isoformat(), last.call_id]))


def _decode_page_token(token: str) -> PageCursor:
    try:
        created_at, call_id = json.loads(paging.token_text(token))
        return PageCursor(paging.instant(created_at), int(call_id))
    except (ValueError, TypeError) as exc:
        raise paging.not_a_token() from exc
