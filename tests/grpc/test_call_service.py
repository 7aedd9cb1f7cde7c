"""CallService against a real grpc.aio server: every unary method, error codes, roles."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from telephony.v1 import call_pb2, call_service_pb2, call_service_pb2_grpc
from tests.conftest import bearer

State = call_pb2.Call.State
DEMO = call_service_pb2.ChannelRef(channel_key="demo-channel-key")
SERVICE = bearer("demo-service")


@pytest.fixture
def calls(channel: grpc.aio.Channel) -> call_service_pb2_grpc.CallServiceStub:
    return call_service_pb2_grpc.CallServiceStub(channel)


def details(error: grpc.aio.AioRpcError) -> tuple[str, dict[str, str]]:
    status = rpc_status.from_call(error)
    assert status is not None, "core always sends rich error details"
    reason, fields = "", {}
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields = {v.field: v.description for v in bad.field_violations}
    return reason, fields


async def create(calls: call_service_pb2_grpc.CallServiceStub, **fields: object) -> call_pb2.Call:
    request = call_service_pb2.CreateCallRequest(
        channel=DEMO, direction=call_pb2.DIRECTION_INCOMING, phone="+74951234567"
    )
    for name, value in fields.items():
        if isinstance(value, list):
            getattr(request, name).extend(value)
        elif name == "channel":
            assert isinstance(value, call_service_pb2.ChannelRef)
            request.channel.CopyFrom(value)
        else:
            setattr(request, name, value)
    reply = await calls.CreateCall(request, metadata=SERVICE, timeout=5)
    return reply.call


async def test_create_call_opens_a_ticket_with_defaults(
    calls: call_service_pb2_grpc.CallServiceStub,
) -> None:
    call = await create(calls, comment="start")
    assert call.call_id > 0 and call.ticket.ticket_id > 0
    assert call.state == State.STATE_RINGING
    assert call.ticket.department_id == 1
    assert [c.text for c in call.ticket.comments] == ["start"]
    assert call.phone_e164 == "+74951234567"
    # No audience given: everyone with telephony access (employees 1-3; 4 has none).
    assert list(call.audience_employee_ids) == [1, 2, 3]
    assert not call.HasField("user_id")


async def test_ids_increase(calls: call_service_pb2_grpc.CallServiceStub) -> None:
    first = await create(calls)
    second = await create(calls)
    assert second.call_id > first.call_id
    assert second.ticket.ticket_id > first.ticket.ticket_id


async def test_single_employee_is_assigned(calls: call_service_pb2_grpc.CallServiceStub) -> None:
    call = await create(calls, user_ids=[2])
    assert call.user_id == 2
    assert call.ticket.executor_employee_id == 2
    assert list(call.audience_employee_ids) == [2]


async def test_pbx_users_are_mapped_through_the_channel(
    calls: call_service_pb2_grpc.CallServiceStub,
) -> None:
    call = await create(calls, pbx_user_ids=["101", "999"])
    assert list(call.audience_employee_ids) == [1]
    assert call.user_id == 1


async def test_same_phone_in_other_forms_is_one_contact(
    calls: call_service_pb2_grpc.CallServiceStub,
) -> None:
    a = await create(calls, phone="8 (495) 123-45-67")
    b = await create(calls, phone="74951234567")
    c = await create(calls, phone="+7 495 123 45 67")
    ids = {x.ticket.contact.contact_id for x in (a, b, c)}
    assert len(ids) == 1
    assert a.ticket.contact.phone_e164 == "+74951234567"


async def test_two_audience_lists_are_refused(calls: call_service_pb2_grpc.CallServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await create(calls, user_ids=[1], group_ids=[10])
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    reason, fields = details(caught.value)
    assert reason == "invalid_request"
    assert set(fields) == {"user_ids", "group_ids"}


async def test_missing_required_fields_are_listed(
    calls: call_service_pb2_grpc.CallServiceStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await calls.CreateCall(call_service_pb2.CreateCallRequest(channel=DEMO), metadata=SERVICE)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(details(caught.value)[1]) == {"direction", "phone"}


async def test_unknown_channel_is_not_found(calls: call_service_pb2_grpc.CallServiceStub) -> None:
    request = call_service_pb2.CreateCallRequest(
        channel=call_service_pb2.ChannelRef(channel_key="nope-nope-nope"),
        direction=call_pb2.DIRECTION_INCOMING,
        phone="1",
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await calls.CreateCall(request, metadata=SERVICE)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_leading_at_sign_on_the_key_is_the_same_channel(
    calls: call_service_pb2_grpc.CallServiceStub,
) -> None:
    call = await create(calls, channel=call_service_pb2.ChannelRef(channel_key="@demo-channel-key"))
    assert call.channel_id == 1


async def test_update_moves_status_and_binds_employee(
    calls: call_service_pb2_grpc.CallServiceStub,
) -> None:
    call = await create(calls)
    reply = await calls.UpdateCall(
        call_service_pb2.UpdateCallRequest(
            channel=DEMO,
            call_id=call.call_id,
            state=State.STATE_IN_PROGRESS,
            user_id=3,
            comment="picked up",
        ),
        metadata=SERVICE,
    )
    updated = reply.call
    assert updated.state == State.STATE_IN_PROGRESS
    assert updated.user_id == 3 and updated.ticket.executor_employee_id == 3
    assert updated.HasField("answer_time")
    reply = await calls.UpdateCall(
        call_service_pb2.UpdateCallRequest(
            channel=DEMO, call_id=call.call_id, state=State.STATE_ANSWERED
        ),
        metadata=SERVICE,
    )
    done = reply.call
    assert done.HasField("end_time")
    assert [h.state for h in done.status_history] == [
        State.STATE_RINGING,
        State.STATE_IN_PROGRESS,
        State.STATE_ANSWERED,
    ]
    assert done.talk_duration.ToTimedelta() == (
        done.end_time.ToDatetime() - done.answer_time.ToDatetime()
    )


async def test_final_status_is_not_reopened(calls: call_service_pb2_grpc.CallServiceStub) -> None:
    call = await create(calls)
    await calls.UpdateCall(
        call_service_pb2.UpdateCallRequest(
            channel=DEMO, call_id=call.call_id, state=State.STATE_MISSED
        ),
        metadata=SERVICE,
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await calls.UpdateCall(
            call_service_pb2.UpdateCallRequest(
                channel=DEMO,
                call_id=call.call_id,
                state=State.STATE_IN_PROGRESS,
                comment="late",
                user_id=1,
            ),
            metadata=SERVICE,
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert details(caught.value)[0] == "final_status"
    got = (
        await calls.GetCall(call_service_pb2.GetCallRequest(call_id=call.call_id), metadata=SERVICE)
    ).call
    assert got.state == State.STATE_MISSED
    assert not got.HasField("user_id")
    assert [c.text for c in got.ticket.comments] == []


async def test_same_final_status_again_keeps_status_and_adds_comment(
    calls: call_service_pb2_grpc.CallServiceStub,
) -> None:
    call = await create(calls)
    for comment in ("first", "second"):
        await calls.UpdateCall(
            call_service_pb2.UpdateCallRequest(
                channel=DEMO, call_id=call.call_id, state=State.STATE_BUSY, comment=comment
            ),
            metadata=SERVICE,
        )
    got = (
        await calls.GetCall(call_service_pb2.GetCallRequest(call_id=call.call_id), metadata=SERVICE)
    ).call
    assert [c.text for c in got.ticket.comments] == ["first", "second"]
    assert [h.state for h in got.status_history] == [State.STATE_RINGING, State.STATE_BUSY]


async def test_update_by_pbx_call_id(calls: call_service_pb2_grpc.CallServiceStub) -> None:
    call = await create(calls, pbx_call_id="pbx-1")
    reply = await calls.UpdateCall(
        call_service_pb2.UpdateCallRequest(
            channel=DEMO, pbx_call_id="pbx-1", state=State.STATE_IN_PROGRESS, pbx_user_id="102"
        ),
        metadata=SERVICE,
    )
    assert reply.call.call_id == call.call_id
    assert reply.call.user_id == 2 and reply.call.pbx_user_id == "102"


async def test_unmapped_pbx_user_is_kept_and_binds_nobody(
    calls: call_service_pb2_grpc.CallServiceStub,
) -> None:
    call = await create(calls)
    reply = await calls.UpdateCall(
        call_service_pb2.UpdateCallRequest(
            channel=DEMO, call_id=call.call_id, state=State.STATE_IN_PROGRESS, pbx_user_id="555"
        ),
        metadata=SERVICE,
    )
    assert reply.call.pbx_user_id == "555"
    assert not reply.call.HasField("user_id")


async def test_unknown_user_id_is_refused_and_changes_nothing(
    calls: call_service_pb2_grpc.CallServiceStub,
) -> None:
    call = await create(calls)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await calls.UpdateCall(
            call_service_pb2.UpdateCallRequest(
                channel=DEMO, call_id=call.call_id, state=State.STATE_ANSWERED, user_id=777
            ),
            metadata=SERVICE,
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "user_id" in details(caught.value)[1]
    got = (
        await calls.GetCall(call_service_pb2.GetCallRequest(call_id=call.call_id), metadata=SERVICE)
    ).call
    assert got.state == State.STATE_RINGING


async def test_both_of_a_pair_are_refused(calls: call_service_pb2_grpc.CallServiceStub) -> None:
    call = await create(calls, pbx_call_id="pair")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await calls.UpdateCall(
            call_service_pb2.UpdateCallRequest(
                channel=DEMO,
                call_id=call.call_id,
                pbx_call_id="pair",
                state=State.STATE_ANSWERED,
                user_id=1,
                pbx_user_id="101",
            ),
            metadata=SERVICE,
        )
    assert set(details(caught.value)[1]) == {"call_id", "pbx_call_id", "user_id", "pbx_user_id"}


async def test_unknown_call_is_not_found(calls: call_service_pb2_grpc.CallServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await calls.UpdateCall(
            call_service_pb2.UpdateCallRequest(
                channel=DEMO, call_id=99999, state=State.STATE_ANSWERED
            ),
            metadata=SERVICE,
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_duplicate_pbx_call_id_returns_the_same_call(
    calls: call_service_pb2_grpc.CallServiceStub,
) -> None:
    first = await create(calls, pbx_call_id="dup-1")
    again = await calls.CreateCall(
        call_service_pb2.CreateCallRequest(
            channel=DEMO,
            direction=call_pb2.DIRECTION_INCOMING,
            phone="+74951234567",
            pbx_call_id="dup-1",
            state=State.STATE_IN_PROGRESS,
        ),
        metadata=SERVICE,
    )
    assert not again.created
    assert again.call.call_id == first.call_id
    assert again.call.state == State.STATE_IN_PROGRESS


async def test_retried_create_does_not_repeat_its_comment(
    calls: call_service_pb2_grpc.CallServiceStub,
) -> None:
    await create(calls, pbx_call_id="retry-comment", comment="hello")
    again = await create(calls, pbx_call_id="retry-comment", comment="hello")
    assert [c.text for c in again.ticket.comments] == ["hello"]


async def test_concurrent_duplicates_make_one_call_and_one_ticket(
    calls: call_service_pb2_grpc.CallServiceStub,
) -> None:
    replies = await asyncio.gather(
        *(
            calls.CreateCall(
                call_service_pb2.CreateCallRequest(
                    channel=DEMO,
                    direction=call_pb2.DIRECTION_INCOMING,
                    phone="1",
                    pbx_call_id="race",
                ),
                metadata=SERVICE,
            )
            for _ in range(32)
        )
    )
    assert len({r.call.call_id for r in replies}) == 1
    assert len({r.call.ticket.ticket_id for r in replies}) == 1
    assert sum(r.created for r in replies) == 1


async def test_idempotency_key_replays_the_first_reply(
    calls: call_service_pb2_grpc.CallServiceStub,
) -> None:
    request = call_service_pb2.CreateCallRequest(
        channel=DEMO, direction=call_pb2.DIRECTION_INCOMING, phone="5", idempotency_key="k-1"
    )
    first = await calls.CreateCall(request, metadata=SERVICE)
    second = await calls.CreateCall(request, metadata=SERVICE)
    assert second == first
    listed = await calls.ListCalls(call_service_pb2.ListCallsRequest(phone="5"), metadata=SERVICE)
    assert len(listed.calls) == 1


async def test_idempotency_key_with_another_request_is_refused(
    calls: call_service_pb2_grpc.CallServiceStub,
) -> None:
    def request(phone: str) -> call_service_pb2.CreateCallRequest:
        return call_service_pb2.CreateCallRequest(
            channel=DEMO, direction=call_pb2.DIRECTION_INCOMING, idempotency_key="k-2", phone=phone
        )

    await calls.CreateCall(request("6"), metadata=SERVICE)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await calls.CreateCall(request("7"), metadata=SERVICE)
    assert caught.value.code() == grpc.StatusCode.ABORTED
    assert details(caught.value)[0] == "idempotency_conflict"


async def test_failed_request_releases_its_idempotency_key(
    calls: call_service_pb2_grpc.CallServiceStub,
) -> None:
    call = await create(calls)
    request = call_service_pb2.UpdateCallRequest(
        channel=DEMO,
        call_id=call.call_id,
        state=State.STATE_ANSWERED,
        user_id=777,
        idempotency_key="k-3",
    )
    for _ in range(2):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await calls.UpdateCall(request, metadata=SERVICE)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_create_with_final_status_shows_no_card(
    calls: call_service_pb2_grpc.CallServiceStub,
) -> None:
    call = await create(calls, state=State.STATE_MISSED)
    assert call.state == State.STATE_MISSED
    assert call.HasField("end_time")


async def test_list_calls_filters_and_pages(calls: call_service_pb2_grpc.CallServiceStub) -> None:
    made = [await create(calls, phone="+7 812 000 00 01") for _ in range(5)]
    await create(calls, phone="+7 812 000 00 02", direction=call_pb2.DIRECTION_OUTGOING)
    seen: list[int] = []
    token = ""
    while True:
        page = await calls.ListCalls(
            call_service_pb2.ListCallsRequest(phone="88120000001", page_size=2, page_token=token),
            metadata=SERVICE,
        )
        seen += [c.call_id for c in page.calls]
        token = page.next_page_token
        if not token:
            break
    assert seen == sorted((c.call_id for c in made), reverse=True)
    outgoing = await calls.ListCalls(
        call_service_pb2.ListCallsRequest(direction=call_pb2.DIRECTION_OUTGOING), metadata=SERVICE
    )
    assert [c.phone for c in outgoing.calls] == ["+7 812 000 00 02"]


async def test_bad_page_token_is_refused(calls: call_service_pb2_grpc.CallServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await calls.ListCalls(
            call_service_pb2.ListCallsRequest(page_token="garbage!"), metadata=SERVICE
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("metadata", [None, bearer("wrong"), [("authorization", "Basic x")]])
async def test_calls_need_a_valid_token(
    calls: call_service_pb2_grpc.CallServiceStub, metadata: list[tuple[str, str]] | None
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await calls.GetCall(call_service_pb2.GetCallRequest(call_id=1), metadata=metadata)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_employee_token_cannot_create_calls(
    calls: call_service_pb2_grpc.CallServiceStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await calls.CreateCall(
            call_service_pb2.CreateCallRequest(
                channel=DEMO, direction=call_pb2.DIRECTION_INCOMING, phone="1"
            ),
            metadata=bearer("demo-anna"),
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_employee_sees_only_calls_shown_to_them(
    calls: call_service_pb2_grpc.CallServiceStub,
) -> None:
    mine = await create(calls, user_ids=[1])
    theirs = await create(calls, user_ids=[2])
    anna = bearer("demo-anna")
    got = await calls.GetCall(call_service_pb2.GetCallRequest(call_id=mine.call_id), metadata=anna)
    assert got.call.call_id == mine.call_id
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await calls.GetCall(call_service_pb2.GetCallRequest(call_id=theirs.call_id), metadata=anna)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    listed = await calls.ListCalls(call_service_pb2.ListCallsRequest(), metadata=anna)
    assert theirs.call_id not in {c.call_id for c in listed.calls}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await calls.ListCalls(call_service_pb2.ListCallsRequest(employee_id=2), metadata=anna)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_a_channel_id_reaches_only_its_own_calls(
    calls: call_service_pb2_grpc.CallServiceStub, channel: grpc.aio.Channel
) -> None:
    from telephony.v1 import channel_service_pb2, channel_service_pb2_grpc

    admin = channel_service_pb2_grpc.ChannelServiceStub(channel)
    other = await admin.CreateChannel(
        channel_service_pb2.CreateChannelRequest(name="Other", department_id=2),
        metadata=bearer("demo-admin"),
    )
    call = await create(calls)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await calls.UpdateCall(
            call_service_pb2.UpdateCallRequest(
                channel=call_service_pb2.ChannelRef(channel_key=other.key),
                call_id=call.call_id,
                state=State.STATE_ANSWERED,
            ),
            metadata=SERVICE,
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
