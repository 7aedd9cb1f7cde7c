"""The helpdesk workspace over gRPC against a real core: ListCallbacks, MarkCalledBack,
GetBoard and WatchBoard in each token's scope, the supervisor role (reads, never administers
or posts calls), and phone_display on calls and cards."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import grpc
import pytest

from core.server import Core
from telephony.v1 import (
    call_pb2,
    call_service_pb2,
    call_service_pb2_grpc,
    channel_service_pb2,
    channel_service_pb2_grpc,
    directory_service_pb2,
    directory_service_pb2_grpc,
)
from tests.conftest import ROOT, bearer, running_core

cs = call_service_pb2
State = call_pb2.Call.State
DEMO = cs.ChannelRef(channel_key="demo-channel-key")
SERVICE = bearer("demo-service")
ADMIN = bearer("demo-admin")
SUPERVISOR = bearer("demo-supervisor")
ANNA = bearer("demo-anna")
BORIS = bearer("demo-boris")
PHONE = "74951234567"
OPEN = cs.Callback.STATE_OPEN
RESOLVED = cs.Callback.STATE_RESOLVED


@pytest.fixture
def calls(channel: grpc.aio.Channel) -> call_service_pb2_grpc.CallServiceStub:
    return call_service_pb2_grpc.CallServiceStub(channel)


async def code_of(awaitable: Awaitable[object]) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await awaitable
    return caught.value.code()


async def post(
    calls: call_service_pb2_grpc.CallServiceStub,
    *states: call_pb2.Call.State,
    direction: call_pb2.Direction = call_pb2.DIRECTION_INCOMING,
    phone: str = PHONE,
    **fields: Any,
) -> call_pb2.Call:
    first, *rest = states or (State.STATE_RINGING,)
    reply = await calls.CreateCall(
        cs.CreateCallRequest(channel=DEMO, direction=direction, phone=phone, state=first, **fields),
        metadata=SERVICE,
    )
    call = reply.call
    for state in rest:
        updated = await calls.UpdateCall(
            cs.UpdateCallRequest(channel=DEMO, call_id=call.call_id, state=state),
            metadata=SERVICE,
        )
        call = updated.call
    return call


async def missed(calls: call_service_pb2_grpc.CallServiceStub, **fields: Any) -> call_pb2.Call:
    return await post(calls, State.STATE_RINGING, State.STATE_MISSED, **fields)


async def listed(
    calls: call_service_pb2_grpc.CallServiceStub,
    metadata: list[tuple[str, str]],
    *states: cs.Callback.State,
    **fields: Any,
) -> cs.ListCallbacksResponse:
    request = cs.ListCallbacksRequest(states=list(states), **fields)
    reply: cs.ListCallbacksResponse = await calls.ListCallbacks(request, metadata=metadata)
    return reply


# --- callbacks ---------------------------------------------------------------------------------


async def test_callbacks_are_listed_in_each_tokens_scope(
    calls: call_service_pb2_grpc.CallServiceStub,
) -> None:
    call = await missed(calls, user_ids=[1])
    for metadata in (ANNA, SUPERVISOR, SERVICE, ADMIN):
        reply = await listed(calls, metadata)
        assert [c.last_call_id for c in reply.callbacks] == [call.call_id], metadata
        assert reply.open_count == 1 and reply.next_page_token == ""
    boris = await listed(calls, BORIS)
    assert list(boris.callbacks) == [] and boris.open_count == 0
    [callback] = (await listed(calls, ANNA)).callbacks
    assert callback.state == OPEN and callback.attempts == 1
    assert (callback.phone, callback.phone_display, callback.phone_e164) == (
        PHONE,
        "+7 495 123-45-67",
        "+74951234567",
    )
    assert callback.contact_name == "Ivan Smirnov (OOO Romashka)"
    assert callback.channel_name == "+7 495 000-00-00"
    assert callback.last_state == State.STATE_MISSED
    assert callback.first_missed_time == call.end_time == callback.last_missed_time
    assert callback.resolution == cs.Callback.RESOLUTION_UNSPECIFIED
    assert not callback.HasField("resolve_time") and not callback.HasField("resolved_by_call_id")
    assert list((await listed(calls, ANNA, RESOLVED)).callbacks) == []
    assert len((await listed(calls, ANNA, OPEN, RESOLVED)).callbacks) == 1


async def test_marking_over_grpc_keeps_who_and_the_first_resolution(
    calls: call_service_pb2_grpc.CallServiceStub,
) -> None:
    await missed(calls, user_ids=[1])
    [callback] = (await listed(calls, ANNA)).callbacks
    mark = cs.MarkCalledBackRequest(callback_id=callback.callback_id)
    code = await code_of(calls.MarkCalledBack(mark, metadata=BORIS))
    assert code == grpc.StatusCode.NOT_FOUND
    as_boris = cs.MarkCalledBackRequest(callback_id=callback.callback_id, employee_id=2)
    code = await code_of(calls.MarkCalledBack(as_boris, metadata=ANNA))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    unknown = cs.MarkCalledBackRequest(callback_id=callback.callback_id + 1000)
    assert await code_of(calls.MarkCalledBack(unknown, metadata=ADMIN)) == grpc.StatusCode.NOT_FOUND
    reply = await calls.MarkCalledBack(mark, metadata=ANNA)
    marked = reply.callback
    assert marked.state == RESOLVED and marked.resolution == cs.Callback.RESOLUTION_CALLED_BACK
    assert (marked.resolved_by_employee_id, marked.resolved_by_name) == (1, "Anna Petrova")
    assert marked.HasField("resolve_time")
    again = await calls.MarkCalledBack(as_boris, metadata=SUPERVISOR)
    assert again.callback == marked
    assert (await listed(calls, ANNA)).open_count == 0
    assert [c.callback_id for c in (await listed(calls, ANNA, RESOLVED)).callbacks] == [
        callback.callback_id
    ]


@pytest.mark.parametrize("direction", [call_pb2.DIRECTION_INCOMING, call_pb2.DIRECTION_OUTGOING])
async def test_a_later_answered_call_resolves_the_callback(
    calls: call_service_pb2_grpc.CallServiceStub, direction: call_pb2.Direction
) -> None:
    await missed(calls)
    back = await post(
        calls,
        State.STATE_RINGING,
        State.STATE_IN_PROGRESS,
        direction=direction,
        phone="+7 (495) 123-45-67",
        user_ids=[3],
    )
    assert (await listed(calls, SUPERVISOR)).open_count == 0
    [callback] = (await listed(calls, SUPERVISOR, RESOLVED)).callbacks
    assert callback.resolution == cs.Callback.RESOLUTION_ANSWERED
    assert (callback.resolved_by_call_id, callback.resolved_by_employee_id) == (back.call_id, 3)


async def test_bad_callback_requests_are_refused(
    calls: call_service_pb2_grpc.CallServiceStub,
) -> None:
    unknown_state = cs.ListCallbacksRequest()
    # A state newer than this core: sent as a number the generated enum does not name.
    unknown_state.states.append(7)  # type: ignore[arg-type]
    for request in (
        unknown_state,
        cs.ListCallbacksRequest(page_size=-1),
        cs.ListCallbacksRequest(page_token="not-a-token"),
    ):
        code = await code_of(calls.ListCallbacks(request, metadata=SUPERVISOR))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, request
    code = await code_of(calls.ListCallbacks(cs.ListCallbacksRequest()))
    assert code == grpc.StatusCode.UNAUTHENTICATED


# --- the board -----------------------------------------------------------------------------


async def test_the_board_is_for_supervisors_and_admins(
    calls: call_service_pb2_grpc.CallServiceStub,
) -> None:
    for metadata in (ANNA, SERVICE):
        code = await code_of(calls.GetBoard(cs.GetBoardRequest(), metadata=metadata))
        assert code == grpc.StatusCode.PERMISSION_DENIED
        stream = calls.WatchBoard(cs.WatchBoardRequest(), metadata=metadata)
        assert await code_of(stream.read()) == grpc.StatusCode.PERMISSION_DENIED
    for metadata in (SUPERVISOR, ADMIN):
        reply = await calls.GetBoard(cs.GetBoardRequest(), metadata=metadata)
        assert reply.board.timezone == "Europe/Moscow"


async def test_the_board_figures_match_the_posted_calls(
    calls: call_service_pb2_grpc.CallServiceStub,
) -> None:
    await post(calls, State.STATE_RINGING, State.STATE_IN_PROGRESS, State.STATE_ANSWERED)
    await missed(calls, phone="+78125550101")
    await post(calls, State.STATE_RINGING, State.STATE_CANCELED, phone="+78125550102")
    ringing = await post(calls, State.STATE_RINGING, phone="+78125550103", user_ids=[2])
    await post(
        calls,
        State.STATE_RINGING,
        State.STATE_IN_PROGRESS,
        direction=call_pb2.DIRECTION_OUTGOING,
        phone="+79035551234",
        user_ids=[1],
    )
    board = (await calls.GetBoard(cs.GetBoardRequest(), metadata=SUPERVISOR)).board
    [figures] = board.figures
    assert (figures.channel_id, figures.channel_name) == (1, "+7 495 000-00-00")
    assert (figures.incoming, figures.answered, figures.missed) == (4, 1, 2)
    assert figures.answer_rate == pytest.approx(0.25)
    assert figures.open_callbacks == 2
    assert figures.HasField("average_wait") and figures.HasField("average_talk")
    assert [c.state for c in board.calls] == [State.STATE_RINGING, State.STATE_IN_PROGRESS]
    first = board.calls[0]
    assert (first.call_id, first.phone_display, first.user_name) == (
        ringing.call_id,
        "+7 812 555-01-03",
        "Boris Ivanov",
    )
    assert [(e.employee_id, e.name) for e in first.audience] == [(2, "Boris Ivanov")]
    states = {e.employee_id: (e.state, e.call_id) for e in board.employees}
    assert states[1] == (cs.EmployeeState.STATE_ON_CALL, board.calls[1].call_id)
    assert states[2] == (cs.EmployeeState.STATE_RINGING, ringing.call_id)
    assert states[3][0] == cs.EmployeeState.STATE_FREE
    assert 4 not in states  # no telephony access


async def next_board(stream: AsyncIterator[cs.WatchBoardResponse]) -> cs.Board:
    reply = await asyncio.wait_for(anext(stream), timeout=5)
    return reply.board


async def test_the_board_stream_follows_calls_and_marked_callbacks(
    calls: call_service_pb2_grpc.CallServiceStub,
) -> None:
    stream = calls.WatchBoard(cs.WatchBoardRequest(), metadata=SUPERVISOR)
    updates = aiter(stream)
    board = await next_board(updates)
    assert list(board.calls) == [] and board.figures[0].incoming == 0
    ringing = await post(calls)
    board = await next_board(updates)
    assert [c.call_id for c in board.calls] == [ringing.call_id]
    assert board.figures[0].incoming == 1
    await calls.UpdateCall(
        cs.UpdateCallRequest(channel=DEMO, call_id=ringing.call_id, state=State.STATE_MISSED),
        metadata=SERVICE,
    )
    board = await next_board(updates)
    assert list(board.calls) == [] and board.figures[0].open_callbacks == 1
    [callback] = (await listed(calls, SUPERVISOR)).callbacks
    await calls.MarkCalledBack(
        cs.MarkCalledBackRequest(callback_id=callback.callback_id), metadata=SUPERVISOR
    )
    board = await next_board(updates)
    assert board.figures[0].open_callbacks == 0
    stream.cancel()


async def test_revoking_a_supervisor_token_ends_its_board_stream(
    core: Core, channel: grpc.aio.Channel, calls: call_service_pb2_grpc.CallServiceStub
) -> None:
    directory = directory_service_pb2_grpc.DirectoryServiceStub(channel)
    issued = await directory.IssueToken(
        directory_service_pb2.IssueTokenRequest(role=directory_service_pb2.ROLE_SUPERVISOR),
        metadata=ADMIN,
    )
    assert issued.token.role == directory_service_pb2.ROLE_SUPERVISOR
    stream = calls.WatchBoard(cs.WatchBoardRequest(), metadata=bearer(issued.secret))
    updates = aiter(stream)
    await next_board(updates)
    await directory.RevokeToken(
        directory_service_pb2.RevokeTokenRequest(token_id=issued.token.token_id), metadata=ADMIN
    )
    with pytest.raises(grpc.aio.AioRpcError) as ended:
        await next_board(updates)
    assert ended.value.code() == grpc.StatusCode.UNAUTHENTICATED


# --- the supervisor role -------------------------------------------------------------------


async def test_a_supervisor_reads_every_call_and_card(
    calls: call_service_pb2_grpc.CallServiceStub,
) -> None:
    call = await post(calls, user_ids=[2])
    got = await calls.GetCall(cs.GetCallRequest(call_id=call.call_id), metadata=SUPERVISOR)
    assert got.call.call_id == call.call_id
    page = await calls.ListCalls(cs.ListCallsRequest(), metadata=SUPERVISOR)
    assert [c.call_id for c in page.calls] == [call.call_id]
    cards = calls.WatchCallCards(cs.WatchCallCardsRequest(employee_id=2), metadata=SUPERVISOR)
    event = await asyncio.wait_for(cards.read(), timeout=5)
    assert isinstance(event, cs.CallCardEvent)
    assert event.card.call_id == call.call_id
    cards.cancel()
    # A supervisor names whose cards it watches: it has none of its own.
    own = calls.WatchCallCards(cs.WatchCallCardsRequest(), metadata=SUPERVISOR)
    assert await code_of(own.read()) == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_supervisor_neither_posts_calls_nor_administers(
    channel: grpc.aio.Channel, calls: call_service_pb2_grpc.CallServiceStub
) -> None:
    channels = channel_service_pb2_grpc.ChannelServiceStub(channel)
    directory = directory_service_pb2_grpc.DirectoryServiceStub(channel)
    call = await post(calls)
    refused: list[Awaitable[object]] = [
        calls.CreateCall(
            cs.CreateCallRequest(channel=DEMO, direction=call_pb2.DIRECTION_INCOMING, phone=PHONE),
            metadata=SUPERVISOR,
        ),
        calls.UpdateCall(
            cs.UpdateCallRequest(channel=DEMO, call_id=call.call_id, state=State.STATE_ANSWERED),
            metadata=SUPERVISOR,
        ),
        channels.ListChannels(channel_service_pb2.ListChannelsRequest(), metadata=SUPERVISOR),
        channels.CreateChannel(
            channel_service_pb2.CreateChannelRequest(name="x", department_id=1),
            metadata=SUPERVISOR,
        ),
        directory.ListTokens(directory_service_pb2.ListTokensRequest(), metadata=SUPERVISOR),
        directory.IssueToken(
            directory_service_pb2.IssueTokenRequest(role=directory_service_pb2.ROLE_ADMIN),
            metadata=SUPERVISOR,
        ),
        directory.UpsertEmployee(
            directory_service_pb2.UpsertEmployeeRequest(
                employee=directory_service_pb2.Employee(employee_id=9, name="x")
            ),
            metadata=SUPERVISOR,
        ),
    ]
    for attempt in refused:
        assert await code_of(attempt) == grpc.StatusCode.PERMISSION_DENIED
    got = await calls.GetCall(cs.GetCallRequest(call_id=call.call_id), metadata=SUPERVISOR)
    assert got.call.state == State.STATE_RINGING


# --- phones as people read them ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("phone", "shown"),
    [
        ("74951234567", "+7 495 123-45-67"),
        ("8 (812) 555-01-01", "+7 812 555-01-01"),
        ("101", "101"),
    ],
)
async def test_calls_and_cards_carry_the_phone_as_people_read_it(
    calls: call_service_pb2_grpc.CallServiceStub, phone: str, shown: str
) -> None:
    cards = calls.WatchCallCards(cs.WatchCallCardsRequest(employee_id=1), metadata=SERVICE)
    await cards.initial_metadata()
    call = await post(calls, phone=phone, user_ids=[1])
    assert (call.phone, call.phone_display) == (phone, shown)
    event = await asyncio.wait_for(cards.read(), timeout=5)
    assert isinstance(event, cs.CallCardEvent)
    assert (event.card.phone, event.card.phone_display) == (phone, shown)
    cards.cancel()
    got = await calls.GetCall(cs.GetCallRequest(call_id=call.call_id), metadata=ANNA)
    assert got.call.phone_display == shown


async def test_a_service_token_marks_for_the_employee_it_names(
    calls: call_service_pb2_grpc.CallServiceStub,
) -> None:
    await missed(calls, user_ids=[3])
    [callback] = (await listed(calls, SERVICE)).callbacks
    unknown = cs.MarkCalledBackRequest(callback_id=callback.callback_id, employee_id=99)
    code = await code_of(calls.MarkCalledBack(unknown, metadata=SERVICE))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    reply = await calls.MarkCalledBack(
        cs.MarkCalledBackRequest(callback_id=callback.callback_id, employee_id=3),
        metadata=SERVICE,
    )
    assert (reply.callback.resolved_by_employee_id, reply.callback.resolved_by_name) == (
        3,
        "Vera Sokolova",
    )


async def test_core_starts_on_the_demo_calls_seed_and_a_restart_adds_nothing(
    tmp_path: Path,
) -> None:
    seed = str(ROOT / "seed" / "demo-with-calls.json")
    for _ in range(2):
        async with (
            running_core(tmp_path, seed_path=seed) as core,
            grpc.aio.insecure_channel(f"127.0.0.1:{core.port}") as channel,
        ):
            calls = call_service_pb2_grpc.CallServiceStub(channel)
            page = await calls.ListCalls(cs.ListCallsRequest(), metadata=SUPERVISOR)
            callbacks = await listed(calls, ANNA)
    assert len(page.calls) == 5
    answered = next(c for c in page.calls if c.pbx_call_id == "demo-answered")
    assert answered.recording.format == call_pb2.Recording.FORMAT_WAV
    assert answered.recording.duration.ToTimedelta().total_seconds() == pytest.approx(1.5)
    assert answered.phone_display == "+7 495 123-45-67"
    assert sorted(c.attempts for c in callbacks.callbacks) == [1, 2]
