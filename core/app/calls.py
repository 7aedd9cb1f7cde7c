"""Call commands: create_call and update_call as the PBX sends them, each one
unit of work (the call, its contact, ticket, recording and event together),
made safe to repeat by an Idempotency-Key."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol, TypeVar

from core import domain
from core.app import units
from core.app.admin import ChannelRef, resolve_channel
from core.app.callbacks import follow_call
from core.app.cardlog import record_event
from core.domain import Call, CreateCall, UpdateCall
from core.errors import DomainError, IdempotencyConflict, InvalidRequest, NotFound
from core.model import (
    IDEMPOTENCY_TTL,
    CallView,
    Channel,
    Comment,
    Contact,
    IdempotencyRecord,
    Recording,
    Reply,
    Ticket,
    utc_now,
)
from core.storage.port import Store, UnitOfWork

MAX_IDEMPOTENCY_KEY = 255

T = TypeVar("T")


class RecordingDiscard(Protocol):
    """Removes a recording that no call took (its request failed or was a replay)."""

    def discard(self, recording_id: str) -> None: ...


class CallCommands:
    def __init__(
        self,
        store: Store,
        *,
        region: str = "RU",
        recordings: RecordingDiscard | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.store = store
        self.region = region
        self.recordings = recordings
        self.clock = clock

    def create_call(
        self, ref: ChannelRef, command: CreateCall, idempotency_key: str = ""
    ) -> tuple[CallView, bool]:
        reply = self._idempotent(
            ref,
            idempotency_key,
            lambda: _fingerprint("create_call", command),
            lambda uow, channel: self._create(uow, channel, command),
            command.recording_id,
        )
        return reply.view, reply.created

    def update_call(
        self, ref: ChannelRef, command: UpdateCall, idempotency_key: str = ""
    ) -> CallView:
        reply = self._idempotent(
            ref,
            idempotency_key,
            lambda: _fingerprint("update_call", command),
            lambda uow, channel: Reply(self._update(uow, channel, command)),
            command.recording_id,
        )
        return reply.view

    def in_batch(self, commands: Sequence[Callable[[], T]]) -> list[T | DomainError]:
        """Run commands one after another with their commits shared (`Store.batch`): each
        command's result, or the domain error that refused it alone. Returns once every
        command applied is on disk; raises, reporting none, when storing them failed."""
        results: list[T | DomainError] = []
        with self.store.batch():
            for command in commands:
                try:
                    results.append(command())
                except DomainError as error:
                    results.append(error)
        return results

    # --- idempotency ------------------------------------------------------------------

    def _idempotent(
        self,
        ref: ChannelRef,
        key: str,
        fingerprint_of: Callable[[], str],
        run: Callable[[UnitOfWork, Channel], Reply],
        recording_id: str | None,
    ) -> Reply:
        """Run the command in one unit of work; with a key, once per (channel, key)
        for 24 h, replaying the first reply. The record is written in the same unit
        as the call, so a crash leaves both or neither, and a request that fails
        leaves no record: its retry runs afresh."""
        if len(key) > MAX_IDEMPOTENCY_KEY:
            raise InvalidRequest.of({"Idempotency-Key": "longer than 255 characters"})
        now = self.clock()
        # Only a request with a key is compared with an earlier one.
        fingerprint = fingerprint_of() if key else ""

        def work(uow: UnitOfWork) -> tuple[Reply, bool]:
            channel = resolve_channel(uow, ref)
            if not key:
                return run(uow, channel), False
            previous = uow.idempotency.get(channel.channel_id, key)
            if previous is not None and now - previous.created_at < IDEMPOTENCY_TTL:
                if previous.fingerprint != fingerprint:
                    raise IdempotencyConflict(
                        "this Idempotency-Key was used with a different request"
                    )
                return previous.reply, True
            if previous is not None:
                # Expired but not yet removed by the retention sweep: start afresh.
                uow.idempotency.remove(channel.channel_id, key)
            reply = run(uow, channel)
            uow.idempotency.add(IdempotencyRecord(channel.channel_id, key, fingerprint, now, reply))
            return reply, False

        try:
            reply, replayed = units.write(self.store, work)
        except BaseException:
            self._discard(recording_id)
            raise
        if replayed:
            # The first request's recording is the call's; this retry's copy is not kept.
            self._discard(recording_id)
        return reply

    def _discard(self, recording_id: str | None) -> None:
        if recording_id and self.recordings is not None:
            self.recordings.discard(recording_id)

    # --- create_call -------------------------------------------------------------------

    def _create(self, uow: UnitOfWork, channel: Channel, command: CreateCall) -> Reply:
        command.validate()
        channel_id = channel.channel_id
        if command.pbx_call_id is not None:
            existing = uow.calls.by_pbx_call_id(channel_id, command.pbx_call_id)
            if existing is not None:
                return Reply(self._repeat_create(uow, channel, existing, command), created=False)
        recording = _claim(uow, command.recording_id, channel_id)
        audience = _audience(uow, channel, command)
        now = self.clock()
        call = Call.open(
            call_id=uow.calls.next_id(),
            channel_id=channel_id,
            command=command,
            audience=audience,
            telephony_ids=_with_telephony(uow, audience.user_id),
            now=now,
        )
        call.phone_e164 = domain.normalize_phone(call.phone, self.region)
        call.phone_key = domain.contact_key_of(call.phone, call.phone_e164)
        contact = uow.contacts.by_key(call.phone_key)
        if contact is None:
            contact = Contact(uow.contacts.next_id(), call.phone_key, call.phone_e164, now)
            uow.contacts.add(contact)
        ticket = Ticket(
            ticket_id=uow.tickets.next_id(),
            call_id=call.call_id,
            channel_id=channel_id,
            department_id=channel.department_id,
            created_at=now,
            executor_id=call.user_id,
            contact_id=contact.contact_id,
            comments=[Comment(command.comment, now)] if command.comment else [],
        )
        call.ticket_id = ticket.ticket_id
        call.contact_id = contact.contact_id
        uow.calls.add(call)
        uow.tickets.add(ticket)
        follow_call(uow, call, None, None)
        recordings = []
        if recording is not None:
            recording.call_id = call.call_id
            uow.recordings.save(recording)
            recordings.append(recording)
        view = CallView(
            call=call,
            ticket=ticket,
            contact=contact,
            channel_name=channel.name,
            user_name=units.employee_name(uow, call.user_id),
            recordings=recordings,
        )
        record_event(uow, "created", view, before=(), card_changed=True, at=now)
        return Reply(view, created=True)

    def _repeat_create(
        self, uow: UnitOfWork, channel: Channel, existing: Call, command: CreateCall
    ) -> CallView:
        """A create_call for a known pbx_call_id: the same call, with a differing
        status applied the way update_call would."""
        comment = command.comment
        if comment:
            ticket = uow.tickets.get(existing.ticket_id)
            if ticket is not None and any(c.text == comment for c in ticket.comments):
                # A retried create_call: its comment is on the ticket already.
                comment = None
        update = UpdateCall(
            status=command.initial_status,
            call_id=existing.call_id,
            comment=comment,
            recording_id=command.recording_id,
        )
        return self._update(uow, channel, update)

    # --- update_call ---------------------------------------------------------------------

    def _update(self, uow: UnitOfWork, channel: Channel, command: UpdateCall) -> CallView:
        command.validate()
        assert command.status is not None
        bind_to = command.user_id
        if bind_to is not None and not uow.employees.get_many([bind_to]):
            raise InvalidRequest.of({"user_id": f"unknown employee {bind_to}"})
        if command.pbx_user_id is not None:
            bind_to = channel.pbx_users.get(command.pbx_user_id)
        call = _find_call(uow, channel.channel_id, command)
        call.check_status(command.status)
        recording = _claim(uow, command.recording_id, channel.channel_id)
        before = units.view_of(uow, _copy_call(call), channel)
        call.apply(
            status=command.status,
            user_id=bind_to,
            pbx_user_id=command.pbx_user_id,
            telephony_ids=_with_telephony(uow, call.user_id if bind_to is None else bind_to),
            now=self.clock(),
        )
        uow.calls.save(call)
        follow_call(uow, call, before.call.status, before.call.answered_at)
        ticket = dataclasses.replace(before.ticket, comments=list(before.ticket.comments))
        if bind_to is not None:
            ticket.executor_id = bind_to
        if command.comment:
            ticket.comments.append(Comment(command.comment, call.updated_at))
        if ticket != before.ticket:
            uow.tickets.save(ticket)
        recordings = list(before.recordings)
        if recording is not None:
            recording.call_id = call.call_id
            uow.recordings.save(recording)
            recordings.append(recording)
        user_name = before.user_name
        if call.user_id != before.call.user_id:
            user_name = units.employee_name(uow, call.user_id)
        view = dataclasses.replace(
            before, call=call, ticket=ticket, user_name=user_name, recordings=recordings
        )
        record_event(
            uow,
            "updated",
            view,
            before=before.call.viewers,
            card_changed=before.card() != view.card(),
            at=call.updated_at,
        )
        return view


def _copy_call(call: Call) -> Call:
    """A copy that `call.apply` leaves as it is: it replaces fields and appends to the
    history, and changes nothing the two share (status changes are never altered)."""
    copied = copy.copy(call)
    copied.history = list(call.history)
    return copied


def _find_call(uow: UnitOfWork, channel_id: int, command: UpdateCall) -> Call:
    if command.call_id is not None:
        call = uow.calls.get(command.call_id)
        # A channel key never reaches another channel's calls.
        if call is None or call.channel_id != channel_id:
            raise NotFound(f"call {command.call_id} not found")
        return call
    assert command.pbx_call_id is not None
    found = uow.calls.by_pbx_call_id(channel_id, command.pbx_call_id)
    if found is None:
        raise NotFound(f"call with pbx_call_id {command.pbx_call_id!r} not found")
    return found


def _claim(uow: UnitOfWork, recording_id: str | None, channel_id: int) -> Recording | None:
    """The uploaded recording a request names, if it is this channel's and no call's yet."""
    if not recording_id:
        return None
    recording = uow.recordings.get(recording_id)
    if recording is None or recording.channel_id != channel_id or recording.attached:
        raise InvalidRequest.of({"audio_record": "unknown recording"})
    return recording


def _audience(uow: UnitOfWork, channel: Channel, command: CreateCall) -> domain.Audience:
    groups = uow.groups.get_many(command.group_ids)
    group_members = {g.group_id: g.members for g in groups.values()}
    named = list(command.user_ids)
    named += [m for members in group_members.values() for m in members]
    named += [channel.pbx_users[p] for p in command.pbx_user_ids if p in channel.pbx_users]
    employees = uow.employees.get_many(named)
    audience = domain.resolve_audience(command, employees, group_members, channel.pbx_users)
    if not audience.employee_ids:
        employees = uow.employees.with_telephony()
        audience = domain.resolve_audience(command, employees, group_members, channel.pbx_users)
    return audience


def _with_telephony(uow: UnitOfWork, employee_id: int | None) -> set[int]:
    """Of the employee a call is bound to (the only one whose telephony flag decides who
    sees the card), the id when it has telephony: one keyed read, not the directory."""
    if employee_id is None:
        return set()
    found = uow.employees.get_many([employee_id]).get(employee_id)
    return {employee_id} if found is not None and found.telephony else set()


def _fingerprint(action: str, command: CreateCall | UpdateCall) -> str:
    fields = dataclasses.asdict(command)
    # The recording is new on every retry; the request is the same.
    fields.pop("recording_id", None)
    payload = json.dumps([action, fields], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()
