"""The call rules of the helpdesk's telephony channel, in plain Python.

Statuses and their transitions, who sees a call's card, who a call is bound
to, and how a request is validated. Nothing here knows about gRPC or MongoDB:
the storage port keeps the state, the transports carry it.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
from collections.abc import Collection, Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta, tzinfo

import phonenumbers

from core.errors import FinalStatus, InvalidRequest


# Status, Direction and CardChange restate the proto enums, whose wire names the `vocabulary`
# package derives; tests/test_vocabulary.py fails when the two part. A new status is decided
# here: final unless in ACTIVE_STATUSES, and whether reaching it answers the call
# (ANSWERING_STATUSES) or an incoming call ending in it waits for a callback and counts as
# missed on the board (UNANSWERED_STATUSES).
class Status(enum.StrEnum):
    RINGING = "ringing"
    IN_PROGRESS = "in-progress"
    CANCELED = "canceled"
    MISSED = "missed"
    FAILED = "failed"
    ANSWERED = "answered"
    BUSY = "busy"

    @property
    def is_active(self) -> bool:
        return self in ACTIVE_STATUSES

    @property
    def is_final(self) -> bool:
        return not self.is_active


# The active-status rule: a call in one of these is live and its card shown; every other
# status is final. Storage builds its live-call queries from it, and the vocabulary's copy for
# the gateway (which may not import core) is pinned to it by tests/test_vocabulary.py.
ACTIVE_STATUSES = frozenset({Status.RINGING, Status.IN_PROGRESS})
# The first of these sets answered_at: the talk starts.
ANSWERING_STATUSES = frozenset({Status.IN_PROGRESS, Status.ANSWERED})


class Direction(enum.StrEnum):
    INCOMING = "incoming"
    OUTGOING = "outgoing"


class CardChange(enum.StrEnum):
    SHOW = "show"
    UPDATE = "update"
    HIDE = "hide"


class HideReason(enum.StrEnum):
    FINAL = "final"
    ASSIGNED = "assigned"
    EXPIRED = "expired"


# Longest accepted values: a PBX has no business sending more, and bounded
# fields keep one request from bloating a stored document.
MAX_PHONE_LENGTH = 64
MAX_PBX_ID_LENGTH = 128
MAX_COMMENT_LENGTH = 10_000
MAX_AUDIENCE_IDS = 1_000


# --- commands -------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CreateCall:
    """A create_call request as the PBX sent it, after transport decoding."""

    direction: Direction | None
    phone: str
    status: Status | None = None
    pbx_call_id: str | None = None
    pbx_user_ids: tuple[str, ...] = ()
    user_ids: tuple[int, ...] = ()
    group_ids: tuple[int, ...] = ()
    comment: str | None = None
    recording_id: str | None = None

    def validate(self) -> None:
        errors: dict[str, str] = {}
        if self.direction is None:
            errors["direction"] = "required: incoming or outgoing"
        _check_phone(errors, self.phone)
        _check_pbx_id(errors, "pbx_call_id", self.pbx_call_id)
        _check_comment(errors, self.comment)
        _check_no_nul(
            errors,
            phone=self.phone,
            pbx_call_id=self.pbx_call_id,
            pbx_user_ids=self.pbx_user_ids,
            comment=self.comment,
        )
        _check_audience_ids(errors, self.user_ids, self.group_ids, self.pbx_user_ids)
        if errors:
            raise InvalidRequest.of(errors)

    @property
    def initial_status(self) -> Status:
        return self.status or Status.RINGING


@dataclasses.dataclass(frozen=True)
class UpdateCall:
    """An update_call request as the PBX sent it, after transport decoding."""

    status: Status | None
    call_id: int | None = None
    pbx_call_id: str | None = None
    user_id: int | None = None
    pbx_user_id: str | None = None
    comment: str | None = None
    recording_id: str | None = None

    def validate(self) -> None:
        errors: dict[str, str] = {}
        if self.status is None:
            errors["call_status"] = "required"
        if self.call_id is None and self.pbx_call_id is None:
            errors["call_id"] = "call_id or pbx_call_id is required"
        elif self.call_id is not None and self.pbx_call_id is not None:
            message = "give call_id or pbx_call_id, not both"
            errors["call_id"] = errors["pbx_call_id"] = message
        if self.call_id is not None and self.call_id <= 0:
            errors["call_id"] = "must be a positive integer"
        _check_pbx_id(errors, "pbx_call_id", self.pbx_call_id)
        if self.user_id is not None and self.pbx_user_id is not None:
            message = "give user_id or pbx_user_id, not both"
            errors["user_id"] = errors["pbx_user_id"] = message
        if self.user_id is not None and self.user_id <= 0:
            errors["user_id"] = "must be a positive integer"
        _check_pbx_id(errors, "pbx_user_id", self.pbx_user_id)
        _check_comment(errors, self.comment)
        _check_no_nul(
            errors,
            pbx_call_id=self.pbx_call_id,
            pbx_user_id=self.pbx_user_id,
            comment=self.comment,
        )
        if errors:
            raise InvalidRequest.of(errors)


def _check_phone(errors: dict[str, str], phone: str) -> None:
    phone = phone.strip()
    if not phone:
        errors["phone"] = "required"
    elif len(phone) > MAX_PHONE_LENGTH:
        errors["phone"] = f"longer than {MAX_PHONE_LENGTH} characters"
    elif not any(ch.isdigit() for ch in phone):
        errors["phone"] = "must contain digits"


def _check_audience_ids(
    errors: dict[str, str],
    user_ids: tuple[int, ...],
    group_ids: tuple[int, ...],
    pbx_user_ids: tuple[str, ...],
) -> None:
    """One way of naming the audience at most, each a bounded list of well-formed ids."""
    named: dict[str, tuple[int, ...] | tuple[str, ...]] = {
        "user_ids": user_ids,
        "group_ids": group_ids,
        "pbx_user_ids": pbx_user_ids,
    }
    given = [name for name, ids in named.items() if ids]
    if len(given) > 1:
        message = "only one of user_ids, group_ids, pbx_user_ids may be given"
        errors.update({name: message for name in given})
    for name, ids in named.items():
        if len(ids) > MAX_AUDIENCE_IDS:
            errors[name] = f"more than {MAX_AUDIENCE_IDS} ids"
    if any(not i.strip() or len(i) > MAX_PBX_ID_LENGTH for i in pbx_user_ids):
        errors["pbx_user_ids"] = (
            f"ids must be non-empty strings of at most {MAX_PBX_ID_LENGTH} characters"
        )
    for name, int_ids in (("user_ids", user_ids), ("group_ids", group_ids)):
        if any(i <= 0 for i in int_ids):
            errors[name] = "ids must be positive integers"


def _check_pbx_id(errors: dict[str, str], name: str, value: str | None) -> None:
    if value is None:
        return
    if not value.strip():
        errors[name] = "must not be empty"
    elif len(value) > MAX_PBX_ID_LENGTH:
        errors[name] = f"longer than {MAX_PBX_ID_LENGTH} characters"


def _check_comment(errors: dict[str, str], comment: str | None) -> None:
    if comment is not None and len(comment) > MAX_COMMENT_LENGTH:
        errors["comment"] = f"longer than {MAX_COMMENT_LENGTH} characters"


def _check_no_nul(errors: dict[str, str], **texts: str | tuple[str, ...] | None) -> None:
    """No PBX means a NUL character: it ends text early in C code and logs, and a PBX id or
    phone with one would never match the one the PBX sends next."""
    for name, value in texts.items():
        values = (value,) if isinstance(value, str) else value or ()
        if any("\x00" in text for text in values):
            errors[name] = "must not contain NUL characters"


# --- directory facts the rules need ----------------------------------------


@dataclasses.dataclass(frozen=True)
class Employee:
    employee_id: int
    name: str
    telephony: bool


@dataclasses.dataclass(frozen=True)
class Audience:
    """Who sees a new call's card, and whom the call is bound to."""

    employee_ids: tuple[int, ...]
    user_id: int | None


