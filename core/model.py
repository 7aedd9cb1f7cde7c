"""The helpdesk's stored records besides the call itself: channels, the
directory, tokens, contacts, tickets, recordings, and what is shown of a call.

Plain Python, like `core.domain`: the storage port reads and writes these,
the use cases work on them, the transports convert them.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from core.domain import Call, Callback, CallbackState, CardEvent, Direction, Employee, Status

__all__ = [
    "AuditEntry",
    "AuditQuery",
    "Call",
    "CallQuery",
    "CallView",
    "Callback",
    "CallbackCursor",
    "CallbackQuery",
    "Card",
    "Channel",
    "Comment",
    "Contact",
    "Department",
    "Employee",
    "Group",
    "IdempotencyRecord",
    "PageCursor",
    "PublishedEvent",
    "Recording",
    "Reply",
    "StreamTicket",
    "Ticket",
    "Token",
    "utc_now",
]


def utc_now() -> datetime:
    """Now, in UTC, to the millisecond: what every store keeps exactly."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


@dataclasses.dataclass
class Channel:
    channel_id: int
    name: str
    department_id: int
    key_hash: str
    created_at: datetime
    enabled: bool = True
    # PBX user id -> employee id.
    pbx_users: dict[str, int] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Department:
    department_id: int
    name: str


@dataclasses.dataclass(frozen=True)
class Group:
    group_id: int
    name: str
    members: tuple[int, ...] = ()


@dataclasses.dataclass
class Token:
    token_id: str
    # sha256 of the secret; the secret itself is never stored.
    secret_hash: str
    role: str
    created_at: datetime
    employee_id: int | None = None
    description: str = ""
    revoked_at: datetime | None = None
    # None: the token never expires.
    expires_at: datetime | None = None

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now


@dataclasses.dataclass
class Contact:
    contact_id: int
    # What calls are matched by (domain.contact_key); unique.
    key: str
    phone_e164: str
    created_at: datetime
    name: str = ""


@dataclasses.dataclass(frozen=True)
class Comment:
    text: str
    at: datetime
    author: str = "pbx"


@dataclasses.dataclass
class Ticket:
    ticket_id: int
    call_id: int
    channel_id: int
    department_id: int
    created_at: datetime
    executor_id: int | None = None
    contact_id: int | None = None
    comments: list[Comment] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Recording:
    recording_id: str
    channel_id: int
    format: str
    content_type: str
    size: int
    sha256: str
    created_at: datetime
    duration_seconds: float | None = None
    file_name: str = ""
    # Set when a call takes the recording; unattached ones are swept away.
    call_id: int | None = None

    @property
    def attached(self) -> bool:
        return self.call_id is not None


@dataclasses.dataclass(frozen=True)
class Card:
    """What a call card shows (SPEC 5)."""

    call_id: int
    ticket_id: int
    channel_id: int
    channel_name: str
    direction: Direction
    phone: str
    contact_name: str
    status: Status
    user_id: int | None
    user_name: str
    pbx_call_id: str | None
    created_at: datetime
    recording_id: str | None


_T = TypeVar("_T")


def _shallow(record: _T) -> _T:
    """A new record with the same field values (a dataclass's fields live in its __dict__);
    a tenth of copy.copy's cost."""
    clone: _T = object.__new__(type(record))
    clone.__dict__.update(record.__dict__)
    return clone


