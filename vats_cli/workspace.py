"""`vats callbacks ...` and `vats board`: the helpdesk's missed-call callbacks and the
supervisor board, as core gives them to the token's role."""

from __future__ import annotations

import argparse
from collections.abc import Iterable

from telephony.v1 import call_service_pb2
from vats_cli import render
from vats_cli.client import CoreClient
from vats_cli.render import Output
from vocabulary import CALLBACK_RESOLUTION, CALLBACK_STATE, EMPLOYEE_STATE

Callback = call_service_pb2.Callback

# `--state` of `vats callbacks list`: which callback states it asks core for ("all": each).
STATES_BY_CHOICE: dict[str, tuple[Callback.State, ...]] = {
    **{name: (CALLBACK_STATE.number(name),) for name in CALLBACK_STATE},
    "all": tuple(CALLBACK_STATE.number(name) for name in CALLBACK_STATE),
}


def callbacks_list(args: argparse.Namespace, core: CoreClient, out: Output) -> None:
    response = core.list_callbacks(
        call_service_pb2.ListCallbacksRequest(
            states=STATES_BY_CHOICE[args.state],
            channel_id=args.channel or 0,
            page_size=args.limit or 0,
            page_token=args.page_token or "",
        )
    )
    text = _callbacks_table(response.callbacks) + f"\nopen: {response.open_count}"
    if response.next_page_token:
        text += f"\nmore: --page-token {response.next_page_token}"
    out.emit(response, text)


def callbacks_mark(args: argparse.Namespace, core: CoreClient, out: Output) -> None:
    response = core.mark_called_back(
        call_service_pb2.MarkCalledBackRequest(
            callback_id=args.callback_id, employee_id=args.employee or 0
        )
    )
    out.emit(response, _callback_text(response.callback))


def board(args: argparse.Namespace, core: CoreClient, out: Output) -> None:
    response = core.get_board(call_service_pb2.GetBoardRequest())
    out.emit(response, _board_text(response.board))


def _callbacks_table(callbacks: Iterable[Callback]) -> str:
    rows = [
        (
            c.callback_id,
            CALLBACK_STATE.name(c.state),
            c.phone_display or c.phone,
            c.contact_name,
            c.attempts,
            render.timestamp(c, "last_missed_time"),
            render.status_name(c.last_state),
            c.channel_name or c.channel_id,
            _resolution(c),
        )
        for c in callbacks
    ]
    headers = (
        "ID",
        "STATE",
        "PHONE",
        "CONTACT",
        "ATTEMPTS",
        "LAST MISSED",
        "LAST STATUS",
        "CHANNEL",
        "RESOLVED",
    )
    return render.table(headers, rows)


def _resolution(callback: Callback) -> str | None:
    """How and when it was resolved, and by whom: `called-back 2026-01-31 09:00:00Z Anna`."""
    how = CALLBACK_RESOLUTION.name(callback.resolution)
    if how is None:
        return None
    who = callback.resolved_by_name or (
        f"call {callback.resolved_by_call_id}" if callback.HasField("resolved_by_call_id") else ""
    )
    return " ".join(part for part in (how, render.timestamp(callback, "resolve_time"), who) if part)


def _callback_text(callback: Callback) -> str:
    return render.fields(
        [
            ("callback", callback.callback_id),
            ("state", CALLBACK_STATE.name(callback.state)),
            ("phone", callback.phone_display or callback.phone),
            ("contact", callback.contact_name),
            ("channel", f"{callback.channel_name} (#{callback.channel_id})"),
            ("attempts", callback.attempts),
            ("first missed", render.timestamp(callback, "first_missed_time")),
            ("last missed", render.timestamp(callback, "last_missed_time")),
            ("last call", f"{callback.last_call_id} ({render.status_name(callback.last_state)})"),
            ("resolved", _resolution(callback)),
        ]
    )


def _board_text(board: call_service_pb2.Board) -> str:
    head = render.fields(
        [("day", f"{board.day} ({board.timezone})"), ("at", render.timestamp(board, "time"))]
    )
    sections = [
        head,
        "active calls\n" + (_board_calls_table(board.calls) if board.calls else "none"),
        "employees\n" + _employees_table(board.employees),
        "today by channel\n" + _figures_table(board.figures),
    ]
    return "\n\n".join(sections)


def _board_calls_table(calls: Iterable[call_service_pb2.BoardCall]) -> str:
    rows = [
        (
            c.call_id,
            render.status_name(c.state),
            render.direction_name(c.direction),
            c.phone_display or c.phone,
            c.contact_name,
            c.channel_name or c.channel_id,
            render.timestamp(c, "create_time"),
            render.timestamp(c, "answer_time"),
            c.user_name or ", ".join(e.name or str(e.employee_id) for e in c.audience),
        )
        for c in calls
    ]
    headers = (
        "CALL",
        "STATUS",
        "DIRECTION",
        "PHONE",
        "CONTACT",
        "CHANNEL",
        "CREATED",
        "ANSWERED",
        "WITH",
    )
    return render.table(headers, rows)


def _employees_table(employees: Iterable[call_service_pb2.EmployeeState]) -> str:
    rows = [
        (
            e.employee_id,
            e.name,
            EMPLOYEE_STATE.name(e.state),
            e.call_id if e.HasField("call_id") else None,
        )
        for e in employees
    ]
    return render.table(("ID", "NAME", "STATE", "CALL"), rows)


def _average(figures: call_service_pb2.ChannelFigures, field: str) -> str | None:
    """A mean time, none without calls to average; under a second in tenths."""
    if not figures.HasField(field):
        return None
    seconds = getattr(figures, field).ToTimedelta().total_seconds()
    return render.duration(figures, field) if seconds >= 1 else f"{seconds:.1f}s"


def _figures_table(figures: Iterable[call_service_pb2.ChannelFigures]) -> str:
    rows = [
        (
            f.channel_name or f.channel_id,
            f.incoming,
            f.answered,
            f.missed,
            f"{f.answer_rate:.0%}" if f.HasField("answer_rate") else None,
            _average(f, "average_wait"),
            _average(f, "average_talk"),
            f.open_callbacks,
        )
        for f in figures
    ]
    headers = (
        "CHANNEL",
        "INCOMING",
        "ANSWERED",
        "MISSED",
        "ANSWER RATE",
        "AVG WAIT",
        "AVG TALK",
        "OPEN CALLBACKS",
    )
    return render.table(headers, rows)
