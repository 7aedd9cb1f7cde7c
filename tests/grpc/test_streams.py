"""WatchCallCards and WatchCalls against a real grpc.aio server."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from core.server import Core
from telephony.v1 import call_pb2, call_service_pb2, call_service_pb2_grpc
from tests.conftest import bearer

State = call_pb2.Call.State
Event = call_service_pb2.CallCardEvent
DEMO = call_service_pb2.ChannelRef(channel_key="demo-channel-key")
SERVICE = bearer("demo-service")


@pytest.fixture
def calls(channel: grpc.aio.Channel) -> call_service_pb2_grpc.CallServiceStub:
    return call_service_pb2_grpc.CallServiceStub(channel)


async def create(calls: Any, **fields: Any) -> call_pb2.Call:
    request = call_service_pb2.CreateCallRequest(
        channel=DEMO, direction=call_pb2.DIRECTION_INCOMING, phone="+74951234567", **fields
    )
    return (await calls.CreateCall(request, metadata=SERVICE, timeout=5)).call


async def update(
    calls: Any, call_id: int, state: call_pb2.Call.State, **fields: Any
) -> call_pb2.Call:
    request = call_service_pb2.UpdateCallRequest(
        channel=DEMO, call_id=call_id, state=state, **fields
    )
    return (await calls.UpdateCall(request, metadata=SERVICE, timeout=5)).call


class Watcher:
    """Reads a card stream in the background so that tests can wait for events."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.events: list[Any] = []
        self._changed = asyncio.Event()
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for event in self.stream:
                self.events.append(event)
                self._changed.set()
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.CANCELLED:
                self.error = error
                self._changed.set()

    async def wait_for(self, count: int, within: float = 5) -> list[Any]:
        async with asyncio.timeout(within):
            while len(self.events) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.events

    async def quiet(self, seconds: float = 0.3) -> list[Any]:
        await asyncio.sleep(seconds)
        return self.events

    def cancel(self) -> None:
        self.stream.cancel()


def watch(calls: Any, token: str, after_seq: int = 0, employee_id: int = 0) -> Watcher:
    return Watcher(
        calls.WatchCallCards(
            call_service_pb2.WatchCallCardsRequest(employee_id=employee_id, after_seq=after_seq),
            metadata=bearer(token),
        )
    )


async def test_snapshot_then_live_order(calls: call_service_pb2_grpc.CallServiceStub) -> None:
    existing = await create(calls, user_ids=[1, 2])
    anna = watch(calls, "demo-anna")
    events = await anna.wait_for(1)
    assert events[0].type == Event.TYPE_SHOW and events[0].card.call_id == existing.call_id
    fresh = await create(calls, user_ids=[1, 3])
    await update(calls, fresh.call_id, State.STATE_IN_PROGRESS)
    await update(calls, fresh.call_id, State.STATE_ANSWERED)
    events = await anna.wait_for(4)
    assert [(e.type, e.card.call_id) for e in events[1:]] == [
        (Event.TYPE_SHOW, fresh.call_id),
        (Event.TYPE_UPDATE, fresh.call_id),
        (Event.TYPE_HIDE, fresh.call_id),
    ]
    assert events[3].reason == "final"
    seqs = [e.seq for e in events[1:]]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    assert events[2].card.state == State.STATE_IN_PROGRESS
    anna.cancel()


async def test_cards_go_only_to_the_audience(calls: call_service_pb2_grpc.CallServiceStub) -> None:
    anna, boris = watch(calls, "demo-anna"), watch(calls, "demo-boris")
    call = await create(calls, user_ids=[2, 3])
    events = await boris.wait_for(1)
    assert events[0].card.call_id == call.call_id
    assert events[0].card.channel_name == "+7 495 000-00-00"
    assert await anna.quiet() == []
    anna.cancel()
    boris.cancel()


async def test_binding_hides_the_card_from_the_others(
    calls: call_service_pb2_grpc.CallServiceStub,
) -> None:
    call = await create(calls, group_ids=[10])  # Anna and Boris
    anna, boris = watch(calls, "demo-anna"), watch(calls, "demo-boris")
    await anna.wait_for(1)
    await boris.wait_for(1)
    await update(calls, call.call_id, State.STATE_IN_PROGRESS, user_id=2)
    anna_events = await anna.wait_for(2)
    boris_events = await boris.wait_for(2)
    assert (anna_events[1].type, anna_events[1].reason) == (Event.TYPE_HIDE, "assigned")
    assert boris_events[1].type == Event.TYPE_UPDATE
    assert boris_events[1].card.user_id == 2 and boris_events[1].card.user_name == "Boris Ivanov"
    anna.cancel()
    boris.cancel()


