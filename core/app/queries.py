"""Call queries: one call, and the history with filters and keyset paging."""

from __future__ import annotations

import base64
import dataclasses
import json
from datetime import UTC, datetime

from core import domain
from core.app import audit, units
from core.app.audit import Action
from core.auth import Principal
from core.errors import InvalidRequest, NotFound, PermissionDenied
from core.model import Call, CallQuery, CallView, PageCursor, utc_now
from core.storage.port import Store, UnitOfWork

MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 50


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
        if page_size < 0:
            raise InvalidRequest.of({"page_size": "must not be negative"})
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
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
            calls = uow.calls.page(query, after, size + 1)
            next_token = ""
            if len(calls) > size:
                calls = calls[:size]
                next_token = _encode_page_token(calls[-1])
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
    raw = json.dumps([last.created_at.isoformat(), last.call_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_page_token(token: str) -> PageCursor:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        created_at, call_id = json.loads(raw)
        at = datetime.fromisoformat(created_at)
        return PageCursor(at if at.tzinfo else at.replace(tzinfo=UTC), int(call_id))
    except (ValueError, TypeError) as exc:
        raise InvalidRequest.of({"page_token": "not a token from a previous page"}) from exc
