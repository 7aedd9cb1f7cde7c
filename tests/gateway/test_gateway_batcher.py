"""gateway.batcher.Batcher with a send function the tests answer batch by batch: what goes
in which batch, in what order, with what timeout, and which outcome reaches which waiter."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from gateway import batcher as batcher_module
from gateway.batcher import MIN_TIMEOUT, Batcher, BatchMismatch
from telephony.v1 import call_pb2
from telephony.v1 import call_service_pb2 as pb

# Every wait of these tests is bounded by this many seconds.
WAIT = 5.0


def command(name: str) -> pb.CallCommand:
    """A command recognisable by `name`, its pbx_call_id and request id."""
    return pb.CallCommand(create=pb.CreateCallRequest(pbx_call_id=name), request_id=f"req-{name}")


def name_of(command: pb.CallCommand) -> str:
    return command.create.pbx_call_id


def outcome_for(command: pb.CallCommand) -> pb.CallOutcome:
    """What the test's core answers to `command`: a call that names it."""
    call = call_pb2.Call(pbx_call_id=name_of(command))
    return pb.CallOutcome(created=pb.CreateCallResponse(call=call, created=True))


class Boom(Exception):
    """The failure of one send."""


@dataclass
class Sent:
    """One call of the send function: its commands, its timeout, and the reply it waits for."""

    commands: list[pb.CallCommand]
    timeout: float
    reply: asyncio.Future[pb.SubmitCallsResponse]

    @property
    def names(self) -> list[str]:
        return [name_of(c) for c in self.commands]

    def answer(self) -> None:
        """Each command's own outcome, in the order of the commands."""
        outcomes = [outcome_for(c) for c in self.commands]
        self.reply.set_result(pb.SubmitCallsResponse(outcomes=outcomes))

    def answer_with(self, count: int) -> None:
        outcomes = [outcome_for(self.commands[0]) for _ in range(count)]
        self.reply.set_result(pb.SubmitCallsResponse(outcomes=outcomes))

    def fail(self, error: BaseException) -> None:
        self.reply.set_exception(error)


@dataclass
class FakeSend:
    """The send function of a Batcher: records every batch and holds it until answered.
    As a grpc.aio call does, a batch leaves when the function is called, and what it
    returns is awaited for the reply."""

    sent: list[Sent] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def __call__(
        self, commands: Sequence[pb.CallCommand], seconds: float
    ) -> asyncio.Future[pb.SubmitCallsResponse]:
        reply: asyncio.Future[pb.SubmitCallsResponse] = asyncio.get_running_loop().create_future()
        self.sent.append(Sent(list(commands), seconds, reply))
        self.arrived.set()
        return reply

    async def batch(self, index: int) -> Sent:
        """Batch `index` (0-based), once it was sent."""
        async with asyncio.timeout(WAIT):
            while len(self.sent) <= index:
                self.arrived.clear()
                await self.arrived.wait()
        return self.sent[index]

    @property
    def batches(self) -> list[list[str]]:
        return [s.names for s in self.sent]


async def settle() -> None:
    """Lets every task that can run do so (the batcher starts its sends in tasks)."""
    for _ in range(20):
        await asyncio.sleep(0)


def submit(batcher: Batcher, *names: str) -> list[asyncio.Task[pb.CallOutcome]]:
    return [asyncio.create_task(batcher.submit(command(n))) for n in names]


async def submitted(batcher: Batcher, *names: str) -> list[asyncio.Task[pb.CallOutcome]]:
    """Submits the commands one after another (each task has run its submit)."""
    tasks = []
    for name in names:
        tasks.append(asyncio.create_task(batcher.submit(command(name))))
        await settle()
    return tasks


async def results(tasks: list[asyncio.Task[pb.CallOutcome]]) -> list[str]:
    """The pbx_call_id of each task's outcome."""
    async with asyncio.timeout(WAIT):
        outcomes = await asyncio.gather(*tasks)
    return [o.created.call.pbx_call_id for o in outcomes]