@dataclasses.dataclass
class CallView:
    """A call with everything shown about it: what replies, cards and events carry."""

    call: Call
    ticket: Ticket
    contact: Contact | None
    channel_name: str
    user_name: str
    recordings: list[Recording] = dataclasses.field(default_factory=list)

    @property
    def call_id(self) -> int:
        return self.call.call_id

    def copy(self) -> CallView:
        """A copy that shares nothing mutable with this view: what an event publishes, so
        that its subscribers see the call as it was, whatever its owner does next. Equal to
        what decoding the view's stored payload gives (times are to the millisecond, as
        every store keeps them: utc_now)."""
        call = _shallow(self.call)
        call.history = [_shallow(h) for h in call.history]
        ticket = _shallow(self.ticket)
        ticket.comments = list(ticket.comments)
        return CallView(
            call=call,
            ticket=ticket,
            contact=None if self.contact is None else _shallow(self.contact),
            channel_name=self.channel_name,
            user_name=self.user_name,
            recordings=[_shallow(r) for r in self.recordings],
        )

    @property
    def current_recording(self) -> Recording | None:
        return self.recordings[-1] if self.recordings else None

    def card(self) -> Card:
        call = self.call
        current = self.current_recording
        return Card(
            call_id=call.call_id,
            ticket_id=self.ticket.ticket_id,
            channel_id=call.channel_id,
            channel_name=self.channel_name,
            direction=call.direction,
            phone=call.phone,
            contact_name=self.contact.name if self.contact else "",
            status=call.status,
            user_id=call.user_id,
            user_name=self.user_name,
            pbx_call_id=call.pbx_call_id,
            created_at=call.created_at,
            recording_id=current.recording_id if current else None,
        )


@dataclasses.dataclass(frozen=True)
class PublishedEvent:
    """One entry of the event log: a call changed, and what each employee's card did."""

    seq: int
    kind: str  # created / updated / expired
    view: CallView
    card_events: tuple[CardEvent, ...]
    at: datetime


@dataclasses.dataclass(frozen=True)
class Reply:
    """What a create_call / update_call answered: replayed for a repeated Idempotency-Key."""

    view: CallView
    created: bool = False


# Idempotency keys replay their first reply for this long (SPEC 3).
IDEMPOTENCY_TTL = timedelta(hours=24)
# Events are kept at least 24 h so that clients can resume (SPEC 5).
EVENT_TTL = timedelta(hours=48)


@dataclasses.dataclass(frozen=True)
class IdempotencyRecord:
    channel_id: int
    key: str
    # sha256 of the request it was first used with.
    fingerprint: str
    created_at: datetime
    reply: Reply


@dataclasses.dataclass(frozen=True)
class CallQuery:
    """The history's filters; every field left empty matches everything."""

    channel_id: int | None = None
    # domain.contact_key of the phone asked for.
    phone_key: str | None = None
    statuses: tuple[Status, ...] = ()
    direction: Direction | None = None
    # Calls the employee was in the audience of, or is bound to.
    employee_id: int | None = None
    created_from: datetime | None = None  # inclusive
    created_to: datetime | None = None  # exclusive


@dataclasses.dataclass(frozen=True)
class PageCursor:
    """Where a page of the history (newest first) ended: the next starts after this call."""

    created_at: datetime
    call_id: int


@dataclasses.dataclass(frozen=True)
class StreamTicket:
    """A one-time pass for opening one live stream, in place of the token that asked for it:
    it carries that token's identity and scope."""

    # sha256 of the ticket; the ticket itself is never stored.
    ticket_hash: str
    token_id: str
    role: str
    employee_id: int | None
    created_at: datetime
    expires_at: datetime


@dataclasses.dataclass(frozen=True)
class AuditEntry:
    """One line of the audit log: who did what, when, from where. Never changed once written."""

    entry_id: int
    at: datetime
    action: str
    token_id: str
    role: str
    employee_id: int | None
    address: str
    target: str = ""
    details: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class AuditQuery:
    """The audit log's filters; every field left empty matches everything."""

    action: str | None = None
    token_id: str | None = None
    employee_id: int | None = None
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive


@dataclasses.dataclass(frozen=True)
class CallbackQuery:
    """Which callbacks to list: open ones come oldest waiting first (first_missed_at), resolved
    ones most recently resolved first; with both states, the open ones first."""

    states: frozenset[CallbackState] = frozenset({CallbackState.OPEN})
    channel_id: int | None = None
    # Callbacks of calls the employee could see.
    employee_id: int | None = None


@dataclasses.dataclass(frozen=True)
class CallbackCursor:
    """Where a page of callbacks ended: its last callback's state, the time it is ordered by
    (first missed when open, resolved when resolved) and id."""

    state: CallbackState
    at: datetime
    callback_id: int
