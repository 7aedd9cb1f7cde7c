"""The card feed: core's WatchCardFeed and OpenCardStream, and the gateway's router that
delivers card streams from the feed, against a real core on a real socket.

Exactness is checked the way a browser sees it: every card event once, in seq order,
however the stream started (snapshot, window, core's log) or fell behind.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from falcon.asgi import SSEvent

from core.model import utc_now
from core.rpc.card_streams import batch_bytes
from core.server import Core
from gateway import feed
from gateway.config import Config
from gateway.core_client import CoreClient
from gateway.feed import CardRouter, CardStream
from telephony.v1 import call_pb2, call_service_pb2_grpc, directory_service_pb2_grpc
from telephony.v1 import call_service_pb2 as pb
from telephony.v1 import directory_service_pb2 as dr
from tests.conftest import bearer, running_core

DEMO = pb.ChannelRef(channel_key="demo-channel-key")
ADMIN = bearer("demo-admin")
SERVICE = bearer("demo-service")
FEED = pb.CardFeedEvent
# (event, id, card JSON) as a browser reads them.
Message = tuple[str, int, dict[str, Any]]


@pytest.fixture
async def core(tmp_path: Path) -> AsyncIterator[Core]:
    """A core that checks its streams' tokens often, so that tests need not wait."""
    async with running_core(tmp_path, stream_token_check_seconds=0.05) as server:
        yield server


@pytest.fixture
def calls(channel: grpc.aio.Channel) -> call_service_pb2_grpc.CallServiceStub:
    return call_service_pb2_grpc.CallServiceStub(channel)


@pytest.fixture
async def router(core: Core) -> AsyncIterator[CardRouter]:
    config = Config(
        {
            "VATS_CORE_TARGET": f"127.0.0.1:{core.port}",
            "VATS_SERVICE_TOKEN": "demo-service",
            "VATS_SSE_KEEPALIVE": "0.2",
        }
    )
    client = CoreClient(config)
    client.open()
    router = CardRouter(config, client)
    router.start()
    # As in a running gateway, whose feed starts with it.
    await asyncio.wait_for(router._started.wait(), 10)
    try:
        yield router
    finally:
        await router.stop()
        await client.close()


async def create(calls: call_service_pb2_grpc.CallServiceStub, user_ids: list[int]) -> int:
    request = pb.CreateCallRequest(
        channel=DEMO, direction=call_pb2.DIRECTION_INCOMING, phone="+74951234567", user_ids=user_ids
    )
    reply = await calls.CreateCall(request, metadata=SERVICE, timeout=5)
    return int(reply.call.call_id)


async def answer(calls: call_service_pb2_grpc.CallServiceStub, call_id: int) -> None:
    request = pb.UpdateCallRequest(
        channel=DEMO, call_id=call_id, state=call_pb2.Call.STATE_ANSWERED
    )
    await calls.UpdateCall(request, metadata=SERVICE, timeout=5)


class Browser:
    """Reads a stream from the router as the SSE response would, in a task of its own."""

    def __init__(self, router: CardRouter, stream: CardStream) -> None:
        self.stream = stream
        self.over: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.received: asyncio.Queue[Message | None] = asyncio.Queue()
        self.ended = False
        self._reader = asyncio.create_task(self._read(router.events(stream, self.over)))

    async def _read(self, events: AsyncIterator[SSEvent]) -> None:
        try:
            async for event in events:
                if event.event is not None:  # else a keepalive
                    self.received.put_nowait(parse(event.serialize()))
        finally:
            self.received.put_nowait(None)

    async def take(self, count: int, wait: float = 10) -> list[Message]:
        """The next `count` messages (fewer when the stream ends)."""
        taken: list[Message] = []
        async with asyncio.timeout(wait):
            while len(taken) < count and not self.ended:
                message = await self.received.get()
                if message is None:
                    self.ended = True
                else:
                    taken.append(message)
        return taken

    async def quiet(self, wait: float = 0.5) -> list[Message]:
        """What arrives within `wait` seconds."""
        await asyncio.sleep(wait)
        got: list[Message] = []
        while not self.received.empty():
            message = self.received.get_nowait()
            if message is not None:
                got.append(message)
        return got

    async def close(self) -> None:
        if not self.over.done():
            self.over.set_result(None)
        await self._reader


