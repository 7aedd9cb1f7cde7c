"""SubmitCalls against a real core: each command of a batch stands alone, its outcome in its
place, its refusal the very status the unary CreateCall / UpdateCall gives; the batch as a
whole is refused only for its token or its size."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import status_pb2
from grpc_status import rpc_status

from telephony.v1 import call_pb2, call_service_pb2_grpc
from telephony.v1 import call_service_pb2 as pb
from tests.conftest import bearer, running_core
from tests.grpc.test_recordings import upload, wav_bytes
from vats_rpc import RpcStatus

State = call_pb2.Call.State
DEMO = pb.ChannelRef(channel_key="demo-channel-key")
SERVICE = bearer("demo-service")
EMPLOYEE = bearer("demo-anna")


@pytest.fixture
def calls(channel: grpc.aio.Channel) -> call_service_pb2_grpc.CallServiceStub:
    return call_service_pb2_grpc.CallServiceStub(channel)


def create_request(phone: str = "+74951234567", **fields: Any) -> pb.CreateCallRequest:
    return pb.CreateCallRequest(
        channel=DEMO, direction=call_pb2.DIRECTION_INCOMING, phone=phone, **fields
    )


def update_request(pbx_call_id: str, state: Any, **fields: Any) -> pb.UpdateCallRequest:
    return pb.UpdateCallRequest(channel=DEMO, pbx_call_id=pbx_call_id, state=state, **fields)


def create(request: pb.CreateCallRequest, request_id: str = "") -> pb.CallCommand:
    return pb.CallCommand(create=request, request_id=request_id)


def update(request: pb.UpdateCallRequest, request_id: str = "") -> pb.CallCommand:
    return pb.CallCommand(update=request, request_id=request_id)


async def submit(
    calls: call_service_pb2_grpc.CallServiceStub,
    *commands: pb.CallCommand,
    metadata: list[tuple[str, str]] | None = None,
    brief: bool = False,
) -> list[pb.CallOutcome]:
    reply = await calls.SubmitCalls(
        pb.SubmitCallsRequest(commands=commands, brief=brief),
        metadata=SERVICE if metadata is None else metadata,
        timeout=10,
    )
    return list(reply.outcomes)


def kinds(outcomes: list[pb.CallOutcome]) -> list[str | None]:
    return [o.WhichOneof("outcome") for o in outcomes]


def error_of(outcome: pb.CallOutcome) -> status_pb2.Status:
    assert outcome.WhichOneof("outcome") == "error", outcome
    return status_pb2.Status.FromString(outcome.error)


def reason_and_fields(status: status_pb2.Status) -> tuple[str, set[str]]:
    said = RpcStatus.of_status(status)
    return said.reason, {field for field, _ in said.violations}


async def unary_status(
    calls: call_service_pb2_grpc.CallServiceStub, command: pb.CallCommand
) -> status_pb2.Status:
    """The status the unary RPC of `command` fails with."""
    rpc = calls.CreateCall if command.HasField("create") else calls.UpdateCall
    request = command.create if command.HasField("create") else command.update
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await rpc(request, metadata=SERVICE, timeout=10)
    status = rpc_status.from_call(caught.value)
    assert status is not None
    assert status.code == caught.value.code().value[0]
    return status


async def all_calls(calls: call_service_pb2_grpc.CallServiceStub) -> list[call_pb2.Call]:
    reply = await calls.ListCalls(pb.ListCallsRequest(page_size=500), metadata=SERVICE, timeout=10)
    assert not reply.next_page_token
    return list(reply.calls)


async def get_call(calls: call_service_pb2_grpc.CallServiceStub, call_id: int) -> call_pb2.Call:
    reply = await calls.GetCall(pb.GetCallRequest(call_id=call_id), metadata=SERVICE, timeout=10)
    return reply.call


async def test_each_command_has_its_outcome_in_its_place(
    calls: call_service_pb2_grpc.CallServiceStub,
) -> None:
    before = await all_calls(calls)
    refused = [
        # The call the batch just created and answered: an unknown employee.
        update(update_request("mixed-1", State.STATE_BUSY, user_id=777, comment="never")),
        update(update_request("nobody-knows", State.STATE_ANSWERED)),
        create(create_request(phone="no digits", pbx_call_id="mixed-bad")),
        create(pb.CreateCallRequest(direction=call_pb2.DIRECTION_INCOMING, phone="123")),
    ]
    outcomes = await submit(
        calls,
        create(create_request(pbx_call_id="mixed-1", comment="ringing")),
        update(update_request("mixed-1", State.STATE_ANSWERED, comment="picked up")),
        *refused,
    )

    assert kinds(outcomes) == ["created", "updated", "error", "error", "error", "error"]
    created, updated = outcomes[0].created, outcomes[1].updated
    assert created.created and created.call.pbx_call_id == "mixed-1"
    assert updated.call.call_id == created.call.call_id
    assert updated.call.state == State.STATE_ANSWERED

    statuses = [error_of(o) for o in outcomes[2:]]
    assert [s.code for s in statuses] == [
        grpc.StatusCode.INVALID_ARGUMENT.value[0],
        grpc.StatusCode.NOT_FOUND.value[0],
        grpc.StatusCode.INVALID_ARGUMENT.value[0],
        grpc.StatusCode.INVALID_ARGUMENT.value[0],
    ]
    assert [reason_and_fields(s) for s in statuses] == [
        ("invalid_request", {"user_id"}),
        ("not_found", set()),
        ("invalid_request", {"phone"}),
        ("invalid_request", {"channel"}),
    ]

    # What was applied is stored; the refused commands changed nothing.
    stored = await get_call(calls, created.call.call_id)
    assert stored.state == State.STATE_ANSWERED
    assert not stored.HasField("user_id")
    assert [c.text for c in stored.ticket.comments] == ["ringing", "picked up"]
    after = await all_calls(calls)
    assert len(after) == len(before) + 1
    assert {c.call_id for c in after} - {c.call_id for c in before} == {created.call.call_id}
    assert "mixed-bad" not in {c.pbx_call_id for c in after}


async def test_a_refused_command_carries_the_status_of_its_unary_rpc(
    calls: call_service_pb2_grpc.CallServiceStub,
) -> None:
    await submit(calls, create(create_request(pbx_call_id="same-1")))
    refused = [
        update(update_request("same-1", State.STATE_BUSY, user_id=777)),
        update(update_request("same-unknown", State.STATE_ANSWERED)),
        create(create_request(phone="no digits")),
        create(create_request(user_ids=[1], group_ids=[10])),
        create(pb.CreateCallRequest(channel=DEMO)),
        create(
            pb.CreateCallRequest(
                channel=pb.ChannelRef(channel_key="no-such-channel"),
                direction=call_pb2.DIRECTION_INCOMING,
                phone="1",
            )
        ),
    ]
    outcomes = await submit(calls, *refused)
    assert kinds(outcomes) == ["error"] * len(refused)
    for command, outcome in zip(refused, outcomes, strict=True):
        # Code, message, ErrorInfo and BadRequest: the same status, byte for byte.
        assert error_of(outcome) == await unary_status(calls, command), command


async def test_a_command_with_neither_create_nor_update_is_refused_alone(
    calls: call_service_pb2_grpc.CallServiceStub,
) -> None:
    outcomes = await submit(
        calls, pb.CallCommand(request_id="empty"), create(create_request(pbx_call_id="alone"))
    )
    assert kinds(outcomes) == ["error", "created"]
    status = error_of(outcomes[0])
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert reason_and_fields(status) == ("invalid_request", {"command"})
    assert outcomes[1].created.call.pbx_call_id == "alone"


async def test_an_empty_batch_has_no_outcomes(
    calls: call_service_pb2_grpc.CallServiceStub,
) -> None:
    assert await submit(calls) == []


@pytest.mark.parametrize(
    ("metadata", "code"),
    [
        (EMPLOYEE, grpc.StatusCode.PERMISSION_DENIED),
        ([], grpc.StatusCode.UNAUTHENTICATED),
        (bearer("no-such-token"), grpc.StatusCode.UNAUTHENTICATED),
    ],
    ids=["employee", "no-token", "unknown-token"],
)
async def test_only_a_service_token_may_submit_and_a_refused_batch_stores_nothing(
    calls: call_service_pb2_grpc.CallServiceStub,
    metadata: list[tuple[str, str]],
    code: grpc.StatusCode,
) -> None:
    before = await all_calls(calls)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await submit(
            calls,
            create(create_request(pbx_call_id="refused-1")),
            create(create_request(pbx_call_id="refused-2")),
            metadata=metadata,
        )
    assert caught.value.code() == code
    assert await all_calls(calls) == before


async def test_more_than_256_commands_are_refused_whole(
    calls: call_service_pb2_grpc.CallServiceStub,
) -> None:
    before = await all_calls(calls)
    commands = [create(create_request(pbx_call_id=f"big-{i}")) for i in range(257)]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await submit(calls, *commands)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(caught.value)
    assert status is not None
    assert reason_and_fields(status) == ("invalid_request", {"commands"})
    assert await all_calls(calls) == before


async def test_256_commands_are_taken(calls: call_service_pb2_grpc.CallServiceStub) -> None:
    commands = [create(create_request(pbx_call_id=f"full-{i}")) for i in range(256)]
    outcomes = await submit(calls, *commands)
    assert kinds(outcomes) == ["created"] * 256
    assert [o.created.call.pbx_call_id for o in outcomes] == [f"full-{i}" for i in range(256)]
    assert len({o.created.call.call_id for o in outcomes}) == 256


async def test_the_same_idempotency_key_twice_in_a_batch_replays_the_first_reply(
    calls: call_service_pb2_grpc.CallServiceStub,
) -> None:
    request = create_request(phone="+74950000501", idempotency_key="batch-key-1")
    outcomes = await submit(calls, create(request), create(request))
    assert kinds(outcomes) == ["created", "created"]
    assert outcomes[1] == outcomes[0]
    listed = await calls.ListCalls(
        pb.ListCallsRequest(phone="+74950000501"), metadata=SERVICE, timeout=10
    )
    assert [c.call_id for c in listed.calls] == [outcomes[0].created.call.call_id]
    # The unary RPC replays the same reply for that key.
    again = await calls.CreateCall(request, metadata=SERVICE, timeout=10)
    assert again == outcomes[0].created


async def test_another_request_with_a_used_idempotency_key_is_a_conflict(
    calls: call_service_pb2_grpc.CallServiceStub,
) -> None:
    first = create_request(phone="+74950000601", idempotency_key="batch-key-2")
    other = create_request(phone="+74950000602", idempotency_key="batch-key-2")
    outcomes = await submit(calls, create(first), create(other))
    assert kinds(outcomes) == ["created", "error"]
    status = error_of(outcomes[1])
    assert status.code == grpc.StatusCode.ABORTED.value[0]
    assert reason_and_fields(status) == ("idempotency_conflict", set())
    assert status == await unary_status(calls, create(other))
    listed = await calls.ListCalls(
        pb.ListCallsRequest(phone="+74950000602"), metadata=SERVICE, timeout=10
    )
    assert list(listed.calls) == []


async def test_a_command_refused_in_a_batch_leaves_its_idempotency_key_free(
    calls: call_service_pb2_grpc.CallServiceStub,
) -> None:
    await submit(calls, create(create_request(pbx_call_id="key-free")))
    bad = update_request("key-free", State.STATE_ANSWERED, user_id=777, idempotency_key="k-free")
    good = update_request("key-free", State.STATE_ANSWERED, idempotency_key="k-free")
    outcomes = await submit(calls, update(bad), update(good))
    assert kinds(outcomes) == ["error", "updated"]
    assert outcomes[1].updated.call.state == State.STATE_ANSWERED


async def test_the_batchs_rpc_line_names_each_commands_request_id_and_outcome(
    calls: call_service_pb2_grpc.CallServiceStub, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="vats.core.rpc"):
        await submit(
            calls,
            create(create_request(pbx_call_id="logged"), "req-1"),
            update(update_request("logged", State.STATE_ANSWERED), "req-2"),
            update(update_request("logged-unknown", State.STATE_ANSWERED), "req-3"),
        )
    lines = [
        fields
        for r in caplog.records
        if r.name == "vats.core.rpc"
        and (fields := getattr(r, "fields", {})).get("method", "").endswith("/SubmitCalls")
    ]
    assert len(lines) == 1
    assert lines[0]["code"] == "OK"
    assert lines[0]["request_ids"] == ["req-1", "req-2", "req-3"]
    assert lines[0]["outcomes"] == ["created", "updated", "not_found"]


async def test_commands_reached_after_the_deadline_are_not_applied(tmp_path: Path) -> None:
    # Every batch's storage job starts 0.3 s late, as on a slow disk: past the deadline of
    # the first batch, whose commands are then refused one by one instead of applied late.
    async with (
        running_core(tmp_path, test_storage_delay_ms=300) as slow,
        grpc.aio.insecure_channel(f"127.0.0.1:{slow.port}") as channel,
    ):
        calls = call_service_pb2_grpc.CallServiceStub(channel)
        late = pb.SubmitCallsRequest(
            commands=[create(create_request(pbx_call_id=f"late-{i}")) for i in range(3)]
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await calls.SubmitCalls(late, metadata=SERVICE, timeout=0.15)
        assert refused.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        # Batches run one after another: once the next one is answered, the first is over.
        (outcome,) = await submit(calls, create(create_request(pbx_call_id="in-time")))
        assert outcome.WhichOneof("outcome") == "created"
        stored = {call.pbx_call_id for call in await all_calls(calls)}
        assert "in-time" in stored
        assert not {f"late-{i}" for i in range(3)} & stored


def pbx_fields(call: call_pb2.Call) -> call_pb2.Call:
    """What the PBX is answered of a call: what a brief outcome carries."""
    brief = call_pb2.Call(
        call_id=call.call_id,
        state=call.state,
        ticket=call_pb2.Ticket(ticket_id=call.ticket.ticket_id),
    )
    for field in ("pbx_call_id", "user_id", "pbx_user_id"):
        if call.HasField(field):
            setattr(brief, field, getattr(call, field))
    if call.HasField("recording"):
        brief.recording.recording_id = call.recording.recording_id
    return brief


def without_link(call: call_pb2.Call) -> call_pb2.Call:
    """The call with its recording's link left out (signed anew for every answer)."""
    copy = call_pb2.Call()
    copy.CopyFrom(call)
    if copy.HasField("recording"):
        copy.recording.ClearField("signed_path")
        copy.recording.ClearField("expire_time")
    return copy