async def test_resume_replays_exactly_what_was_missed(
    calls: call_service_pb2_grpc.CallServiceStub,
) -> None:
    first = await create(calls, user_ids=[1, 2])
    anna = watch(calls, "demo-anna")
    seen = await anna.wait_for(1)
    anna.cancel()
    last_seq = seen[-1].seq
    second = await create(calls, user_ids=[1, 2])
    await update(calls, first.call_id, State.STATE_CANCELED)
    await create(calls, user_ids=[3])  # not Anna's
    resumed = watch(calls, "demo-anna", after_seq=last_seq)
    events = await resumed.wait_for(2)
    assert [(e.type, e.card.call_id) for e in events] == [
        (Event.TYPE_SHOW, second.call_id),
        (Event.TYPE_HIDE, first.call_id),
    ]
    assert all(e.seq > last_seq for e in events)
    third = await create(calls, user_ids=[1, 2])
    events = await resumed.wait_for(3)
    assert events[2].card.call_id == third.call_id
    assert len(await resumed.quiet()) == 3, "no duplicates after the replay"
    resumed.cancel()


async def test_resume_from_an_unknown_seq_resets_with_a_snapshot(
    calls: call_service_pb2_grpc.CallServiceStub,
) -> None:
    call = await create(calls, user_ids=[1, 2])
    anna = watch(calls, "demo-anna", after_seq=10_000)
    events = await anna.wait_for(2)
    assert events[0].type == Event.TYPE_RESET and events[0].reason == "resume"
    assert (events[1].type, events[1].card.call_id) == (Event.TYPE_SHOW, call.call_id)
    anna.cancel()


async def test_resume_past_the_kept_log_resets(
    calls: call_service_pb2_grpc.CallServiceStub, core: Core
) -> None:
    made = [await create(calls, user_ids=[1, 2]) for _ in range(3)]
    seqs = [e.seq for e in (await core.runner.run(core.cards.call_events_after, 0))[0] or []]
    assert len(seqs) == 3

    def forget_oldest() -> None:
        # The oldest events are gone, as after the retention period.
        with core.store.unit_of_work() as uow:
            uow.events.remove_through(seqs[1])
            uow.commit()

    await core.runner.run(forget_oldest)
    too_old = watch(calls, "demo-anna", after_seq=seqs[0])
    events = await too_old.wait_for(4)
    assert events[0].type == Event.TYPE_RESET
    assert [e.card.call_id for e in events[1:]] == [c.call_id for c in made]
    too_old.cancel()
    just_in = watch(calls, "demo-anna", after_seq=seqs[1])
    events = await just_in.wait_for(1)
    assert [(e.type, e.card.call_id) for e in events] == [(Event.TYPE_SHOW, made[2].call_id)]
    just_in.cancel()