def parse(block: bytes) -> Message:
    fields = dict(line.split(": ", 1) for line in block.decode().strip().split("\n"))
    return fields["event"], int(fields["id"]), json.loads(fields["data"])


async def open_browser(
    router: CardRouter, token: str, after_seq: int = 0, employee_id: int = 0
) -> Browser:
    stream = await router.open(employee_id, after_seq, f"Bearer {token}", "test", "http://gw")
    return Browser(router, stream)


async def fed(router: CardRouter, core: Core) -> None:
    """Wait until the router's feed has every event core committed."""
    last = await core.runner.run(core.cards.last_seq)
    for _ in range(1000):
        if router._position >= last:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the feed did not bring every event")


def ids(messages: list[Message]) -> list[int]:
    return [seq for _, seq, _ in messages]


# --- core's side -------------------------------------------------------------------------------


async def test_the_feed_names_the_tokens_no_longer_valid_then_every_event(
    channel: grpc.aio.Channel, calls: call_service_pb2_grpc.CallServiceStub
) -> None:
    directory = directory_service_pb2_grpc.DirectoryServiceStub(channel)
    issued = await directory.IssueToken(
        dr.IssueTokenRequest(role=dr.ROLE_EMPLOYEE, employee_id=1), metadata=ADMIN
    )
    await directory.RevokeToken(
        dr.RevokeTokenRequest(token_id=issued.token.token_id), metadata=ADMIN
    )
    valid = await directory.IssueToken(
        dr.IssueTokenRequest(role=dr.ROLE_EMPLOYEE, employee_id=2), metadata=ADMIN
    )
    stream = calls.WatchCardFeed(
        pb.WatchCardFeedRequest(token_ids=[issued.token.token_id, valid.token.token_id]),
        metadata=SERVICE,
    )
    start = await stream.read()
    assert start.type == FEED.TYPE_START and not start.reset
    revoked = await stream.read()
    assert (revoked.type, revoked.token_id) == (FEED.TYPE_REVOKED, issued.token.token_id)
    call_id = await create(calls, [1, 2])
    event = await stream.read()
    assert (event.type, event.seq > start.seq, event.card.call_id) == (
        FEED.TYPE_EVENT,
        True,
        call_id,
    )
    assert [(c.type, c.reason, list(c.employee_ids)) for c in event.changes] == [
        (pb.CallCardEvent.TYPE_SHOW, "", [1, 2])
    ]
    await directory.RevokeToken(
        dr.RevokeTokenRequest(token_id=valid.token.token_id), metadata=ADMIN
    )
    notice = await asyncio.wait_for(stream.read(), 5)
    assert (notice.type, notice.token_id) == (FEED.TYPE_REVOKED, valid.token.token_id)
    stream.cancel()


async def test_the_feed_resumes_from_a_seq_and_resets_past_the_log(
    calls: call_service_pb2_grpc.CallServiceStub,
) -> None:
    await create(calls, [1])
    second = await create(calls, [2])
    third = await create(calls, [1, 2])
    live = calls.WatchCardFeed(pb.WatchCardFeedRequest(), metadata=SERVICE)
    position = (await live.read()).seq
    live.cancel()
    after = position - 2
    resumed = calls.WatchCardFeed(pb.WatchCardFeedRequest(after_seq=after), metadata=SERVICE)
    start, *events = [await resumed.read() for _ in range(3)]
    assert (start.type, start.seq, start.reset) == (FEED.TYPE_START, after, False)
    assert [e.card.call_id for e in events] == [second, third]
    resumed.cancel()
    unknown = calls.WatchCardFeed(
        pb.WatchCardFeedRequest(after_seq=position + 100), metadata=SERVICE
    )
    start = await unknown.read()
    assert (start.type, start.seq, start.reset) == (FEED.TYPE_START, position, True)
    unknown.cancel()


def test_a_batch_frames_encoded_messages_as_the_events_field() -> None:
    messages = [
        FEED(type=FEED.TYPE_START, seq=7),
        FEED(type=FEED.TYPE_EVENT, seq=8, card=call_pb2.CallCard(call_id=3, phone="x" * 300)),
        FEED(type=FEED.TYPE_REVOKED, token_id="t-1"),
    ]
    framed = FEED.FromString(batch_bytes([m.SerializeToString() for m in messages]))
    assert framed == FEED(type=FEED.TYPE_BATCH, events=messages)


