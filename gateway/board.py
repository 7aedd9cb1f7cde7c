"""The supervisor board: GET /api/v2/telephony/board (once) and
GET /api/v2/telephony/board/stream (Server-Sent Events `board`, after every change).

Supervisor and admin tokens only: core refuses the others (403), before a stream starts.
"""

from __future__ import annotations

import asyncio
from typing import Any

import falcon.asgi
from falcon.asgi import SSEvent

from gateway import convert
from gateway.auth import caller_authorization
from gateway.cards import EventStream
from gateway.config import Config
from gateway.core_client import CoreClient
from telephony.v1 import call_service_pb2
from telephony.v1.call_service_pb2 import Board, BoardCall, ChannelFigures, EmployeeState
from vocabulary import DIRECTION, EMPLOYEE_STATE, STATUS

BOARD_EVENT = "board"


def board_json(board: Board) -> dict[str, Any]:
    return {
        "day": board.day,
        "timezone": board.timezone,
        "at": convert.time_json(board, "time"),
        "calls": [_call_json(call) for call in board.calls],
        "employees": [_employee_json(employee) for employee in board.employees],
        "figures": [_figures_json(figures) for figures in board.figures],
    }


def _call_json(call: BoardCall) -> dict[str, Any]:
    return {
        "call_id": call.call_id,
        "ticket_id": call.ticket_id,
        "channel_id": call.channel_id,
        "channel_name": call.channel_name,
        "direction": DIRECTION.name(call.direction),
        "phone": call.phone,
        "phone_display": call.phone_display,
        "contact_name": call.contact_name,
        "call_status": STATUS.name(call.state),
        "created_at": convert.time_json(call, "create_time"),
        "answered_at": convert.time_json(call, "answer_time"),
        "user_id": convert.optional(call, "user_id"),
        "user_name": call.user_name,
        "audience": [
            {"employee_id": employee.employee_id, "name": employee.name}
            for employee in call.audience
        ],
    }


def _employee_json(employee: EmployeeState) -> dict[str, Any]:
    return {
        "employee_id": employee.employee_id,
        "name": employee.name,
        "state": EMPLOYEE_STATE.name(employee.state),
        "call_id": convert.optional(employee, "call_id"),
    }


def _figures_json(figures: ChannelFigures) -> dict[str, Any]:
    return {
        "channel_id": figures.channel_id,
        "channel_name": figures.channel_name,
        "incoming": figures.incoming,
        "answered": figures.answered,
        "missed": figures.missed,
        "answer_rate": convert.optional(figures, "answer_rate"),
        # Not set when there are no calls to average.
        "average_wait_seconds": convert.seconds(figures, "average_wait"),
        "average_talk_seconds": convert.seconds(figures, "average_talk"),
        "open_callbacks": figures.open_callbacks,
    }


def board_event(response: call_service_pb2.WatchBoardResponse) -> SSEvent:
    return SSEvent(event=BOARD_EVENT, json=board_json(response.board))


class BoardResource:
    """GET /api/v2/telephony/board: the board as it is now."""

    def __init__(self, core: CoreClient) -> None:
        self._core = core

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        req.context.action = "get_board"
        authorization = caller_authorization(req)
        request = call_service_pb2.GetBoardRequest()
        reply = await self._core.get_board(request, authorization, req.context.request_id)
        resp.media = {"data": board_json(reply.board)}


class BoardStreamResource:
    """GET /api/v2/telephony/board/stream: the board at once, then after every change."""

    def __init__(self, config: Config, core: CoreClient, stopping: asyncio.Event) -> None:
        self._core = core
        self._stream = EventStream(config, core, stopping)

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        req.context.action = "watch_board"
        authorization = self._stream.authorization(req)
        request = call_service_pb2.WatchBoardRequest()
        call = self._core.watch_board(request, authorization, req.context.request_id)
        feed, first = await self._stream.open(call, call_service_pb2.WatchBoardResponse)
        self._stream.respond(req, resp, feed, first, board_event)