def resolve_audience(
    command: CreateCall,
    employees: Mapping[int, Employee],
    group_members: Mapping[int, Collection[int]],
    pbx_users: Mapping[str, int],
) -> Audience:
    """Apply SPEC 3's audience rule.

    `employees` holds every employee the command names (directly, through a
    group or through a PBX user) plus, when the named ones leave nobody,
    everyone with telephony access; unknown ids are simply absent from it.
    """
    if command.user_ids:
        named: Iterable[int] = command.user_ids
    elif command.group_ids:
        named = (m for g in command.group_ids for m in sorted(group_members.get(g, ())))
    elif command.pbx_user_ids:
        named = (pbx_users[p] for p in command.pbx_user_ids if p in pbx_users)
    else:
        named = ()
    chosen = _unique(e for e in named if e in employees and employees[e].telephony)
    if not chosen:
        chosen = tuple(sorted(e.employee_id for e in employees.values() if e.telephony))
        # Everyone with access sees the card; nobody is bound unless that is one person.
    user_id = chosen[0] if len(chosen) == 1 else None
    return Audience(employee_ids=chosen, user_id=user_id)


def _unique(ids: Iterable[int]) -> tuple[int, ...]:
    return tuple(dict.fromkeys(ids))


# Callers call again, and every call of theirs is normalized: the numbers seen last are kept.
PHONES_REMEMBERED = 4096