async def test_brief_outcomes_carry_only_what_the_pbx_is_answered(
    calls: call_service_pb2_grpc.CallServiceStub,
) -> None:
    recording = await upload(calls, wav_bytes(1.0))
    created, updated, refused = await submit(
        calls,
        create(create_request(pbx_call_id="brief-1", user_ids=[1], comment="hello")),
        update(
            update_request(
                "brief-1",
                State.STATE_ANSWERED,
                pbx_user_id="102",
                recording_id=recording.recording_id,
            )
        ),
        update(update_request("brief-unknown", State.STATE_ANSWERED)),
        brief=True,
    )
    assert kinds([created, updated, refused]) == ["created", "updated", "error"]
    assert created.created.created
    first, second = created.created.call, updated.updated.call
    assert first.call_id == second.call_id
    whole = await get_call(calls, first.call_id)
    assert (whole.pbx_call_id, whole.pbx_user_id, whole.recording.recording_id) == (
        "brief-1",
        "102",
        recording.recording_id,
    )
    assert without_link(second) == pbx_fields(whole)
    assert second.recording.signed_path.startswith(
        f"/api/v2/telephony/records/{recording.recording_id}"
    )
    assert second.recording.HasField("expire_time")
    assert first == pbx_fields(
        call_pb2.Call(
            call_id=whole.call_id,
            state=State.STATE_RINGING,
            pbx_call_id="brief-1",
            user_id=1,
            ticket=call_pb2.Ticket(ticket_id=whole.ticket.ticket_id),
        )
    )


async def test_outcomes_carry_the_whole_call_unless_brief(
    calls: call_service_pb2_grpc.CallServiceStub,
) -> None:
    (outcome,) = await submit(calls, create(create_request(pbx_call_id="whole-1", comment="hi")))
    call = outcome.created.call
    assert call == await get_call(calls, call.call_id)
    assert call.channel_id and call.status_history and call.ticket.comments