async def test_a_feed_that_takes_batches_gets_what_was_ready_together_as_one(
    calls: call_service_pb2_grpc.CallServiceStub,
) -> None:
    await create(calls, [1])
    first = await create(calls, [1])
    second = await create(calls, [2])
    live = calls.WatchCardFeed(pb.WatchCardFeedRequest(), metadata=SERVICE)
    position = (await live.read()).seq
    live.cancel()
    # A replay is ready at once: the start and the events after it come as one message.
    request = pb.WatchCardFeedRequest(after_seq=position - 2, batches=True)
    batched = calls.WatchCardFeed(request, metadata=SERVICE)
    batch = await batched.read()
    assert batch.type == FEED.TYPE_BATCH
    assert [(m.type, m.card.call_id) for m in batch.events] == [
        (FEED.TYPE_START, 0),
        (FEED.TYPE_EVENT, first),
        (FEED.TYPE_EVENT, second),
    ]
    # The same messages as a feed that takes none: one by one.
    single = calls.WatchCardFeed(pb.WatchCardFeedRequest(after_seq=position - 2), metadata=SERVICE)
    assert [await single.read() for _ in range(3)] == list(batch.events)
    single.cancel()
    # Live events of one commit: every one, in order, however they were grouped.
    commands = [
        pb.CallCommand(
            create=pb.CreateCallRequest(
                channel=DEMO, direction=call_pb2.DIRECTION_INCOMING, phone=phone, user_ids=[1]
            )
        )
        for phone in ("+74951110001", "+74951110002", "+74951110003")
    ]
    submitted = await calls.SubmitCalls(
        pb.SubmitCallsRequest(commands=commands), metadata=SERVICE, timeout=5
    )
    created = [o.created.call.call_id for o in submitted.outcomes]
    received: list[int] = []
    async with asyncio.timeout(5):
        while len(received) < len(created):
            message = await batched.read()
            inner = message.events if message.type == FEED.TYPE_BATCH else [message]
            received += [m.card.call_id for m in inner if m.type == FEED.TYPE_EVENT]
    assert received == created
    batched.cancel()


async def test_the_router_takes_the_messages_of_a_batch_in_order(core: Core) -> None:
    config = Config({"VATS_CORE_TARGET": f"127.0.0.1:{core.port}"})
    router = CardRouter(config, CoreClient(config))
    event = FEED(type=FEED.TYPE_EVENT, seq=12, card=call_pb2.CallCard(call_id=5))
    router._take(FEED(type=FEED.TYPE_BATCH, events=[FEED(type=FEED.TYPE_START, seq=11), event]))
    assert router._started.is_set()
    assert (router._floor, router._position) == (11, 12)
    assert [e.seq for e in router._window] == [12]


async def test_only_service_tokens_watch_the_feed(
    calls: call_service_pb2_grpc.CallServiceStub,
) -> None:
    stream = calls.WatchCardFeed(pb.WatchCardFeedRequest(), metadata=bearer("demo-anna"))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stream.read()
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_a_stream_is_opened_within_its_tokens_scope(
    calls: call_service_pb2_grpc.CallServiceStub,
) -> None:
    call_id = await create(calls, [1])
    own = await calls.OpenCardStream(pb.OpenCardStreamRequest(), metadata=bearer("demo-anna"))
    assert own.employee_id == 1 and own.token_id
    assert [(e.type, e.card.call_id) for e in own.events] == [(pb.CallCardEvent.TYPE_SHOW, call_id)]
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await calls.OpenCardStream(
            pb.OpenCardStreamRequest(employee_id=2), metadata=bearer("demo-anna")
        )
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    held = await calls.OpenCardStream(
        pb.OpenCardStreamRequest(employee_id=2, after_seq=own.seq, held=True), metadata=SERVICE
    )
    assert (held.employee_id, held.seq, list(held.events)) == (2, own.seq, [])


# --- the gateway's router ---------------------------------------------------------------------