@functools.lru_cache(maxsize=PHONES_REMEMBERED)
def normalize_phone(phone: str, region: str) -> str:
    """The E.164 form of a real number, or "" for anything else.

    Only a number valid in its country's numbering plan gets one: "possible" would take
    the seven digits of an internal extension for a local number and make up "+71234567",
    which nobody can dial. Short numbers are matched on their digits (`contact_key`).
    """
    try:
        parsed = phonenumbers.parse(phone.strip(), region)
    except phonenumbers.NumberParseException:
        return ""
    if not phonenumbers.is_valid_number(parsed):
        return ""
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def contact_key(phone: str, region: str) -> str:
    """What contacts are matched by: E.164 for a real number, else the digits alone."""
    return contact_key_of(phone, normalize_phone(phone, region))


def contact_key_of(phone: str, e164: str) -> str:
    """contact_key for a phone whose E.164 form (normalize_phone) is known already."""
    if e164:
        return e164
    return "digits:" + "".join(ch for ch in phone if ch.isdigit())


# --- the call -------------------------------------------------------------


@dataclasses.dataclass
class StatusChange:
    status: Status
    at: datetime


@dataclasses.dataclass
class Call:
    """A call's state as the rules see it."""

    call_id: int
    channel_id: int
    direction: Direction
    phone: str
    status: Status
    created_at: datetime
    updated_at: datetime
    pbx_call_id: str | None = None
    user_id: int | None = None
    pbx_user_id: str | None = None
    audience: tuple[int, ...] = ()
    # Who sees the card now; empty once the call is final or expired.
    viewers: tuple[int, ...] = ()
    history: list[StatusChange] = dataclasses.field(default_factory=list)
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    expired: bool = False
    # Bumped by every stored change: a save from a stale read is refused.
    version: int = 0
    ticket_id: int = 0
    contact_id: int | None = None
    # The phone in E.164 ("" when it is not a number) and the key contacts
    # and the history's phone filter match on.
    phone_e164: str = ""
    phone_key: str = ""

    @classmethod
    def open(
        cls,
        *,
        call_id: int,
        channel_id: int,
        command: CreateCall,
        audience: Audience,
        telephony_ids: Collection[int],
        now: datetime,
    ) -> Call:
        assert command.direction is not None  # validate() ran
        call = cls(
            call_id=call_id,
            channel_id=channel_id,
            direction=command.direction,
            phone=command.phone.strip(),
            status=command.initial_status,
            created_at=now,
            updated_at=now,
            pbx_call_id=command.pbx_call_id,
            user_id=audience.user_id,
            audience=audience.employee_ids,
        )
        call._record_status(command.initial_status, now)
        call.viewers = call.visible_to(telephony_ids)
        return call

    @property
    def talk_duration(self) -> timedelta | None:
        if self.answered_at is None or self.ended_at is None:
            return None
        return max(self.ended_at - self.answered_at, timedelta(0))

    def check_status(self, status: Status) -> None:
        """Raise FinalStatus when `status` would move a final call elsewhere."""
        if self.status.is_final and status != self.status:
            raise FinalStatus(
                f"call {self.call_id} is already {self.status.value}; "
                f"it cannot become {status.value}",
                {"call_status": f"the call is already {self.status.value}"},
            )

    def apply(
        self,
        *,
        status: Status,
        user_id: int | None,
        pbx_user_id: str | None,
        telephony_ids: Collection[int],
        now: datetime,
    ) -> None:
        """Apply an update: a status, and optionally a binding to one employee.

        `user_id` is the employee to bind (already checked to exist, or mapped
        from `pbx_user_id`); `pbx_user_id` is kept as the PBX sent it.
        """
        self.check_status(status)
        if status != self.status:
            self._record_status(status, now)
        if pbx_user_id is not None:
            self.pbx_user_id = pbx_user_id
        if user_id is not None:
            self.user_id = user_id
        self.expired = False
        self.updated_at = now
        self.viewers = self.visible_to(telephony_ids)

    def expire(self) -> None:
        """Hide the card of a call the PBX stopped reporting; its status stays."""
        self.expired = True
        self.viewers = ()

    def visible_to(self, telephony_ids: Collection[int]) -> tuple[int, ...]:
        """Who sees this call's card: nobody once final or expired; the bound
        employee alone once bound; else its audience."""
        if self.status.is_final or self.expired:
            return ()
        if self.user_id is not None:
            return (self.user_id,) if self.user_id in telephony_ids else ()
        return self.audience

    def _record_status(self, status: Status, now: datetime) -> None:
        self.status = status
        self.history.append(StatusChange(status, now))
        if status in ANSWERING_STATUSES and self.answered_at is None:
            self.answered_at = now
        if status.is_final and self.ended_at is None:
            self.ended_at = now


