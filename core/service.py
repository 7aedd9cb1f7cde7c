"""The helpdesk's telephony desk: every use case of core, over the domain and the store.

Methods are blocking (they talk to MongoDB) and run on core's storage
executor, never on the event loop. Each one authorises, validates through the
domain, writes, and publishes what changed to the event log.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, Protocol

from pymongo import DESCENDING
from pymongo.errors import DuplicateKeyError

from core import domain
from core.auth import Principal, Role, new_secret, new_token_id, secret_hash
from core.domain import Call, CardEvent, CreateCall, Status, UpdateCall
from core.errors import (
    Conflict,
    IdempotencyConflict,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from core.storage import IDEMPOTENCY_TTL, Document, Store, call_from_doc, utc, utc_now

# Optimistic writes retried this many times before the request is refused as a conflict.
SAVE_ATTEMPTS = 8
MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 50


@dataclasses.dataclass
class CallView:
    """A call with everything shown about it: stored as is for idempotent replays."""

    call: Document
    ticket: Document
    contact: Document
    channel_name: str
    user_name: str
    recordings: list[Document]

    @property
    def call_id(self) -> int:
        return int(self.call["_id"])

    def domain_call(self) -> Call:
        return call_from_doc(self.call)

    @property
    def current_recording(self) -> Document | None:
        return self.recordings[-1] if self.recordings else None

    def to_doc(self) -> Document:
        # Shallow: whoever stores it copies it (mongomock) or encodes it (pymongo).
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> CallView:
        return cls(**{f.name: doc[f.name] for f in dataclasses.fields(cls)})


def card_of(view: CallView) -> Document:
    """What a call card shows (SPEC 5)."""
    call = view.call
    current = view.current_recording
    return {
        "call_id": call["_id"],
        "ticket_id": view.ticket["_id"],
        "channel_id": call["channel_id"],
        "channel_name": view.channel_name,
        "direction": call["direction"],
        "phone": call["phone"],
        "contact_name": view.contact.get("name", ""),
        "call_status": call["status"],
        "user_id": call.get("user_id"),
        "user_name": view.user_name,
        "pbx_call_id": call.get("pbx_call_id"),
        "created_at": call["created_at"],
        "recording_id": current["_id"] if current else None,
    }


@dataclasses.dataclass(frozen=True)
class ChannelRef:
    key: str | None = None
    channel_id: int | None = None


@dataclasses.dataclass(frozen=True)
class CallFilter:
    channel_id: int | None = None
    phone: str | None = None
    statuses: tuple[Status, ...] = ()
    direction: domain.Direction | None = None
    employee_id: int | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None


@dataclasses.dataclass(frozen=True)
class PublishedEvent:
    """One entry of the event log, as handed to live subscribers."""

    seq: int
    kind: str
    view: CallView
    card_events: tuple[CardEvent, ...]
    at: datetime


class EventSink(Protocol):
    """Where published events go live (the in-process hub); called from the
    storage thread, right after the event is stored."""

    def publish(self, event: PublishedEvent) -> None: ...


class RecordingAttachments(Protocol):
    """The recordings module's part in a call update."""

    def claim(self, recording_id: str, channel_id: int) -> Document: ...

    def attach(self, recording_id: str, call_id: int) -> Document: ...

    def discard(self, recording_id: str) -> None: ...


