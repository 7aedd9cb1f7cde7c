"""Call history for the helpdesk: GET /api/v2/telephony/history and .../history/{call_id}.

The caller's token (Bearer or ?access_token=) goes to core as it came, so core
decides what it may see: an employee token sees only the calls shown to or
bound to that employee.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import falcon.asgi

from gateway import convert
from gateway.auth import caller_authorization
from gateway.config import Config
from gateway.core_client import CoreClient
from gateway.errors import GatewayError, invalid_fields
from telephony.v1 import call_pb2, call_service_pb2
from telephony.v1.call_service_pb2 import ListCallsRequest
from vocabulary import DIRECTION, STATUS

MAX_PAGE_SIZE = 500
_ID = re.compile(r"[1-9][0-9]{0,17}")
_MAX_FILTER_CHARS = 255


_time = convert.time_json


def _seconds(message: Any, field: str) -> float | None:
    if not message.HasField(field):
        return None
    value = getattr(message, field).ToTimedelta().total_seconds()
    return float(value) if value else None


def _format(recording: call_pb2.Recording) -> str | None:
    if recording.format == call_pb2.Recording.FORMAT_UNSPECIFIED:
        return None
    return call_pb2.Recording.Format.Name(recording.format).removeprefix("FORMAT_").lower()


def recording_json(recording: call_pb2.Recording, public_url: str) -> dict[str, Any]:
    return {
        "recording_id": recording.recording_id,
        "format": _format(recording),
        "content_type": recording.content_type,
        "size_bytes": recording.size_bytes,
        "duration_seconds": _seconds(recording, "duration"),
        "sha256": recording.sha256 or None,
        "created_at": _time(recording, "create_time"),
        "url": convert.absolute_link(public_url, recording.signed_path),
        "url_expires_at": _time(recording, "expire_time"),
    }


def call_summary(call: call_pb2.Call, public_url: str) -> dict[str, Any]:
    """A call as listed in the history: the PBX reply's names, plus when and who."""
    current = call.recording.signed_path if call.HasField("recording") else ""
    return {
        "call_id": call.call_id,
        "ticket_id": call.ticket.ticket_id,
        "channel_id": call.channel_id,
        "channel_name": call.channel_name,
        "pbx_call_id": call.pbx_call_id if call.HasField("pbx_call_id") else None,
        "direction": DIRECTION.name(call.direction),
        "phone": call.phone,
        "phone_display": call.phone_display,
        "phone_e164": call.phone_e164 or None,
        "contact_name": call.ticket.contact.name,
        "call_status": STATUS.name(call.state),
        "user_id": call.user_id if call.HasField("user_id") else None,
        "user_name": call.user_name,
        "pbx_user_id": call.pbx_user_id if call.HasField("pbx_user_id") else None,
        "created_at": _time(call, "create_time"),
        "answered_at": _time(call, "answer_time"),
        "ended_at": _time(call, "end_time"),
        "updated_at": _time(call, "update_time"),
        "talk_duration_seconds": _seconds(call, "talk_duration"),
        "wait_seconds": _wait_seconds(call),
        "audio_record": convert.absolute_link(public_url, current),
        "comments": [
            {"text": c.text, "author": c.author, "created_at": _time(c, "create_time")}
            for c in call.ticket.comments
        ],
    }


def _wait_seconds(call: call_pb2.Call) -> float | None:
    """From creation to answer, or to the end when never answered; None while ringing."""
    until = "answer_time" if call.HasField("answer_time") else "end_time"
    if not (call.HasField("create_time") and call.HasField(until)):
        return None
    waited = getattr(call, until).ToDatetime() - call.create_time.ToDatetime()
    return max(0.0, waited.total_seconds())


def call_details(call: call_pb2.Call, public_url: str) -> dict[str, Any]:
    """One call with everything kept about it."""
    ticket = call.ticket
    return {
        **call_summary(call, public_url),
        "status_history": [
            {"call_status": STATUS.name(change.state), "at": _time(change, "time")}
            for change in call.status_history
        ],
        "recordings": [recording_json(r, public_url) for r in call.recordings],
        "ticket": {
            "ticket_id": ticket.ticket_id,
            "department_id": ticket.department_id or None,
            "executor_id": (
                ticket.executor_employee_id if ticket.HasField("executor_employee_id") else None
            ),
            "created_at": _time(ticket, "create_time"),
        },
        "contact": {
            "contact_id": ticket.contact.contact_id or None,
            "name": ticket.contact.name,
            "phone_e164": ticket.contact.phone_e164 or None,
        },
    }