# --- cards ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CardEvent:
    employee_id: int
    change: CardChange
    reason: str = ""


def card_events(
    before: tuple[int, ...],
    after: Call,
    card_changed: bool,
) -> list[CardEvent]:
    """What each employee's card stream sees when a call goes from being shown
    to `before` to its new state.

    `card_changed` says whether anything a card shows changed; an unchanged
    card is not sent again.
    """
    now_visible = set(after.viewers)
    events: list[CardEvent] = []
    for employee_id in after.viewers:
        if employee_id not in before:
            events.append(CardEvent(employee_id, CardChange.SHOW))
        elif card_changed:
            events.append(CardEvent(employee_id, CardChange.UPDATE))
    if after.status.is_final:
        reason = HideReason.FINAL
    elif after.expired:
        reason = HideReason.EXPIRED
    else:
        reason = HideReason.ASSIGNED
    events.extend(
        CardEvent(employee_id, CardChange.HIDE, reason.value)
        for employee_id in before
        if employee_id not in now_visible
    )
    return events


@dataclasses.dataclass(frozen=True)
class ExpiryPolicy:
    """How long an active call may go without an update before its card is hidden."""

    ringing: timedelta = timedelta(minutes=15)
    in_progress: timedelta = timedelta(hours=4)

    def deadline(self, status: Status) -> timedelta:
        return self.ringing if status is Status.RINGING else self.in_progress

    def is_expired(self, call: Call, now: datetime) -> bool:
        if call.status.is_final or call.expired:
            return False
        return now - call.updated_at >= self.deadline(call.status)

    def stale_before(self, now: datetime) -> dict[Status, datetime]:
        """For each active status, the last update time that is_expired finds stale at `now`:
        what storage is asked for; is_expired has the last word on each call found."""
        return {status: now - self.deadline(status) for status in Status if status.is_active}


# --- how people read a phone ------------------------------------------------------


# One call's number is formatted for its reply, its card and every list it appears in:
# a pure function of its arguments, parsed once rather than once per message.
@functools.lru_cache(maxsize=PHONES_REMEMBERED)
def phone_display(phone: str, e164: str) -> str:
    """A phone as people read it: the international format of a number valid in the default
    region (whose E.164 form `normalize_phone` found), else the phone as the PBX sent it.

    A number merely "possible" there is shown as sent: formatting one would make up a
    country code for an extension ("+7 101") or group digits nobody dials.
    """
    if not e164:
        return phone
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return phone
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


# --- missed callbacks (SPEC 5a) -----------------------------------------------------

# How an incoming call ends when nobody took it: its number is then waiting for a callback.
UNANSWERED_STATUSES = frozenset({Status.MISSED, Status.CANCELED, Status.BUSY, Status.FAILED})


