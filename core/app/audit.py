"""The audit log (SPEC 10): who changed access or the directory, and who read
personal data in bulk, from where and when.

A change's entry is written in the unit of work of the change itself, so that
neither is stored without the other; a bulk read's entry is stored before the
data is handed out. Entries are only ever added: admins list and export them.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Iterator
from datetime import datetime

from core.app import paging, units
from core.auth import Principal
from core.errors import InvalidRequest
from core.model import AuditEntry, AuditQuery, utc_now
from core.storage.port import Store, UnitOfWork
from vocabulary import wire_time

# Entries read from the store at a time while exporting.
EXPORT_BATCH = 500
# Page tokens of the log name it, so that no other listing's token is taken for one.
_TOKEN_PREFIX = "audit:"


class Action(enum.StrEnum):
    """What an entry records: `<what>.<done>`, the names the API and the CLI filter by."""

    CHANNEL_CREATED = "channel.created"
    CHANNEL_UPDATED = "channel.updated"
    CHANNEL_KEY_ROTATED = "channel.key-rotated"
    PBX_USER_MAPPED = "pbx-user.mapped"
    PBX_USER_UNMAPPED = "pbx-user.unmapped"
    DEPARTMENT_UPSERTED = "department.upserted"
    EMPLOYEE_UPSERTED = "employee.upserted"
    GROUP_UPSERTED = "group.upserted"
    CONTACT_UPSERTED = "contact.upserted"
    CONTACT_REMOVED = "contact.removed"
    TOKEN_ISSUED = "token.issued"
    TOKEN_REVOKED = "token.revoked"
    CALLBACK_MARKED = "callback.marked"
    # Reads of personal data.
    RECORDING_DOWNLOADED = "recording.downloaded"
    CALLS_LISTED = "calls.listed"
    # A live stream of every call's changes, once when it opens.
    CALLS_WATCHED = "calls.watched"
    CALLBACKS_LISTED = "callbacks.listed"
    CONTACTS_LISTED = "contacts.listed"
    # The supervisor board (every active call's phone): once per read or opened stream.
    BOARD_READ = "board.read"
    AUDIT_EXPORTED = "audit.exported"


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return wire_time(value)
    if isinstance(value, list | tuple):
        return ",".join(_text(v) for v in value)
    return str(value)


def note(
    uow: UnitOfWork,
    actor: Principal | None,
    action: Action,
    at: datetime,
    target: object = "",
    /,
    **details: object,
) -> None:
    """Add the entry of `action` to the unit of work that does it. Details left None
    are left out; the parameters are positional so that a detail may be called `action`.
    Without an actor (the seed, core's own upkeep) nothing is noted."""
    if actor is None:
        return
    uow.audit.add(
        AuditEntry(
            entry_id=uow.audit.next_id(),
            at=at,
            action=action.value,
            token_id=actor.token_id,
            role=actor.role.value,
            employee_id=actor.employee_id,
            address=actor.address,
            target=_text(target),
            details={key: _text(value) for key, value in details.items() if value is not None},
        )
    )


def filters_of(filters: object) -> dict[str, object]:
    """The fields of a dataclass of filters that are set (not empty nor zero), as an
    entry's details."""
    assert dataclasses.is_dataclass(filters)
    given = {field.name: getattr(filters, field.name) for field in dataclasses.fields(filters)}
    return {name: value for name, value in given.items() if value}


def record(
    store: Store,
    actor: Principal | None,
    action: Action,
    at: datetime,
    target: object = "",
    /,
    **details: object,
) -> None:
    """Store the entry of a read in a unit of its own: the read's data is handed out
    only once this returns."""
    if actor is not None:
        units.write(store, lambda uow: note(uow, actor, action, at, target, **details))


@dataclasses.dataclass(frozen=True)
class AuditFilter:
    """The log's filters as a caller gives them; empty ones match everything."""

    action: str = ""
    token_id: str = ""
    employee_id: int = 0
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive

    def query(self) -> AuditQuery:
        errors = {}
        if self.action and self.action not in {a.value for a in Action}:
            errors["action"] = "one of: " + ", ".join(a.value for a in Action)
        if self.employee_id < 0:
            errors["employee_id"] = "must not be negative"
        if self.since is not None and self.until is not None and self.until <= self.since:
            errors["until"] = "must be later than since"
        if errors:
            raise InvalidRequest.of(errors)
        return AuditQuery(
            action=self.action or None,
            token_id=self.token_id or None,
            employee_id=self.employee_id or None,
            since=self.since,
            until=self.until,
        )


class AuditTrail:
    """Listing and exporting the log: admins only."""

    def __init__(self, store: Store, clock: Callable[[], datetime] = utc_now) -> None:
        self.store = store
        self.clock = clock

    def record(
        self, actor: Principal | None, action: Action, target: object = "", /, **details: object
    ) -> None:
        """Store the entry of a read of personal data before the data is handed out."""
        record(self.store, actor, action, self.clock(), target, **details)

    def list_entries(
        self, principal: Principal, filters: AuditFilter, page_size: int, page_token: str
    ) -> tuple[list[AuditEntry], str]:
        """A page of entries, newest first, and the token of the next page ("" after the last)."""
        principal.require()
        query = filters.query()
        size = paging.size(page_size)
        before = paging.id_from_token(page_token, _TOKEN_PREFIX) if page_token else None
        entries = units.read(self.store, lambda uow: uow.audit.newest(query, before, size + 1))
        return paging.cut(entries, size, lambda last: paging.id_token(last.entry_id, _TOKEN_PREFIX))

    def export(self, principal: Principal, filters: AuditFilter) -> Iterator[list[AuditEntry]]:
        """Every matching entry, oldest first, in batches each read when asked for.
        The export itself is noted before the first batch."""
        principal.require()
        query = filters.query()
        record(self.store, principal, Action.AUDIT_EXPORTED, self.clock(), **filters_of(filters))
        return self._batches(query)

    def _batches(self, query: AuditQuery) -> Iterator[list[AuditEntry]]:
        after = 0
        while True:
            batch = units.read(self.store, _oldest(query, after))
            if not batch:
                return
            yield batch
            after = batch[-1].entry_id


def _oldest(query: AuditQuery, after: int) -> Callable[[UnitOfWork], list[AuditEntry]]:
    return lambda uow: uow.audit.oldest(query, after, EXPORT_BATCH)