def _instant(raw: str) -> datetime:
    """ISO-8601 date or date-time; one without an offset is UTC."""
    value = datetime.fromisoformat(raw.strip())
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def list_request(req: falcon.asgi.Request) -> call_service_pb2.ListCallsRequest:
    """The ListCalls request for the query string; every bad filter is named in one 422."""
    request = call_service_pb2.ListCallsRequest()
    fields: dict[str, str] = {}
    for read in (_phone, _statuses, _direction, _ids, _bounds, read_page):
        read(req, request, fields)
    if fields:
        raise invalid_fields(fields)
    return request


# Each reads its filters into the request, or says in `fields` what is wrong with them.
Fields = dict[str, str]


def _phone(req: falcon.asgi.Request, request: ListCallsRequest, fields: Fields) -> None:
    phone = (req.get_param("phone") or "").strip()
    if len(phone) > _MAX_FILTER_CHARS:
        fields["phone"] = "too long"
    elif phone:
        request.phone = phone


def _statuses(req: falcon.asgi.Request, request: ListCallsRequest, fields: Fields) -> None:
    statuses = [
        part.strip()
        for value in req.get_param_as_list("status") or []
        for part in value.split(",")
        if part.strip()
    ]
    if any(s not in STATUS for s in statuses):
        fields["status"] = "one of " + ", ".join(STATUS.names)
    else:
        request.states.extend(dict.fromkeys(STATUS.number(s) for s in statuses))


def _direction(req: falcon.asgi.Request, request: ListCallsRequest, fields: Fields) -> None:
    direction = (req.get_param("direction") or "").strip()
    if direction and direction not in DIRECTION:
        fields["direction"] = " or ".join(DIRECTION.names)
    elif direction:
        request.direction = DIRECTION.number(direction)


def _ids(req: falcon.asgi.Request, request: ListCallsRequest, fields: Fields) -> None:
    for name, field in (("employee", "employee_id"), ("channel", "channel_id")):
        raw = (req.get_param(name) or "").strip()
        if raw and not _ID.fullmatch(raw):
            fields[name] = "a positive whole number"
        elif raw:
            setattr(request, field, int(raw))


def _bounds(req: falcon.asgi.Request, request: ListCallsRequest, fields: Fields) -> None:
    bounds: dict[str, datetime] = {}
    for name, field in (("from", "create_time_from"), ("to", "create_time_to")):
        raw = (req.get_param(name) or "").strip()
        if not raw:
            continue
        try:
            bounds[name] = _instant(raw)
            getattr(request, field).FromDatetime(bounds[name])
        except (ValueError, OverflowError):
            fields[name] = "an ISO-8601 date or date-time, e.g. 2026-01-31T09:00:00Z"
    if "from" in bounds and "to" in bounds and bounds["from"] >= bounds["to"]:
        fields["to"] = "must be later than from"


def read_page(
    req: falcon.asgi.Request,
    request: ListCallsRequest | call_service_pb2.ListCallbacksRequest,
    fields: Fields,
) -> None:
    """`page_size` and `page_token`, as every paged listing reads them."""
    raw_size = (req.get_param("page_size") or "").strip()
    if raw_size and (not raw_size.isdigit() or not 1 <= int(raw_size) <= MAX_PAGE_SIZE):
        fields["page_size"] = f"a whole number from 1 to {MAX_PAGE_SIZE}"
    elif raw_size:
        request.page_size = int(raw_size)
    token = (req.get_param("page_token") or "").strip()
    if len(token) > 1024:
        fields["page_token"] = "not a token from a previous page"
    elif token:
        request.page_token = token


class CallHistoryResource:
    """GET /api/v2/telephony/history: calls, newest first, a page at a time."""

    def __init__(self, config: Config, core: CoreClient) -> None:
        self._config = config
        self._core = core

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        req.context.action = "list_calls"
        authorization = caller_authorization(req)
        request = list_request(req)
        reply = await self._core.list_calls(request, authorization, req.context.request_id)
        resp.media = {
            "data": [
                call_summary(call, self._config.public_url_for(req.scheme)) for call in reply.calls
            ],
            "next_page_token": reply.next_page_token or None,
        }


class CallResource:
    """GET /api/v2/telephony/history/{call_id}: one call with its history, comments and
    recordings."""

    def __init__(self, config: Config, core: CoreClient) -> None:
        self._config = config
        self._core = core

    async def on_get(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, call_id: str
    ) -> None:
        req.context.action = "get_call"
        authorization = caller_authorization(req)
        if not _ID.fullmatch(call_id):
            raise GatewayError(404, "not_found", "call not found")
        request = call_service_pb2.GetCallRequest(call_id=int(call_id))
        reply = await self._core.get_call(request, authorization, req.context.request_id)
        resp.media = {"data": call_details(reply.call, self._config.public_url_for(req.scheme))}