async def test_a_stream_gets_its_snapshot_then_only_its_employees_cards(
    core: Core, router: CardRouter, calls: call_service_pb2_grpc.CallServiceStub
) -> None:
    before = await create(calls, [1])
    anna = await open_browser(router, "demo-anna")
    snapshot = await anna.take(1)
    assert [(e, card["call_id"]) for e, _, card in snapshot] == [("show", before)]
    await create(calls, [2])
    mine = await create(calls, [1, 3])
    await answer(calls, before)
    live = await anna.take(2)
    assert [(e, card["call_id"]) for e, _, card in live] == [("show", mine), ("hide", before)]
    assert ids(snapshot + live) == sorted(set(ids(snapshot + live)))
    assert await anna.quiet() == []
    await anna.close()


async def test_a_stream_that_falls_behind_catches_up_from_core(
    core: Core,
    router: CardRouter,
    calls: call_service_pb2_grpc.CallServiceStub,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(feed, "STREAM_BACKLOG", 2)
    # Opened, but not read from while the events come.
    stream = await router.open(0, 0, "Bearer demo-anna", "test", "http://gw")
    made = [await create(calls, [1]) for _ in range(6)]
    await fed(router, core)
    assert stream.behind, "the stream took only what its backlog holds"
    anna = Browser(router, stream)
    got = await anna.take(6)
    assert [card["call_id"] for _, _, card in got] == made
    assert ids(got) == sorted(set(ids(got)))
    later = await create(calls, [1])
    assert [card["call_id"] for _, _, card in await anna.take(1)] == [later]
    await anna.close()


async def test_resume_is_the_same_from_the_window_and_from_core(
    core: Core,
    router: CardRouter,
    calls: call_service_pb2_grpc.CallServiceStub,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    anna = await open_browser(router, "demo-anna")
    first = await create(calls, [1])
    seen = await anna.take(1)
    await anna.close()
    missed = [await create(calls, [1]), await create(calls, [2]), await create(calls, [1])]
    await answer(calls, first)
    await fed(router, core)
    last_seen = seen[0][1]
    assert router._holds(last_seen)
    in_window = await open_browser(router, "demo-anna", last_seen)
    from_window = await in_window.take(3)
    await in_window.close()

    # The window keeps few events now: that seq is older than all of them.
    monkeypatch.setattr(feed, "WINDOW_EVENTS", 4)
    for _ in range(8):
        await create(calls, [3])
    await fed(router, core)
    assert not router._holds(last_seen)
    resumed = await open_browser(router, "demo-anna", last_seen)
    from_core = await resumed.take(3)
    assert from_window == from_core
    assert [(e, card["call_id"]) for e, _, card in from_core] == [
        ("show", missed[0]),
        ("show", missed[2]),
        ("hide", first),
    ]
    assert await resumed.quiet() == []
    await resumed.close()


async def test_streams_opened_during_a_burst_get_every_card_once(
    core: Core, router: CardRouter, calls: call_service_pb2_grpc.CallServiceStub
) -> None:
    made: list[int] = []

    async def burst() -> None:
        for _ in range(40):
            made.append(await create(calls, [1, 2]))

    poster = asyncio.create_task(burst())
    browsers = []
    for token in ["demo-anna", "demo-boris"] * 4:
        browsers.append(await open_browser(router, token))
        await asyncio.sleep(0.01)
    await poster
    for browser in browsers:
        got: list[Message] = []
        while not set(made) <= {card["call_id"] for _, _, card in got}:
            got += await browser.take(1)
        # A snapshot's cards share its seq; every event after it comes once, in order.
        seqs = ids(got)
        assert seqs == sorted(seqs)
        after_snapshot = [seq for seq in seqs if seq > seqs[0]]
        assert len(after_snapshot) == len(set(after_snapshot))
        assert await browser.quiet(0.2) == []
        await browser.close()


async def test_a_stream_ends_when_its_token_expires(
    core: Core, router: CardRouter, channel: grpc.aio.Channel
) -> None:
    directory = directory_service_pb2_grpc.DirectoryServiceStub(channel)
    request = dr.IssueTokenRequest(role=dr.ROLE_EMPLOYEE, employee_id=1)
    request.ttl.FromTimedelta(timedelta(minutes=30))
    issued = await directory.IssueToken(request, metadata=ADMIN)
    expiring = await open_browser(router, issued.secret)
    kept = await open_browser(router, "demo-anna")
    core.app.tokens.clock = lambda: utc_now() + timedelta(hours=1)
    assert await expiring.take(1) == [] and expiring.ended
    assert not kept.ended
    await kept.close()