# CallbackState, Resolution and Presence restate proto enums of call_service.proto
# (Callback.State, Callback.Resolution, EmployeeState.State); tests pin them to the vocabulary.
class CallbackState(enum.StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


class Resolution(enum.StrEnum):
    CALLED_BACK = "called-back"
    ANSWERED = "answered"


def is_missed(call: Call) -> bool:
    """An incoming call that ended without anyone taking it."""
    return (
        call.direction is Direction.INCOMING
        and call.status in UNANSWERED_STATUSES
        and call.answered_at is None
    )


def opens_callback(before: Status | None, call: Call) -> bool:
    """Whether this change of `call` (from status `before`; None for a new call) is the end
    of a missed incoming call: a repeated final status is no second miss."""
    return (before is None or before.is_active) and is_missed(call)


def resolves_callback(answered_before: datetime | None, call: Call) -> bool:
    """Whether this change of `call` is its answer (its first in-progress or answered): a
    call with the number, either way, got through."""
    return answered_before is None and call.answered_at is not None


def _concerned(call: Call) -> tuple[int, ...]:
    """Who could see a call: its audience and the employee it is bound to."""
    bound = () if call.user_id is None else (call.user_id,)
    return tuple(dict.fromkeys((*call.audience, *bound)))


@dataclasses.dataclass
class Callback:
    """A number on a channel waiting to be called back: one open per (channel, phone key),
    counting the missed calls and keeping the last."""

    callback_id: int
    channel_id: int
    phone_key: str
    phone: str
    phone_e164: str
    first_missed_at: datetime
    last_missed_at: datetime
    last_call_id: int
    last_status: Status
    contact_id: int | None = None
    attempts: int = 1
    # Who could see one of its missed calls: they see the callback.
    audience: tuple[int, ...] = ()
    state: CallbackState = CallbackState.OPEN
    resolved_at: datetime | None = None
    resolution: Resolution | None = None
    resolved_by_employee_id: int | None = None
    resolved_by_call_id: int | None = None
    # The token that marked it called back ("" otherwise): who did, when no employee is named.
    resolved_by_token_id: str = ""
    # Bumped by every stored change: a save from a stale read is refused.
    version: int = 0

    @classmethod
    def of_missed(cls, callback_id: int, call: Call) -> Callback:
        assert call.ended_at is not None  # a missed call has ended
        return cls(
            callback_id=callback_id,
            channel_id=call.channel_id,
            phone_key=call.phone_key,
            phone=call.phone,
            phone_e164=call.phone_e164,
            first_missed_at=call.ended_at,
            last_missed_at=call.ended_at,
            last_call_id=call.call_id,
            last_status=call.status,
            contact_id=call.contact_id,
            audience=_concerned(call),
        )

    @property
    def is_open(self) -> bool:
        return self.state is CallbackState.OPEN

    @property
    def listed_at(self) -> datetime:
        """What callbacks are listed by: an open one's first miss (oldest waiting first), a
        resolved one's resolution (latest first)."""
        if self.is_open or self.resolved_at is None:
            return self.first_missed_at
        return self.resolved_at

    def record_miss(self, call: Call) -> None:
        """Another missed call from the number while the callback is open."""
        assert call.ended_at is not None
        self.attempts += 1
        self.phone = call.phone
        self.phone_e164 = call.phone_e164
        self.contact_id = call.contact_id
        self.last_missed_at = max(self.last_missed_at, call.ended_at)
        self.last_call_id = call.call_id
        self.last_status = call.status
        self.audience = tuple(dict.fromkeys((*self.audience, *_concerned(call))))

    def mark_called_back(self, employee_id: int | None, token_id: str, at: datetime) -> bool:
        """Someone called the number back; False (nothing changes) when resolved already:
        the first resolution is kept."""
        if not self.is_open:
            return False
        self._resolve(Resolution.CALLED_BACK, at)
        self.resolved_by_employee_id = employee_id
        self.resolved_by_token_id = token_id
        return True

    def resolve_by_answer(self, call: Call) -> bool:
        """A later call with the number was answered; False when resolved already."""
        if not self.is_open or call.answered_at is None:
            return False
        self._resolve(Resolution.ANSWERED, call.answered_at)
        self.resolved_by_call_id = call.call_id
        self.resolved_by_employee_id = call.user_id
        return True

    def _resolve(self, resolution: Resolution, at: datetime) -> None:
        self.state = CallbackState.RESOLVED
        self.resolution = resolution
        self.resolved_at = at

    def visible_to(self, employee_id: int | None) -> bool:
        return employee_id is not None and employee_id in self.audience


# --- the supervisor board -------------------------------------------------------------


class Presence(enum.StrEnum):
    """An employee's state on the board."""

    FREE = "free"
    RINGING = "ringing"
    ON_CALL = "on-call"


def on_board(call: Call) -> bool:
    """Whether the board shows the call: active, and not given up on (expired)."""
    return call.status.is_active and not call.expired


# An employee's state and the call it is about (None when free).
Busy = tuple[Presence, int | None]


def presences(employee_ids: Iterable[int], calls: Iterable[Call]) -> dict[int, Busy]:
    """Each employee's state by employee id: on a call when bound to an answered active call,
    ringing when a ringing call's card is shown to them, else free. The oldest call decides
    when several would."""
    states: dict[int, Busy] = {e: (Presence.FREE, None) for e in employee_ids}
    for call in sorted(calls, key=lambda c: c.call_id, reverse=True):
        if not on_board(call):
            continue
        if call.status is Status.IN_PROGRESS and call.user_id in states:
            states[call.user_id] = (Presence.ON_CALL, call.call_id)
        elif call.status is Status.RINGING:
            _ring(states, call)
    return states


def _ring(states: dict[int, Busy], call: Call) -> None:
    for employee_id in call.viewers:
        known = states.get(employee_id)
        if known is not None and known[0] is not Presence.ON_CALL:
            states[employee_id] = (Presence.RINGING, call.call_id)


# --- today's figures ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CallFacts:
    """What the figures need of a call."""

    call_id: int
    channel_id: int
    direction: Direction
    status: Status
    created_at: datetime
    answered_at: datetime | None = None
    ended_at: datetime | None = None


@dataclasses.dataclass(frozen=True)
class Day:
    """A calendar day in a time zone, and the UTC interval it covers."""

    day: date
    timezone: str
    start: datetime  # inclusive
    end: datetime  # exclusive


def day_of(now: datetime, zone: tzinfo, name: str) -> Day:
    """The day `now` falls on in `zone`: midnight to midnight there, whatever its length."""
    local = now.astimezone(zone).date()
    start = datetime.combine(local, time(), zone).astimezone(UTC)
    end = datetime.combine(local + timedelta(days=1), time(), zone).astimezone(UTC)
    return Day(local, name, start, end)


@dataclasses.dataclass
class Figures:
    """One channel's figures for a day."""

    incoming: int = 0
    answered: int = 0
    missed: int = 0
    wait_total: timedelta = timedelta(0)
    talk_total: timedelta = timedelta(0)
    talks: int = 0

    @property
    def answer_rate(self) -> float | None:
        return self.answered / self.incoming if self.incoming else None

    @property
    def average_wait(self) -> timedelta | None:
        return self.wait_total / self.answered if self.answered else None

    @property
    def average_talk(self) -> timedelta | None:
        return self.talk_total / self.talks if self.talks else None

    def count_created(self, call: CallFacts) -> None:
        """An incoming call created on the day."""
        self.incoming += 1
        if call.answered_at is not None:
            self.answered += 1
            self.wait_total += max(call.answered_at - call.created_at, timedelta(0))
        elif call.status in UNANSWERED_STATUSES:
            self.missed += 1

    def count_ended(self, call: CallFacts) -> None:
        """A call (either direction) that ended on the day."""
        if call.answered_at is not None and call.ended_at is not None:
            self.talks += 1
            self.talk_total += max(call.ended_at - call.answered_at, timedelta(0))


def day_figures(
    created: Iterable[CallFacts], ended: Iterable[CallFacts], day: Day
) -> dict[int, Figures]:
    """Figures by channel id: incoming calls created on the day (how many, answered, missed,
    their wait to answer), and the talk time of answered calls that ended on the day."""
    figures: dict[int, Figures] = {}
    for call in created:
        if call.direction is Direction.INCOMING and day.start <= call.created_at < day.end:
            figures.setdefault(call.channel_id, Figures()).count_created(call)
    for call in ended:
        if call.ended_at is not None and day.start <= call.ended_at < day.end:
            figures.setdefault(call.channel_id, Figures()).count_ended(call)
    return figures