class Clock:
    """time.monotonic of gateway.batcher, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(batcher_module, "time", clock)
    return clock


async def test_a_lone_command_goes_at_once_as_a_batch_of_one() -> None:
    send = FakeSend()
    sizes: list[int] = []
    batcher = Batcher(send, 5.0, observe=sizes.append)
    (task,) = submit(batcher, "a")

    sent = await send.batch(0)
    assert sent.names == ["a"]
    assert sent.commands[0].request_id == "req-a"
    assert batcher.queued == 0
    sent.answer()
    assert await results([task]) == ["a"]
    assert send.batches == [["a"]]
    assert sizes == [1]


async def test_a_batch_leaves_when_it_is_dispatched_not_after_what_the_loop_has_ready() -> None:
    send = FakeSend()
    batcher = Batcher(send, 5.0, max_in_flight=1)
    (a,) = submit(batcher, "a")
    await asyncio.sleep(0)  # the submit has run; nothing else has had a turn since
    assert send.batches == [["a"]]
    b, c = submit(batcher, "b", "c")
    await asyncio.sleep(0)
    assert send.batches == [["a"]]
    # The reply's turn sends the next batch, before any of its own waiters is answered.
    send.sent[0].answer()
    await asyncio.sleep(0)
    assert send.batches == [["a"], ["b", "c"]]
    assert not a.done()
    send.sent[1].answer()
    assert await results([a, b, c]) == ["a", "b", "c"]


async def test_a_send_that_fails_at_once_fails_its_batch_and_the_next_goes() -> None:
    boom = Boom("the channel is closed")
    send = FakeSend()
    calls = 0

    def failing_first(
        commands: Sequence[pb.CallCommand], seconds: float
    ) -> asyncio.Future[pb.SubmitCallsResponse]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise boom
        return send(commands, seconds)

    batcher = Batcher(failing_first, 5.0, max_in_flight=1)
    (a,) = submit(batcher, "a")
    with pytest.raises(Boom) as caught:
        async with asyncio.timeout(WAIT):
            await a
    assert caught.value is boom
    (b,) = submit(batcher, "b")
    (await send.batch(0)).answer()
    assert await results([b]) == ["b"]


async def test_commands_that_queue_behind_the_batches_in_flight_go_together() -> None:
    send = FakeSend()
    sizes: list[int] = []
    batcher = Batcher(send, 5.0, max_in_flight=2, observe=sizes.append)
    first = await submitted(batcher, "a", "b")
    assert send.batches == [["a"], ["b"]]

    queued = await submitted(batcher, "c", "d", "e")
    assert batcher.queued == 3
    assert send.batches == [["a"], ["b"]], "nothing more is sent while two batches are out"

    # A reply frees a place: everything that queued goes in one batch, in arrival order.
    send.sent[1].answer()
    third = await send.batch(2)
    assert third.names == ["c", "d", "e"]
    assert [c.request_id for c in third.commands] == ["req-c", "req-d", "req-e"]
    assert batcher.queued == 0

    third.answer()
    send.sent[0].answer()
    assert await results(first + queued) == ["a", "b", "c", "d", "e"]
    assert sizes == [1, 1, 3]


async def test_each_waiter_gets_the_outcome_of_its_own_place_in_the_batch() -> None:
    send = FakeSend()
    batcher = Batcher(send, 5.0, max_in_flight=1)
    (lone,) = await submitted(batcher, "a")
    queued = await submitted(batcher, "x", "y", "z")
    send.sent[0].answer()
    batch = await send.batch(1)
    # Core's outcomes name calls other than the commands': each waiter gets the one at its
    # own index, not one matched by content.
    outcomes = [
        pb.CallOutcome(updated=pb.UpdateCallResponse(call=call_pb2.Call(call_id=index + 100)))
        for index in range(3)
    ]
    batch.reply.set_result(pb.SubmitCallsResponse(outcomes=outcomes))
    async with asyncio.timeout(WAIT):
        got = await asyncio.gather(*queued)
    assert [o.updated.call.call_id for o in got] == [100, 101, 102]
    assert await results([lone]) == ["a"]


async def test_max_batch_splits_a_long_queue() -> None:
    send = FakeSend()
    sizes: list[int] = []
    batcher = Batcher(send, 5.0, max_batch=3, max_in_flight=1, observe=sizes.append)
    tasks = await submitted(batcher, "a")
    tasks += await submitted(batcher, "b", "c", "d", "e", "f", "g", "h")
    assert batcher.queued == 7

    for index in range(4):
        (await send.batch(index)).answer()
    assert await results(tasks) == ["a", "b", "c", "d", "e", "f", "g", "h"]
    assert send.batches == [["a"], ["b", "c", "d"], ["e", "f", "g"], ["h"]]
    assert sizes == [1, 3, 3, 1]


async def test_a_failed_send_fails_exactly_the_commands_of_its_batch() -> None:
    send = FakeSend()
    batcher = Batcher(send, 5.0, max_in_flight=2)
    a, b, c, d = await submitted(batcher, "a", "b", "c", "d")
    assert send.batches == [["a"], ["b"]]

    boom = Boom("core went away")
    send.sent[1].fail(boom)
    with pytest.raises(Boom) as caught:
        async with asyncio.timeout(WAIT):
            await b
    assert caught.value is boom

    # The commands queued behind it go in the next batch and are answered as usual.
    later = await send.batch(2)
    assert later.names == ["c", "d"]
    later.answer()
    send.sent[0].answer()
    assert await results([a, c, d]) == ["a", "c", "d"]


async def test_every_command_of_a_failed_batch_gets_the_same_error() -> None:
    send = FakeSend()
    batcher = Batcher(send, 5.0, max_in_flight=1)
    (a,) = await submitted(batcher, "a")
    b, c = await submitted(batcher, "b", "c")
    send.sent[0].answer()
    boom = Boom("deadline")
    (await send.batch(1)).fail(boom)
    async with asyncio.timeout(WAIT):
        outcomes = await asyncio.gather(b, c, return_exceptions=True)
    assert outcomes[0] is boom and outcomes[1] is boom
    assert await results([a]) == ["a"]


async def test_a_waiter_cancelled_while_queued_is_left_out_of_its_batch() -> None:
    send = FakeSend()
    sizes: list[int] = []
    batcher = Batcher(send, 5.0, max_in_flight=1, observe=sizes.append)
    (a,) = await submitted(batcher, "a")
    b, c, d = await submitted(batcher, "b", "c", "d")
    c.cancel()
    await settle()

    send.sent[0].answer()
    batch = await send.batch(1)
    assert batch.names == ["b", "d"]
    batch.answer()
    assert await results([a, b, d]) == ["a", "b", "d"]
    assert c.cancelled()
    assert sizes == [1, 2]


async def test_a_queue_of_only_cancelled_waiters_sends_nothing_and_frees_its_place() -> None:
    send = FakeSend()
    batcher = Batcher(send, 5.0, max_in_flight=1)
    (a,) = await submitted(batcher, "a")
    gone = await submitted(batcher, "b", "c")
    for task in gone:
        task.cancel()
    await settle()
    send.sent[0].answer()
    assert await results([a]) == ["a"]
    await settle()
    assert send.batches == [["a"]]

    # The batcher is not left thinking a batch is out: the next command goes at once.
    (e,) = submit(batcher, "e")
    (await send.batch(1)).answer()
    assert await results([e]) == ["e"]
    assert send.batches == [["a"], ["e"]]


async def test_a_waiter_cancelled_while_its_batch_is_out_spoils_no_other_outcome() -> None:
    send = FakeSend()
    batcher = Batcher(send, 5.0, max_in_flight=1)
    (a,) = await submitted(batcher, "a")
    b, c = await submitted(batcher, "b", "c")
    send.sent[0].answer()
    batch = await send.batch(1)
    b.cancel()
    await settle()
    batch.answer()
    assert await results([a, c]) == ["a", "c"]
    assert b.cancelled()


async def test_a_lone_batch_has_the_configured_timeout(clock: Clock) -> None:
    send = FakeSend()
    batcher = Batcher(send, 7.5)
    (a,) = submit(batcher, "a")
    sent = await send.batch(0)
    assert sent.timeout == 7.5
    sent.answer()
    await results([a])


async def test_a_batch_goes_with_the_earliest_deadline_of_its_commands(clock: Clock) -> None:
    send = FakeSend()
    batcher = Batcher(send, 10.0, max_in_flight=1)
    (a,) = await submitted(batcher, "a")  # at 1000: deadline 1010
    clock.now = 1003.0
    (b,) = await submitted(batcher, "b")  # deadline 1013
    clock.now = 1004.0
    (c,) = await submitted(batcher, "c")  # deadline 1014
    clock.now = 1007.0
    send.sent[0].answer()

    batch = await send.batch(1)
    assert batch.names == ["b", "c"]
    # b waited 4 s of its 10: the batch has the 6 s b has left, less than c's 7.
    assert batch.timeout == pytest.approx(6.0)
    assert batch.timeout <= 10.0
    batch.answer()
    assert await results([a, b, c]) == ["a", "b", "c"]


async def test_a_batch_whose_deadline_passed_in_the_queue_still_goes_with_the_least_timeout(
    clock: Clock,
) -> None:
    send = FakeSend()
    batcher = Batcher(send, 2.0, max_in_flight=1)
    (a,) = await submitted(batcher, "a")
    (b,) = await submitted(batcher, "b")
    clock.now += 30.0
    send.sent[0].answer()
    batch = await send.batch(1)
    assert batch.timeout == MIN_TIMEOUT
    batch.answer()
    assert await results([a, b]) == ["a", "b"]


@pytest.mark.parametrize("count", [1, 3], ids=["fewer", "more"])
async def test_a_reply_with_another_number_of_outcomes_fails_its_commands(count: int) -> None:
    send = FakeSend()
    batcher = Batcher(send, 5.0, max_in_flight=1)
    (a,) = await submitted(batcher, "a")
    b, c = await submitted(batcher, "b", "c")
    send.sent[0].answer()
    (await send.batch(1)).answer_with(count)
    async with asyncio.timeout(WAIT):
        outcomes = await asyncio.gather(b, c, return_exceptions=True)
    assert all(isinstance(o, BatchMismatch) for o in outcomes), outcomes
    assert await results([a]) == ["a"]

    # The batcher goes on: the next command is sent and answered.
    (d,) = submit(batcher, "d")
    (await send.batch(2)).answer()
    assert await results([d]) == ["d"]


async def test_close_waits_for_the_batches_out_and_cancels_the_queued() -> None:
    send = FakeSend()
    batcher = Batcher(send, 5.0, max_in_flight=1)
    (a,) = await submitted(batcher, "a")
    b, c = await submitted(batcher, "b", "c")

    closing = asyncio.create_task(batcher.close())
    await settle()
    assert b.cancelled() and c.cancelled()
    assert not closing.done(), "close returned with a batch still out"

    send.sent[0].answer()
    async with asyncio.timeout(WAIT):
        await closing
    assert await results([a]) == ["a"]
    assert send.batches == [["a"]], "a queued command was sent after close"
    assert batcher.queued == 0


async def test_close_with_nothing_out_returns_at_once() -> None:
    batcher = Batcher(FakeSend(), 5.0)
    async with asyncio.timeout(WAIT):
        await batcher.close()
