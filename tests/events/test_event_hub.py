"""The event hub: what other threads publish reaches the loop's subscriptions in order,
with revocations and resets in their place among the events."""

from __future__ import annotations

import asyncio
import threading
from typing import cast

import uvloop

from core.events import EventHub, TokenRevoked
from core.model import CallView, PublishedEvent, utc_now


def event(seq: int) -> PublishedEvent:
    # The hub routes by card events and never reads the view.
    return PublishedEvent(seq, "created", cast(CallView, None), (), utc_now())


def drained(items: list[object]) -> list[object]:
    return [i.seq if isinstance(i, PublishedEvent) else i for i in items]


async def test_what_threads_post_arrives_in_order_with_revocations_in_place() -> None:
    hub = EventHub(asyncio.get_running_loop())
    watcher = hub.subscribe("watcher", notices=True)
    holder = hub.subscribe("gone")

    def commit() -> None:
        for seq in (1, 2):
            hub.publish(event(seq))
        hub.revoke("gone")
        for seq in range(3, 40):
            hub.publish(event(seq))

    worker = threading.Thread(target=commit)
    worker.start()
    await asyncio.to_thread(worker.join, 10)
    await asyncio.sleep(0)  # the loop runs what the thread posted
    assert drained(watcher.drain()) == [1, 2, TokenRevoked("gone"), *range(3, 40)]
    assert drained(holder.drain())[:2] == [1, 2]
    assert holder.revoked and holder.closed
    assert hub.published == 39


async def test_a_publish_on_the_loop_comes_after_what_threads_posted_before_it() -> None:
    hub = EventHub(asyncio.get_running_loop())
    watcher = hub.subscribe("watcher")
    # Posted by a thread while the loop is busy here: not yet delivered.

    def commit() -> None:
        for seq in (1, 2):
            hub.publish(event(seq))

    worker = threading.Thread(target=commit)
    worker.start()
    worker.join(10)
    assert watcher.drain() == []
    hub.publish(event(3))
    assert drained(watcher.drain()) == [1, 2, 3]
    hub.reset_all()
    hub.publish(event(4))
    await asyncio.sleep(0)
    items = watcher.drain()
    assert [i.seq for i in items if isinstance(i, PublishedEvent)] == [4]
    assert len(items) == 2 and not isinstance(items[0], PublishedEvent)


async def reply_and_stream_order() -> list[str]:
    """A storage thread publishes its commit's events and then hands back its result, as
    run_in_executor does; the loop is busy meanwhile, so both wait for the same turn. In
    what order the RPC waiting for the result and a stream of the events go on."""
    loop = asyncio.get_running_loop()
    hub = EventHub(loop)
    watcher = hub.subscribe("watcher")
    reply: asyncio.Future[None] = loop.create_future()
    order: list[str] = []

    def commit() -> None:
        hub.publish(event(1))
        loop.call_soon_threadsafe(reply.set_result, None)

    async def stream() -> None:
        await watcher.get()
        order.append("event")

    worker = threading.Thread(target=commit)
    worker.start()
    worker.join(10)
    streaming = asyncio.create_task(stream())
    await reply
    order.append("reply")
    await asyncio.wait_for(streaming, 10)
    return order


async def test_the_reply_of_the_work_that_made_events_is_resumed_before_the_streams() -> None:
    assert await reply_and_stream_order() == ["reply", "event"]


def test_on_uvloop_too_the_reply_is_resumed_before_the_streams() -> None:
    # Core's loop.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(reply_and_stream_order()) == ["reply", "event"]
