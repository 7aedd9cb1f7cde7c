"""A fake core for the helpdesk workspace's gateway tests: the gateway fakes' CallService,
plus callbacks and the supervisor board, with core's token rules in miniature (an unknown
token is 401; the board is a supervisor's, an employee token gets 403)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc

from telephony.v1 import call_pb2, call_service_pb2
from telephony.v1.call_service_pb2 import Board, BoardCall, Callback, ChannelFigures, EmployeeState
from tests.gateway.gateway_fakes import (
    EMPLOYEE_TOKEN,
    Failure,
    FakeCallService,
    FakeCore,
    rich_status,
)

SUPERVISOR_TOKEN = "sveta-secret"
# The one callback the fake knows (any other id is NOT_FOUND).
CALLBACK_ID = 41


def sample_callback(**overrides: Any) -> Callback:
    callback = Callback(
        callback_id=CALLBACK_ID,
        channel_id=1,
        channel_name="+7 495 000-00-00",
        phone="74951234567",
        phone_display="+7 495 123-45-67",
        phone_e164="+74951234567",
        contact_name="Ivan",
        attempts=2,
        last_call_id=731,
        last_state=call_pb2.Call.STATE_BUSY,
        state=Callback.STATE_OPEN,
    )
    callback.first_missed_time.FromJsonString("2026-01-31T06:00:00Z")
    callback.last_missed_time.FromJsonString("2026-01-31T06:05:00Z")
    for name, value in overrides.items():
        setattr(callback, name, value)
    return callback


def resolved_callback() -> Callback:
    callback = sample_callback(
        state=Callback.STATE_RESOLVED,
        resolution=Callback.RESOLUTION_CALLED_BACK,
        resolved_by_employee_id=1,
        resolved_by_name="Anna Petrova",
    )
    callback.resolve_time.FromJsonString("2026-01-31T07:00:00Z")
    return callback


def sample_board(day: str = "2026-01-31") -> Board:
    ringing = BoardCall(
        call_id=725,
        ticket_id=8592,
        channel_id=1,
        channel_name="+7 495 000-00-00",
        direction=call_pb2.DIRECTION_INCOMING,
        phone="84951234567",
        phone_display="+7 495 123-45-67",
        contact_name="Ivan",
        state=call_pb2.Call.STATE_RINGING,
        audience=[BoardCall.Employee(employee_id=1, name="Anna Petrova")],
    )
    ringing.create_time.FromJsonString("2026-01-31T06:10:00Z")
    talking = BoardCall(
        call_id=726,
        ticket_id=8593,
        channel_id=1,
        channel_name="+7 495 000-00-00",
        direction=call_pb2.DIRECTION_OUTGOING,
        phone="777777777",
        phone_display="777777777",
        state=call_pb2.Call.STATE_IN_PROGRESS,
        user_id=2,
        user_name="Boris Ivanov",
        audience=[BoardCall.Employee(employee_id=2, name="Boris Ivanov")],
    )
    talking.create_time.FromJsonString("2026-01-31T06:11:00Z")
    talking.answer_time.FromJsonString("2026-01-31T06:11:04Z")
    figures = ChannelFigures(
        channel_id=1,
        channel_name="+7 495 000-00-00",
        incoming=4,
        answered=2,
        missed=1,
        answer_rate=0.5,
        open_callbacks=1,
    )
    figures.average_wait.FromMilliseconds(12_500)
    board = Board(
        day=day,
        timezone="Europe/Moscow",
        calls=[ringing, talking],
        employees=[
            EmployeeState(
                employee_id=1, name="Anna Petrova", state=EmployeeState.STATE_RINGING, call_id=725
            ),
            EmployeeState(
                employee_id=2, name="Boris Ivanov", state=EmployeeState.STATE_ON_CALL, call_id=726
            ),
            EmployeeState(employee_id=3, name="Vera Sokolova", state=EmployeeState.STATE_FREE),
        ],
        figures=[figures],
    )
    board.time.FromJsonString("2026-01-31T06:12:00Z")
    return board


async def refuse(context: Any, *, board: bool = False) -> None:
    """Core's answer to a token it does not know, and (board) to one that is not a supervisor's."""
    token = dict(context.invocation_metadata() or ()).get("authorization")
    known = {f"Bearer {EMPLOYEE_TOKEN}", f"Bearer {SUPERVISOR_TOKEN}"}
    if token not in known:
        await context.abort_with_status(
            rich_status(Failure(grpc.StatusCode.UNAUTHENTICATED, "unauthenticated", "who?"))
        )
    if board and token != f"Bearer {SUPERVISOR_TOKEN}":
        await context.abort_with_status(
            rich_status(
                Failure(grpc.StatusCode.PERMISSION_DENIED, "permission_denied", "supervisors only")
            )
        )


class WorkspaceCallService(FakeCallService):
    def __init__(self) -> None:
        super().__init__()
        self.callbacks_reply = call_service_pb2.ListCallbacksResponse(
            callbacks=[sample_callback()], open_count=3
        )
        # Boards sent after the first one, as changes happen.
        self.boards: asyncio.Queue[Board] = asyncio.Queue()
        self.board_watches = 0
        self.board_watch_ended = asyncio.Event()

    async def ListCallbacks(
        self, request: call_service_pb2.ListCallbacksRequest, context: Any
    ) -> call_service_pb2.ListCallbacksResponse:
        self._note(request, context)
        await refuse(context)
        await self._maybe_fail(context)
        return self.callbacks_reply

    async def MarkCalledBack(
        self, request: call_service_pb2.MarkCalledBackRequest, context: Any
    ) -> call_service_pb2.MarkCalledBackResponse:
        self._note(request, context)
        await refuse(context)
        if request.callback_id != CALLBACK_ID:
            await context.abort_with_status(
                rich_status(Failure(grpc.StatusCode.NOT_FOUND, "not_found", "no such callback"))
            )
        return call_service_pb2.MarkCalledBackResponse(callback=resolved_callback())

    async def GetBoard(
        self, request: call_service_pb2.GetBoardRequest, context: Any
    ) -> call_service_pb2.GetBoardResponse:
        self._note(request, context)
        await refuse(context, board=True)
        return call_service_pb2.GetBoardResponse(board=sample_board())

    async def WatchBoard(
        self, request: call_service_pb2.WatchBoardRequest, context: Any
    ) -> AsyncIterator[call_service_pb2.WatchBoardResponse]:
        self._note(request, context)
        await refuse(context, board=True)
        self.board_watches += 1
        try:
            yield call_service_pb2.WatchBoardResponse(board=sample_board())
            while True:
                yield call_service_pb2.WatchBoardResponse(board=await self.boards.get())
        finally:
            self.board_watch_ended.set()


def calls_of(fake_core: FakeCore) -> WorkspaceCallService:
    """The workspace CallService of a fake core made with one."""
    assert isinstance(fake_core.calls, WorkspaceCallService)
    return fake_core.calls