class TelephonyDesk:
    def __init__(
        self,
        store: Store,
        *,
        region: str = "RU",
        public_url: str = "",
        events: EventSink | None = None,
        recordings: RecordingAttachments | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.store = store
        self.region = region
        self.public_url = public_url.rstrip("/")
        self.events = events
        self.recordings = recordings
        self.clock = clock
        # Ends the open streams of a revoked token (set by the server's wiring).
        self.on_token_revoked: Callable[[str], None] | None = None
        # Keeps seq allocation, insert and live publication in one order per process.
        self._publish_lock = threading.Lock()

    # --- auth -----------------------------------------------------------

    def authenticate(self, token: str | None) -> Principal:
        if not token:
            raise Unauthenticated("missing token: send 'authorization: Bearer <token>'")
        doc = self.store.tokens.find_one({"hash": secret_hash(token)})
        if doc is None or doc.get("revoked_at") is not None:
            raise Unauthenticated("unknown or revoked token")
        return Principal(
            token_id=str(doc["_id"]), role=Role(doc["role"]), employee_id=doc.get("employee_id")
        )

    # --- channels -----------------------------------------------------------

    def resolve_channel(self, ref: ChannelRef) -> Document:
        if ref.key is not None:
            key = ref.key.removeprefix("@")
            doc = self.store.channels.find_one({"key_hash": secret_hash(key)}) if key else None
        elif ref.channel_id is not None:
            doc = self.store.channels.find_one({"_id": ref.channel_id})
        else:
            raise InvalidRequest.of({"channel": "channel_key or channel_id is required"})
        if doc is None or not doc.get("enabled", True):
            # No hint whether the key exists but is disabled.
            raise NotFound("unknown channel")
        return dict(doc)

    def channel_url(self, key: str) -> str:
        return f"{self.public_url}/api/v2/telephony/calls/{key}"

    def create_channel(
        self, name: str, department_id: int, key: str | None = None
    ) -> tuple[Document, str]:
        errors = {}
        if not name.strip():
            errors["name"] = "required"
        if department_id and self.store.departments.find_one({"_id": department_id}) is None:
            errors["department_id"] = f"unknown department {department_id}"
        if key is not None and len(key) < 8:
            errors["key"] = "at least 8 characters"
        if errors:
            raise InvalidRequest.of(errors)
        key = key or new_secret()
        doc = {
            "_id": self.store.next_id("channel"),
            "name": name.strip(),
            "department_id": department_id,
            "enabled": True,
            "key_hash": secret_hash(key),
            "pbx_users": {},
            "created_at": self.clock(),
        }
        try:
            self.store.channels.insert_one(doc)
        except DuplicateKeyError:
            raise InvalidRequest.of({"key": "this key is already in use"}) from None
        return doc, key

    def get_channel(self, channel_id: int) -> Document:
        doc = self.store.channels.find_one({"_id": channel_id})
        if doc is None:
            raise NotFound(f"channel {channel_id} not found")
        return dict(doc)

    def list_channels(self) -> list[Document]:
        return [dict(d) for d in self.store.channels.find().sort("_id")]

    def update_channel(
        self,
        channel_id: int,
        *,
        name: str | None = None,
        department_id: int | None = None,
        enabled: bool | None = None,
    ) -> Document:
        changes: dict[str, Any] = {}
        if name is not None:
            if not name.strip():
                raise InvalidRequest.of({"name": "must not be empty"})
            changes["name"] = name.strip()
        if department_id is not None:
            if self.store.departments.find_one({"_id": department_id}) is None:
                raise InvalidRequest.of({"department_id": f"unknown department {department_id}"})
            changes["department_id"] = department_id
        if enabled is not None:
            changes["enabled"] = enabled
        if changes:
            result = self.store.channels.update_one({"_id": channel_id}, {"$set": changes})
            if result.matched_count == 0:
                raise NotFound(f"channel {channel_id} not found")
        return self.get_channel(channel_id)

    def rotate_channel_key(self, channel_id: int) -> tuple[Document, str]:
        key = new_secret()
        result = self.store.channels.update_one(
            {"_id": channel_id}, {"$set": {"key_hash": secret_hash(key)}}
        )
        if result.matched_count == 0:
            raise NotFound(f"channel {channel_id} not found")
        return self.get_channel(channel_id), key

    def map_pbx_user(self, channel_id: int, pbx_user_id: str, employee_id: int) -> Document:
        pbx_user_id = pbx_user_id.strip()
        errors = {}
        if (
            not pbx_user_id
            or len(pbx_user_id) > domain.MAX_PBX_ID_LENGTH
            or "." in pbx_user_id
            or pbx_user_id.startswith("$")
        ):
            errors["pbx_user_id"] = "a non-empty id without '.' or a leading '$'"
        if self.store.employees.find_one({"_id": employee_id}) is None:
            errors["employee_id"] = f"unknown employee {employee_id}"
        if errors:
            raise InvalidRequest.of(errors)
        result = self.store.channels.update_one(
            {"_id": channel_id}, {"$set": {f"pbx_users.{pbx_user_id}": employee_id}}
        )
        if result.matched_count == 0:
            raise NotFound(f"channel {channel_id} not found")
        return self.get_channel(channel_id)

    def unmap_pbx_user(self, channel_id: int, pbx_user_id: str) -> Document:
        pbx_user_id = pbx_user_id.strip()
        if not pbx_user_id or "." in pbx_user_id or pbx_user_id.startswith("$"):
            raise InvalidRequest.of({"pbx_user_id": "a non-empty id without '.' or a leading '$'"})
        result = self.store.channels.update_one(
            {"_id": channel_id}, {"$unset": {f"pbx_users.{pbx_user_id}": ""}}
        )
        if result.matched_count == 0:
            raise NotFound(f"channel {channel_id} not found")
        return self.get_channel(channel_id)

    # --- directory --------------------------------------------------------

    def upsert_department(self, department_id: int, name: str) -> Document:
        _require_id_and_name(department_id, name, "department_id")
        return self.store.upsert_by_id(
            self.store.departments, {"_id": department_id, "name": name.strip()}
        )

    def upsert_employee(self, employee_id: int, name: str, telephony: bool) -> Document:
        _require_id_and_name(employee_id, name, "employee_id")
        return self.store.upsert_by_id(
            self.store.employees,
            {"_id": employee_id, "name": name.strip(), "telephony": telephony},
        )

    def upsert_group(self, group_id: int, name: str, members: Iterable[int]) -> Document:
        _require_id_and_name(group_id, name, "group_id")
        member_ids = list(dict.fromkeys(members))
        known = self.store.employees_by_id(member_ids)
        unknown = [m for m in member_ids if m not in known]
        if unknown:
            raise InvalidRequest.of(
                {"members": "unknown employees: " + ", ".join(map(str, unknown))}
            )
        return self.store.upsert_by_id(
            self.store.groups, {"_id": group_id, "name": name.strip(), "members": member_ids}
        )

    def list_departments(self) -> list[Document]:
        return [dict(d) for d in self.store.departments.find().sort("_id")]

    def list_employees(self) -> list[Document]:
        return [dict(d) for d in self.store.employees.find().sort("_id")]

    def list_groups(self) -> list[Document]:
        return [dict(d) for d in self.store.groups.find().sort("_id")]

    def issue_token(
        self,
        role: Role,
        employee_id: int | None,
        description: str = "",
        secret: str | None = None,
    ) -> tuple[Document, str]:
        if role is Role.EMPLOYEE:
            if not employee_id or self.store.employees.find_one({"_id": employee_id}) is None:
                raise InvalidRequest.of({"employee_id": "an existing employee is required"})
        elif employee_id:
            raise InvalidRequest.of({"employee_id": "only employee tokens name an employee"})
        secret = secret or new_secret()
        doc = {
            "_id": new_token_id(),
            "hash": secret_hash(secret),
            "role": role.value,
            "employee_id": employee_id if role is Role.EMPLOYEE else None,
            "description": description,
            "created_at": self.clock(),
            "revoked_at": None,
        }
        self.store.tokens.insert_one(doc)
        return doc, secret

    def revoke_token(self, token_id: str) -> None:
        result = self.store.tokens.update_one(
            {"_id": token_id, "revoked_at": None}, {"$set": {"revoked_at": self.clock()}}
        )
        if result.matched_count == 0:
            raise NotFound(f"token {token_id} not found")
        if self.on_token_revoked is not None:
            self.on_token_revoked(token_id)

    def list_tokens(self) -> list[Document]:
        return [dict(d) for d in self.store.tokens.find({"revoked_at": None}).sort("created_at")]

    # --- calls ------------------------------------------------------------

    def create_call(
        self, ref: ChannelRef, command: CreateCall, idempotency_key: str = ""
    ) -> tuple[CallView, bool]:
        channel = self.resolve_channel(ref)
        fingerprint = _fingerprint("create_call", command)

        def run() -> Document:
            view, created = self._create_call(channel, command)
            return {"view": view.to_doc(), "created": created}

        reply = self._idempotent(channel, idempotency_key, fingerprint, run, command.recording_id)
        return CallView.from_doc(reply["view"]), bool(reply["created"])

    def update_call(
        self, ref: ChannelRef, command: UpdateCall, idempotency_key: str = ""
    ) -> CallView:
        channel = self.resolve_channel(ref)
        fingerprint = _fingerprint("update_call", command)

        def run() -> Document:
            return {"view": self._update_call(channel, command).to_doc()}

        reply = self._idempotent(channel, idempotency_key, fingerprint, run, command.recording_id)
        return CallView.from_doc(reply["view"])

    def _idempotent(
        self,
        channel: Document,
        key: str,
        fingerprint: str,
        run: Callable[[], Document],
        recording_id: str | None,
    ) -> Document:
        """Run `run` once per (channel, key) for 24 h and replay its first reply.

        A request that fails changes nothing, so its key is released and a
        retry runs afresh; a recording sent with it is removed.
        """
        if not key:
            return self._discarding_recording_on_error(run, recording_id)
        if len(key) > 255:
            raise InvalidRequest.of({"Idempotency-Key": "longer than 255 characters"})
        doc_id = f"{channel['_id']}:{key}"
        now = self.clock()
        try:
            self.store.idempotency.insert_one(
                {"_id": doc_id, "fingerprint": fingerprint, "created_at": now, "reply": None}
            )
        except DuplicateKeyError:
            previous = self.store.idempotency.find_one({"_id": doc_id})
            created_at = utc(previous["created_at"]) if previous is not None else None
            if (
                previous is not None
                and created_at is not None
                and now - created_at >= IDEMPOTENCY_TTL
            ):
                # Expired but not yet removed by the TTL monitor: start afresh.
                self.store.idempotency.delete_one(
                    {"_id": doc_id, "created_at": previous["created_at"]}
                )
                return self._idempotent(channel, key, fingerprint, run, recording_id)
            if recording_id and self.recordings is not None:
                self.recordings.discard(recording_id)
            if previous is None or previous.get("fingerprint") != fingerprint:
                raise IdempotencyConflict(
                    "this Idempotency-Key was used with a different request"
                ) from None
            if previous.get("reply") is None:
                raise IdempotencyConflict(
                    "a request with this Idempotency-Key is still being processed"
                ) from None
            return dict(previous["reply"])
        try:
            reply = self._discarding_recording_on_error(run, recording_id)
        except BaseException:
            self.store.idempotency.delete_one({"_id": doc_id})
            raise
        self.store.idempotency.update_one({"_id": doc_id}, {"$set": {"reply": reply}})
        return reply

    def _discarding_recording_on_error(
        self, run: Callable[[], Document], recording_id: str | None
    ) -> Document:
        try:
            return run()
        except BaseException:
            if recording_id and self.recordings is not None:
                self.recordings.discard(recording_id)
            raise

    def _create_call(self, channel: Document, command: CreateCall) -> tuple[CallView, bool]:
        command.validate()
        channel_id = int(channel["_id"])
        if command.pbx_call_id is not None:
            existing = self.store.call_doc_by_pbx_id(channel_id, command.pbx_call_id)
            if existing is not None:
                return self._repeat_create(channel, existing, command), False
        if command.recording_id and self.recordings is not None:
            self.recordings.claim(command.recording_id, channel_id)
        audience = self._audience(channel, command)
        now = self.clock()
        telephony_ids = set(self.store.telephony_employees())
        call = Call.open(
            call_id=self.store.next_id("call"),
            channel_id=channel_id,
            command=command,
            audience=audience,
            telephony_ids=telephony_ids,
            now=now,
        )
        contact_key = domain.contact_key(call.phone, self.region)
        phone_e164 = domain.normalize_phone(call.phone, self.region)
        ticket_id = self.store.next_id("ticket")
        try:
            self.store.insert_call(
                call,
                {
                    "ticket_id": ticket_id,
                    "phone_e164": phone_e164,
                    "phone_key": contact_key,
                    "recording_ids": [],
                },
            )
        except DuplicateKeyError:
            # A concurrent duplicate with the same pbx_call_id won: that is the call.
            assert command.pbx_call_id is not None
            existing = self.store.call_doc_by_pbx_id(channel_id, command.pbx_call_id)
            if existing is None:
                raise Conflict("concurrent create_call; retry") from None
            return self._repeat_create(channel, existing, command), False
        contact = self.store.find_or_create_contact(contact_key, phone_e164, now)
        comments = [_comment(command.comment, now)] if command.comment else []
        self.store.tickets.insert_one(
            {
                "_id": ticket_id,
                "call_id": call.call_id,
                "channel_id": channel_id,
                "department_id": channel.get("department_id", 0),
                "executor_id": call.user_id,
                "contact_id": contact["_id"],
                "comments": comments,
                "created_at": now,
            }
        )
        self.store.calls.update_one({"_id": call.call_id}, {"$set": {"contact_id": contact["_id"]}})
        if command.recording_id and self.recordings is not None:
            self._attach_recording(call.call_id, command.recording_id)
        view = self.view(call.call_id, channel)
        self._publish("created", view, before=(), card_changed=True)
        return view, True

    def _repeat_create(
        self, channel: Document, existing: Document, command: CreateCall
    ) -> CallView:
        """A create_call for a known pbx_call_id: the same call, with a differing
        status applied the way update_call would."""
        comment = command.comment
        if comment:
            ticket = self.store.tickets.find_one({"_id": existing["ticket_id"]}) or {}
            if any(c.get("text") == comment for c in ticket.get("comments", ())):
                # A retried create_call: its comment is on the ticket already.
                comment = None
        update = UpdateCall(
            status=command.initial_status,
            call_id=int(existing["_id"]),
            comment=comment,
            recording_id=command.recording_id,
        )
        return self._update_call(channel, update)

    def _audience(self, channel: Document, command: CreateCall) -> domain.Audience:
        pbx_users: dict[str, int] = {k: int(v) for k, v in channel.get("pbx_users", {}).items()}
        group_members = self.store.group_members(command.group_ids)
        named = list(command.user_ids)
        named += [m for members in group_members.values() for m in members]
        named += [pbx_users[p] for p in command.pbx_user_ids if p in pbx_users]
        employees = self.store.employees_by_id(named)
        audience = domain.resolve_audience(command, employees, group_members, pbx_users)
        if not audience.employee_ids:
            employees = self.store.telephony_employees()
            audience = domain.resolve_audience(command, employees, group_members, pbx_users)
        return audience

    def _update_call(self, channel: Document, command: UpdateCall) -> CallView:
        command.validate()
        assert command.status is not None
        channel_id = int(channel["_id"])
        bind_to = command.user_id
        if bind_to is not None and not self.store.employees_by_id([bind_to]):
            raise InvalidRequest.of({"user_id": f"unknown employee {bind_to}"})
        if command.pbx_user_id is not None:
            mapped = channel.get("pbx_users", {}).get(command.pbx_user_id)
            bind_to = int(mapped) if mapped is not None else None
        for _ in range(SAVE_ATTEMPTS):
            doc = self._find_call(channel_id, command)
            call = call_from_doc(doc)
            call.check_status(command.status)
            if command.recording_id and self.recordings is not None:
                self.recordings.claim(command.recording_id, channel_id)
            before = self.view(call.call_id, channel)
            before_viewers = call.viewers
            call.apply(
                status=command.status,
                user_id=bind_to,
                pbx_user_id=command.pbx_user_id,
                telephony_ids=set(self.store.telephony_employees()),
                now=self.clock(),
            )
            if self.store.save_call(call, {}):
                break
        else:
            raise Conflict("the call kept changing; retry")
        ticket_changes: dict[str, Any] = {}
        if bind_to is not None:
            ticket_changes["$set"] = {"executor_id": bind_to}
        if command.comment:
            ticket_changes["$push"] = {"comments": _comment(command.comment, call.updated_at)}
        if ticket_changes:
            self.store.tickets.update_one({"_id": doc["ticket_id"]}, ticket_changes)
        if command.recording_id and self.recordings is not None:
            self._attach_recording(call.call_id, command.recording_id)
        view = self.view(call.call_id, channel)
        self._publish(
            "updated", view, before=before_viewers, card_changed=card_of(before) != card_of(view)
        )
        return view

    def _find_call(self, channel_id: int, command: UpdateCall) -> Document:
        if command.call_id is not None:
            doc = self.store.call_doc(command.call_id)
            # A channel key never reaches another channel's calls.
            if doc is None or doc["channel_id"] != channel_id:
                raise NotFound(f"call {command.call_id} not found")
            return doc
        assert command.pbx_call_id is not None
        doc = self.store.call_doc_by_pbx_id(channel_id, command.pbx_call_id)
        if doc is None:
            raise NotFound(f"call with pbx_call_id {command.pbx_call_id!r} not found")
        return doc

    def _attach_recording(self, call_id: int, recording_id: str) -> None:
        assert self.recordings is not None
        self.recordings.attach(recording_id, call_id)
        self.store.calls.update_one(
            {"_id": call_id},
            {"$addToSet": {"recording_ids": recording_id}, "$inc": {"version": 1}},
        )

    def view(self, call_id: int, channel: Document | None = None) -> CallView:
        doc = self.store.call_doc(call_id)
        if doc is None:
            raise NotFound(f"call {call_id} not found")
        if channel is None or channel["_id"] != doc["channel_id"]:
            channel = self.store.channels.find_one({"_id": doc["channel_id"]}) or {}
        ticket = self.store.tickets.find_one({"_id": doc["ticket_id"]}) or {
            "_id": doc["ticket_id"],
            "comments": [],
        }
        contact = {}
        if doc.get("contact_id") is not None:
            contact = self.store.contacts.find_one({"_id": doc["contact_id"]}) or {}
        user_name = ""
        if doc.get("user_id") is not None:
            employee = self.store.employees.find_one({"_id": doc["user_id"]})
            user_name = str(employee["name"]) if employee else ""
        recordings = []
        if doc.get("recording_ids"):
            recordings = list(self.store.recordings.find({"call_id": call_id}).sort("created_at"))
        return CallView(
            call=doc,
            ticket=dict(ticket),
            contact=dict(contact),
            channel_name=str(channel.get("name", "")),
            user_name=user_name,
            recordings=[dict(r) for r in recordings],
        )

    def get_call(self, principal: Principal, call_id: int) -> CallView:
        view = self.view(call_id)
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
        query = self._call_query(filters)
        if page_token:
            created_at, call_id = _decode_page_token(page_token)
            query = {
                "$and": [
                    query,
                    {
                        "$or": [
                            {"created_at": {"$lt": created_at}},
                            {"created_at": created_at, "_id": {"$lt": call_id}},
                        ]
                    },
                ]
            }
        docs = list(
            self.store.calls.find(query)
            .sort([("created_at", DESCENDING), ("_id", DESCENDING)])
            .limit(size + 1)
        )
        next_token = ""
        if len(docs) > size:
            docs = docs[:size]
            last = docs[-1]
            next_token = _encode_page_token(utc(last["created_at"]), int(last["_id"]))
        return [self.view(int(d["_id"])) for d in docs], next_token

    def _call_query(self, filters: CallFilter) -> Document:
        query: Document = {}
        if filters.channel_id:
            query["channel_id"] = filters.channel_id
        if filters.phone:
            query["phone_key"] = domain.contact_key(filters.phone, self.region)
        if filters.statuses:
            query["status"] = {"$in": [s.value for s in filters.statuses]}
        if filters.direction is not None:
            query["direction"] = filters.direction.value
        if filters.employee_id:
            query["$or"] = [{"audience": filters.employee_id}, {"user_id": filters.employee_id}]
        created: Document = {}
        if filters.created_from is not None:
            created["$gte"] = filters.created_from
        if filters.created_to is not None:
            created["$lt"] = filters.created_to
        if created:
            query["created_at"] = created
        return query

    # --- events -----------------------------------------------------------

    def _publish(
        self, kind: str, view: CallView, *, before: tuple[int, ...], card_changed: bool
    ) -> PublishedEvent:
        after = view.domain_call()
        card_events = tuple(domain.card_events(before, after, card_changed))
        with self._publish_lock:
            seq = self.store.next_id("event")
            at = self.clock()
            self.store.events.insert_one(
                {
                    "_id": seq,
                    "at": at,
                    "kind": kind,
                    "call_id": view.call_id,
                    "view": view.to_doc(),
                    "card_events": [
                        {"employee_id": e.employee_id, "change": e.change.value, "reason": e.reason}
                        for e in card_events
                    ],
                    "card_viewers": [e.employee_id for e in card_events],
                }
            )
            event = PublishedEvent(seq, kind, view, card_events, at)
            if self.events is not None:
                self.events.publish(event)
        return event

    def last_event_seq(self) -> int:
        doc = self.store.counters.find_one({"_id": "event"})
        return int(doc["seq"]) if doc else 0

    def card_snapshot(self, employee_id: int) -> tuple[int, list[CallView]]:
        """The cards an employee sees now, and the seq they are current as of."""
        with self._publish_lock:
            seq = self.last_event_seq()
            docs = list(self.store.calls.find({"viewers": employee_id}).sort("_id"))
        return seq, [self.view(int(d["_id"])) for d in docs]

    def _log_reaches(self, after_seq: int) -> bool:
        last = self.last_event_seq()
        if after_seq > last:
            # A seq this log never gave out: another deployment, or a restarted embedded store.
            return False
        oldest = self.store.events.find_one({}, sort=[("_id", 1)])
        if oldest is None:
            return after_seq == last
        return int(oldest["_id"]) <= after_seq + 1

    def card_events_after(self, employee_id: int, after_seq: int) -> list[Document] | None:
        """The stored events an employee's card stream missed; None when the log
        no longer reaches back that far."""
        if not self._log_reaches(after_seq):
            return None
        return [
            dict(d)
            for d in self.store.events.find(
                {"card_viewers": employee_id, "_id": {"$gt": after_seq}}
            ).sort("_id")
        ]

    def call_events_after(self, after_seq: int) -> list[Document] | None:
        if not self._log_reaches(after_seq):
            return None
        return [dict(d) for d in self.store.events.find({"_id": {"$gt": after_seq}}).sort("_id")]

    def expire_stale_calls(self, policy: domain.ExpiryPolicy) -> int:
        """Hide the cards of active calls the PBX stopped reporting (reason
        `expired`); their status stays as the PBX left it."""
        now = self.clock()
        expired = 0
        for status in (Status.RINGING, Status.IN_PROGRESS):
            cutoff = now - policy.deadline(status)
            stale = self.store.calls.find(
                {"status": status.value, "updated_at": {"$lte": cutoff}, "expired": False}
            )
            for doc in list(stale):
                call = call_from_doc(doc)
                before = call.viewers
                call.expire()
                if not self.store.save_call(call, {}):
                    continue  # updated meanwhile: no longer stale
                view = self.view(call.call_id)
                self._publish("expired", view, before=before, card_changed=False)
                expired += 1
        return expired

    # --- seed -------------------------------------------------------------

    def apply_seed(self, seed: Mapping[str, Any]) -> None:
        """Load departments, employees, groups, channels and tokens as upserts."""
        for d in seed.get("departments", []):
            self.upsert_department(int(d["id"]), str(d["name"]))
        for e in seed.get("employees", []):
            self.upsert_employee(int(e["id"]), str(e["name"]), bool(e.get("telephony", False)))
        for g in seed.get("groups", []):
            self.upsert_group(int(g["id"]), str(g["name"]), [int(m) for m in g.get("members", [])])
        for c in seed.get("channels", []):
            self._seed_channel(c)
        for t in seed.get("tokens", []):
            existing = self.store.tokens.find_one({"hash": secret_hash(str(t["token"]))})
            if existing is None:
                self.issue_token(
                    Role(t["role"]),
                    t.get("employee_id"),
                    t.get("description", "seed"),
                    secret=str(t["token"]),
                )
        for c in seed.get("contacts", []):
            key = domain.contact_key(str(c["phone"]), self.region)
            contact = self.store.find_or_create_contact(
                key, domain.normalize_phone(str(c["phone"]), self.region), self.clock()
            )
            self.store.contacts.update_one({"_id": contact["_id"]}, {"$set": {"name": c["name"]}})

    def _seed_channel(self, seed: Mapping[str, Any]) -> None:
        key = str(seed["key"])
        existing = self.store.channels.find_one({"key_hash": secret_hash(key)})
        if existing is None:
            if "id" in seed:
                self.store.raise_counter("channel", int(seed["id"]) - 1)
            doc, _ = self.create_channel(str(seed["name"]), int(seed.get("department_id", 0)), key)
            channel_id = int(doc["_id"])
        else:
            channel_id = int(existing["_id"])
            self.update_channel(
                channel_id,
                name=str(seed["name"]),
                department_id=int(seed.get("department_id", existing.get("department_id", 0))),
            )
        for pbx_user_id, employee_id in seed.get("pbx_users", {}).items():
            self.map_pbx_user(channel_id, str(pbx_user_id), int(employee_id))


def _require_id_and_name(entity_id: int, name: str, id_field: str) -> None:
    errors = {}
    if entity_id <= 0:
        errors[id_field] = "must be a positive integer"
    if not name.strip():
        errors["name"] = "required"
    if errors:
        raise InvalidRequest.of(errors)


def _sees(principal: Principal, call: Mapping[str, Any]) -> bool:
    return principal.employee_id in call.get("audience", ()) or (
        call.get("user_id") is not None and call.get("user_id") == principal.employee_id
    )


def _comment(text: str, at: datetime) -> Document:
    return {"text": text, "at": at, "author": "pbx"}


def _fingerprint(action: str, command: CreateCall | UpdateCall) -> str:
    fields = dataclasses.asdict(command)
    # The recording is new on every retry; the request is the same.
    fields.pop("recording_id", None)
    payload = json.dumps([action, fields], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def _encode_page_token(created_at: datetime | None, call_id: int) -> str:
    assert created_at is not None
    raw = json.dumps([created_at.isoformat(), call_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_page_token(token: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        created_at, call_id = json.loads(raw)
        return datetime.fromisoformat(created_at), int(call_id)
    except (ValueError, TypeError) as exc:
        raise InvalidRequest.of({"page_token": "not a token from a previous page"}) from exc