async def test_employee_cannot_watch_another_employee(
    calls: call_service_pb2_grpc.CallServiceStub,
) -> None:
    stream = calls.WatchCallCards(
        call_service_pb2.WatchCallCardsRequest(employee_id=2), metadata=bearer("demo-anna")
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stream.read()
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_service_token_watches_any_employee(
    calls: call_service_pb2_grpc.CallServiceStub,
) -> None:
    call = await create(calls, user_ids=[3])
    vera = watch(calls, "demo-service", employee_id=3)
    events = await vera.wait_for(1)
    assert events[0].card.call_id == call.call_id
    vera.cancel()


async def test_service_token_must_name_the_employee(
    calls: call_service_pb2_grpc.CallServiceStub,
) -> None:
    stream = calls.WatchCallCards(call_service_pb2.WatchCallCardsRequest(), metadata=SERVICE)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stream.read()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_watch_needs_a_token(calls: call_service_pb2_grpc.CallServiceStub) -> None:
    stream = calls.WatchCallCards(call_service_pb2.WatchCallCardsRequest(employee_id=1))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stream.read()
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_cancelled_client_is_unsubscribed(
    calls: call_service_pb2_grpc.CallServiceStub, core: Core
) -> None:
    assert core.hub is not None
    before = core.hub.subscriber_count
    anna = watch(calls, "demo-anna")
    await create(calls, user_ids=[1])
    await anna.wait_for(1)
    assert core.hub.subscriber_count == before + 1
    anna.cancel()
    async with asyncio.timeout(5):
        # The server's counter has no event to wait on: poll it.
        while core.hub.subscriber_count != before:  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def test_slow_subscriber_gets_a_reset_not_unbounded_memory(
    calls: call_service_pb2_grpc.CallServiceStub, core: Core
) -> None:
    assert core.hub is not None
    core.hub._queue_size = 8
    # A client with a tiny flow-control window that stops reading: the server
    # cannot write, so events pile up in the subscriber's queue.
    options = [("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 1024)]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{core.port}", options=options) as slow:
        stub = call_service_pb2_grpc.CallServiceStub(slow)
        stream = stub.WatchCallCards(
            call_service_pb2.WatchCallCardsRequest(), metadata=bearer("demo-anna")
        )
        await create(calls, user_ids=[1, 2])
        assert (await stream.read()).type == Event.TYPE_SHOW
        made = [await create(calls, user_ids=[1, 2], comment="x" * 200) for _ in range(150)]
        events = []
        async with asyncio.timeout(20):
            while True:
                event = await stream.read()
                events.append(event)
                if event.type == Event.TYPE_RESET:
                    break
        assert events[-1].reason == "lagging"
        assert len(events) < 150, "the stream did not buffer every event"
        # After the reset comes a snapshot holding every card Anna sees.
        snapshot = [await stream.read() for _ in range(151)]
        assert all(e.type == Event.TYPE_SHOW for e in snapshot)
        assert {e.card.call_id for e in snapshot} >= {c.call_id for c in made}
        stream.cancel()


async def test_watch_calls_follows_every_change(
    calls: call_service_pb2_grpc.CallServiceStub,
) -> None:
    stream = calls.WatchCalls(call_service_pb2.WatchCallsRequest(), metadata=SERVICE)
    await stream.initial_metadata()  # subscribed: every later change reaches the stream
    call = await create(calls, user_ids=[3])
    await update(calls, call.call_id, State.STATE_ANSWERED)
    first, second = await stream.read(), await stream.read()
    assert (first.type, first.call.call_id) == (
        call_service_pb2.CallEvent.TYPE_CREATED,
        call.call_id,
    )
    assert second.type == call_service_pb2.CallEvent.TYPE_UPDATED
    assert second.call.state == State.STATE_ANSWERED
    resumed = calls.WatchCalls(
        call_service_pb2.WatchCallsRequest(after_seq=first.seq), metadata=SERVICE
    )
    replayed = await resumed.read()
    assert replayed.seq == second.seq
    stream.cancel()
    resumed.cancel()


async def test_watch_calls_is_for_services(calls: call_service_pb2_grpc.CallServiceStub) -> None:
    stream = calls.WatchCalls(call_service_pb2.WatchCallsRequest(), metadata=bearer("demo-anna"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stream.read()
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_server_stop_ends_streams_cleanly(
    calls: call_service_pb2_grpc.CallServiceStub, core: Core
) -> None:
    stream = calls.WatchCallCards(
        call_service_pb2.WatchCallCardsRequest(), metadata=bearer("demo-anna")
    )
    await create(calls, user_ids=[1])
    await stream.read()
    await core.stop(grace=2)
    async with asyncio.timeout(5):
        end = await stream.read()
    assert end is grpc.aio.EOF
    assert await stream.code() == grpc.StatusCode.OK


async def test_revoking_a_token_ends_its_open_streams(
    calls: call_service_pb2_grpc.CallServiceStub, channel: grpc.aio.Channel
) -> None:
    from telephony.v1 import directory_service_pb2 as dr
    from telephony.v1 import directory_service_pb2_grpc

    directory = directory_service_pb2_grpc.DirectoryServiceStub(channel)
    issued = await directory.IssueToken(
        dr.IssueTokenRequest(role=dr.ROLE_EMPLOYEE, employee_id=1), metadata=bearer("demo-admin")
    )
    stream = calls.WatchCallCards(
        call_service_pb2.WatchCallCardsRequest(), metadata=bearer(issued.secret)
    )
    await stream.initial_metadata()
    other = calls.WatchCallCards(
        call_service_pb2.WatchCallCardsRequest(), metadata=bearer("demo-anna")
    )
    await other.initial_metadata()
    await directory.RevokeToken(
        dr.RevokeTokenRequest(token_id=issued.token.token_id), metadata=bearer("demo-admin")
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async with asyncio.timeout(5):
            await stream.read()
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # Streams of other tokens go on.
    call = await create(calls, user_ids=[1])
    async with asyncio.timeout(5):
        event = await other.read()
    assert event.card.call_id == call.call_id
    other.cancel()
