"""Missed-call callbacks for the helpdesk: GET /api/v2/telephony/callbacks and
POST /api/v2/telephony/callbacks/{callback_id}/called-back.

The caller's token goes to core as it came: an employee sees (and marks, as itself) the
callbacks of the calls it could see; supervisor, service and admin tokens all of them.
"""

from __future__ import annotations

from typing import Any

import falcon.asgi

from gateway import convert, params
from gateway.auth import caller_authorization
from gateway.core_client import CoreClient
from telephony.v1 import call_service_pb2
from telephony.v1.call_service_pb2 import Callback
from vocabulary import CALLBACK_RESOLUTION, CALLBACK_STATE, STATUS

# `?state=`: the callback states each choice asks core for ("all" is both).
STATES_BY_CHOICE: dict[str, tuple[Callback.State, ...]] = {
    **{name: (CALLBACK_STATE.number(name),) for name in CALLBACK_STATE},
    "all": tuple(CALLBACK_STATE.number(name) for name in CALLBACK_STATE),
}
DEFAULT_STATE = "open"


def callback_json(callback: Callback) -> dict[str, Any]:
    return {
        "callback_id": callback.callback_id,
        "channel_id": callback.channel_id,
        "channel_name": callback.channel_name,
        "phone": callback.phone,
        "phone_display": callback.phone_display,
        "contact_name": callback.contact_name,
        "attempts": callback.attempts,
        "first_missed_at": convert.time_json(callback, "first_missed_time"),
        "last_missed_at": convert.time_json(callback, "last_missed_time"),
        "last_call_id": callback.last_call_id,
        "last_status": STATUS.name(callback.last_state),
        "state": CALLBACK_STATE.name(callback.state),
        "resolved_at": convert.time_json(callback, "resolve_time"),
        "resolution": CALLBACK_RESOLUTION.name(callback.resolution),
        "resolved_by_employee_id": convert.optional(callback, "resolved_by_employee_id"),
        "resolved_by_name": callback.resolved_by_name or None,
        "resolved_by_call_id": convert.optional(callback, "resolved_by_call_id"),
    }


def list_request(req: falcon.asgi.Request) -> call_service_pb2.ListCallbacksRequest:
    """The ListCallbacks request for the query string; every bad parameter is named in one 422."""
    request = call_service_pb2.ListCallbacksRequest()
    fields: params.Fields = {}
    state = params.raw(req, "state") or DEFAULT_STATE
    if state in STATES_BY_CHOICE:
        request.states.extend(STATES_BY_CHOICE[state])
    else:
        fields["state"] = "one of " + ", ".join(STATES_BY_CHOICE)
    request.channel_id = params.positive_id(req, "channel_id", fields)
    params.read_page(req, request, fields)
    params.check(fields)
    return request


class CallbacksResource:
    """GET /api/v2/telephony/callbacks: a page of callbacks, and how many are open."""

    def __init__(self, core: CoreClient) -> None:
        self._core = core

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        req.context.action = "list_callbacks"
        authorization = caller_authorization(req)
        request = list_request(req)
        reply = await self._core.list_callbacks(request, authorization, req.context.request_id)
        resp.media = {
            "data": [callback_json(callback) for callback in reply.callbacks],
            "next_page_token": reply.next_page_token or None,
            "open_count": reply.open_count,
        }


class CalledBackResource:
    """POST /api/v2/telephony/callbacks/{callback_id}/called-back: the number was called back
    (by the token's employee; by no one named with another token)."""

    def __init__(self, core: CoreClient) -> None:
        self._core = core

    async def on_post(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, callback_id: str
    ) -> None:
        req.context.action = "mark_called_back"
        authorization = caller_authorization(req)
        request = call_service_pb2.MarkCalledBackRequest(
            callback_id=params.path_id(callback_id, "callback")
        )
        reply = await self._core.mark_called_back(request, authorization, req.context.request_id)
        resp.media = {"data": callback_json(reply.callback)}
