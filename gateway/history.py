"""Call history for the helpdesk: GET /api/v2/telephony/history and .../history/{call_id}.

The caller's token (Bearer or ?access_token=) goes to core as it came, so core
decides what it may see: an employee token sees only the calls shown to or
bound to that employee.
"""

from __future__ import annotations

from typing import Any

import falcon.asgi

from gateway import convert, params
from gateway.auth import caller_authorization
from gateway.config import Config
from gateway.core_client import CoreClient
from gateway.params import Fields
from telephony.v1 import call_pb2, call_service_pb2
from telephony.v1.call_service_pb2 import ListCallsRequest
from vocabulary import DIRECTION, STATUS

_time = convert.time_json


def _seconds(message: Any, field: str) -> float | None:
    """A Duration field in seconds; None when it is not set or zero."""
    return convert.seconds(message, field) or None


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


def list_request(req: falcon.asgi.Request) -> call_service_pb2.ListCallsRequest:
    """The ListCalls request for the query string; every bad filter is named in one 422."""
    request = call_service_pb2.ListCallsRequest()
    fields: Fields = {}
    for read in (_phone, _statuses, _direction, _ids, _bounds, params.read_page):
        read(req, request, fields)
    params.check(fields)
    return request


# Each reads its filters into the request, or says in `fields` what is wrong with them.


def _phone(req: falcon.asgi.Request, request: ListCallsRequest, fields: Fields) -> None:
    request.phone = params.text(req, "phone", fields)


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
    direction = params.raw(req, "direction")
    if direction and direction not in DIRECTION:
        fields["direction"] = " or ".join(DIRECTION.names)
    elif direction:
        request.direction = DIRECTION.number(direction)


def _ids(req: falcon.asgi.Request, request: ListCallsRequest, fields: Fields) -> None:
    request.employee_id = params.positive_id(req, "employee", fields)
    request.channel_id = params.positive_id(req, "channel", fields)


def _bounds(req: falcon.asgi.Request, request: ListCallsRequest, fields: Fields) -> None:
    start = params.instant(req, "from", fields, request.create_time_from)
    end = params.instant(req, "to", fields, request.create_time_to)
    if start is not None and end is not None and start >= end:
        fields["to"] = "must be later than from"


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
        request = call_service_pb2.GetCallRequest(call_id=params.path_id(call_id, "call"))
        reply = await self._core.get_call(request, authorization, req.context.request_id)
        resp.media = {"data": call_details(reply.call, self._config.public_url_for(req.scheme))}
