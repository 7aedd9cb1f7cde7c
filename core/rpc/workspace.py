"""The helpdesk's workspace in telephony.v1 messages: callback queries in, callbacks and the
supervisor board out."""

from __future__ import annotations

from core import domain, errors
from core.app.board import Board, BoardCall, ChannelOnBoard, EmployeeOnBoard
from core.app.callbacks import CallbackView
from core.model import CallbackQuery
from core.rpc.encode import direction_of, duration, state_of, timestamp
from telephony.v1 import call_service_pb2 as pb
from vocabulary import CALLBACK_RESOLUTION, CALLBACK_STATE, EMPLOYEE_STATE

# --- in ------------------------------------------------------------------------------------


def callback_query(request: pb.ListCallbacksRequest) -> CallbackQuery:
    """The states asked for (none: the open ones) on the channel asked for (zero: all)."""
    states = set()
    for number in request.states:
        name = CALLBACK_STATE.name(number)
        if name is None:
            raise errors.InvalidRequest.of({"states": f"unknown callback state {number}"})
        states.add(domain.CallbackState(name))
    if request.channel_id < 0:
        raise errors.InvalidRequest.of({"channel_id": "must not be negative"})
    return CallbackQuery(
        states=frozenset(states or {domain.CallbackState.OPEN}),
        channel_id=request.channel_id or None,
    )


def employee_id(value: int) -> int | None:
    if value < 0:
        raise errors.InvalidRequest.of({"employee_id": "must not be negative"})
    return value or None


# --- out -----------------------------------------------------------------------------------


def callback_message(view: CallbackView) -> pb.Callback:
    callback = view.callback
    resolution = callback.resolution
    return pb.Callback(
        callback_id=callback.callback_id,
        channel_id=callback.channel_id,
        channel_name=view.channel_name,
        phone=callback.phone,
        phone_display=view.phone_display,
        phone_e164=callback.phone_e164,
        contact_name=view.contact_name,
        attempts=callback.attempts,
        first_missed_time=timestamp(callback.first_missed_at),
        last_missed_time=timestamp(callback.last_missed_at),
        last_call_id=callback.last_call_id,
        last_state=state_of(callback.last_status),
        state=CALLBACK_STATE.number(callback.state.value),
        resolve_time=timestamp(callback.resolved_at),
        resolved_by_name=view.resolved_by_name,
        resolution=None if resolution is None else CALLBACK_RESOLUTION.number(resolution.value),
        resolved_by_employee_id=callback.resolved_by_employee_id,
        resolved_by_call_id=callback.resolved_by_call_id,
    )


def board_message(board: Board) -> pb.Board:
    return pb.Board(
        day=board.day.day.isoformat(),
        timezone=board.day.timezone,
        time=timestamp(board.at),
        calls=[_board_call(c) for c in board.calls],
        employees=[_employee_state(e) for e in board.employees],
        figures=[_figures(c) for c in board.channels],
    )


def _board_call(entry: BoardCall) -> pb.BoardCall:
    view = entry.view
    call = view.call
    return pb.BoardCall(
        call_id=call.call_id,
        ticket_id=view.ticket.ticket_id,
        channel_id=call.channel_id,
        channel_name=view.channel_name,
        direction=direction_of(call.direction),
        phone=call.phone,
        phone_display=entry.phone_display,
        contact_name=view.contact.name if view.contact else "",
        state=state_of(call.status),
        create_time=timestamp(call.created_at),
        answer_time=timestamp(call.answered_at),
        user_name=view.user_name,
        audience=[pb.BoardCall.Employee(employee_id=e, name=name) for e, name in entry.audience],
        user_id=call.user_id,
    )


def _employee_state(entry: EmployeeOnBoard) -> pb.EmployeeState:
    return pb.EmployeeState(
        employee_id=entry.employee_id,
        name=entry.name,
        state=EMPLOYEE_STATE.number(entry.presence.value),
        call_id=entry.call_id,
    )


def _figures(entry: ChannelOnBoard) -> pb.ChannelFigures:
    figures = entry.figures
    return pb.ChannelFigures(
        channel_id=entry.channel_id,
        channel_name=entry.channel_name,
        incoming=figures.incoming,
        answered=figures.answered,
        missed=figures.missed,
        average_wait=duration(figures.average_wait),
        average_talk=duration(figures.average_talk),
        open_callbacks=entry.open_callbacks,
        answer_rate=figures.answer_rate,
    )
