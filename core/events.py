"""Live call events: the in-process hub, the change-stream follower, and the
resume logic of the card and call streams.

Every change of a call is stored as an event with a deployment-wide sequence
number (see core.app.cardlog). A stream starts from a snapshot or from a
replay of the stored log, then follows the hub; a subscriber that falls
behind gets a RESET and a fresh snapshot rather than unbounded memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Protocol

from core.app.cardlog import CardLog
from core.domain import CardChange
from core.model import CallView, PublishedEvent

log = logging.getLogger("vats.events")

# Events a subscriber may have waiting before it is reset.
DEFAULT_QUEUE_SIZE = 2048


@dataclasses.dataclass(frozen=True)
class CardUpdate:
    """One item of an employee's card stream."""

    seq: int
    change: str  # show / update / hide / reset
    view: CallView | None
    reason: str = ""


@dataclasses.dataclass(frozen=True)
class CallUpdate:
    """One item of the every-call stream."""

    seq: int
    kind: str  # created / updated / expired / reset
    view: CallView | None
    reason: str = ""


class _Closed:
    pass


_CLOSED = _Closed()
_LAGGING = object()


class Subscription:
    """A subscriber's bounded queue of live events."""

    def __init__(self, hub: EventHub, size: int, token_id: str | None = None) -> None:
        self._hub = hub
        self._queue: asyncio.Queue[PublishedEvent | object] = asyncio.Queue(maxsize=size)
        self.token_id = token_id
        self.lagging = False
        self.closed = False
        # Closed because the token that opened it was revoked.
        self.revoked = False

    def offer(self, item: PublishedEvent | object) -> None:
        if self.lagging or self.closed:
            return
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            # Drop what is queued and tell the reader to start over.
            self.lagging = True
            while not self._queue.empty():
                self._queue.get_nowait()
            self._queue.put_nowait(_LAGGING)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(asyncio.QueueFull):
                self._queue.put_nowait(_CLOSED)

    async def get(self) -> PublishedEvent | object:
        item = await self._queue.get()
        if item is _LAGGING:
            self.lagging = False
        return item

    def drain(self) -> list[PublishedEvent | object]:
        items = []
        while not self._queue.empty():
            items.append(self._queue.get_nowait())
        return items


class EventHub:
    """Fans published events out to the subscriptions of this process.

    `publish` may be called from any thread; delivery happens on the loop.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, queue_size: int = DEFAULT_QUEUE_SIZE
    ) -> None:
        self._loop = loop
        self._queue_size = queue_size
        self._subscriptions: set[Subscription] = set()
        self._closed = False
        self.published = 0

    def publish(self, event: PublishedEvent) -> None:
        if threading.get_ident() == getattr(self._loop, "_thread_id", None):
            self._dispatch(event)
        else:
            self._loop.call_soon_threadsafe(self._dispatch, event)

    def revoke(self, token_id: str) -> None:
        """End at once every stream opened with a token that was just revoked."""
        self._loop.call_soon_threadsafe(self._revoke, token_id)

    def _revoke(self, token_id: str) -> None:
        for subscription in list(self._subscriptions):
            if subscription.token_id == token_id:
                subscription.revoked = True
                subscription.close()

    def reset_all(self) -> None:
        """Every subscriber starts over (the event source lost its place)."""
        self._loop.call_soon_threadsafe(self._dispatch_reset)

    def _dispatch(self, event: PublishedEvent) -> None:
        self.published += 1
        for subscription in self._subscriptions:
            subscription.offer(event)

    def _dispatch_reset(self) -> None:
        for subscription in self._subscriptions:
            subscription.offer(_LAGGING)

    def subscribe(self, token_id: str | None = None) -> Subscription:
        subscription = Subscription(self, self._queue_size, token_id)
        if self._closed:
            # The server is stopping: the stream ends at once.
            subscription.close()
        else:
            self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)
        subscription.close()

    @property
    def subscriber_count(self) -> int:
        return len(self._subscriptions)

    def close(self) -> None:
        """End every stream cleanly (server shutdown)."""
        self._closed = True
        for subscription in list(self._subscriptions):
            subscription.close()
        self._subscriptions.clear()


class StorageRun(Protocol):
    async def run(self, fn: Callable[[], Any]) -> Any: ...


def _card_updates_of(event: PublishedEvent, employee_id: int) -> Iterator[CardUpdate]:
    for card_event in event.card_events:
        if card_event.employee_id == employee_id:
            yield CardUpdate(event.seq, card_event.change.value, event.view, card_event.reason)


class EventStreams:
    """The resume logic shared by WatchCallCards and WatchCalls."""

    def __init__(self, log: CardLog, hub: EventHub, runner: StorageRun) -> None:
        self.log = log
        self.hub = hub
        self.runner = runner

    async def cards(
        self, employee_id: int, after_seq: int, subscription: Subscription | None = None
    ) -> AsyncIterator[CardUpdate]:
        """Pass a `subscription` taken earlier to be sure of every event after that moment."""
        subscription = subscription or self.hub.subscribe()
        try:
            updates, position = await self._card_start(employee_id, after_seq)
            for update in updates:
                yield update
            while True:
                item = await subscription.get()
                if isinstance(item, _Closed):
                    return
                if isinstance(item, PublishedEvent):
                    if item.seq <= position:
                        continue
                    position = item.seq
                    for update in _card_updates_of(item, employee_id):
                        yield update
                    continue
                # Lagging: drop what is queued and start over from a fresh snapshot.
                subscription.drain()
                updates, position = await self._snapshot(employee_id, "lagging")
                for update in updates:
                    yield update
        finally:
            self.hub.unsubscribe(subscription)

    async def _card_start(self, employee_id: int, after_seq: int) -> tuple[list[CardUpdate], int]:
        if after_seq <= 0:
            return await self._snapshot(employee_id, None)

        def replay() -> tuple[list[CardUpdate], int] | None:
            events = self.log.card_events_after(employee_id, after_seq)
            if events is None:
                return None
            updates = [u for e in events for u in _card_updates_of(e, employee_id)]
            last = events[-1].seq if events else after_seq
            return updates, max(after_seq, last)

        replayed: tuple[list[CardUpdate], int] | None = await self.runner.run(replay)
        if replayed is None:
            return await self._snapshot(employee_id, "resume")
        return replayed

    async def _snapshot(
        self, employee_id: int, reset_reason: str | None
    ) -> tuple[list[CardUpdate], int]:
        def read() -> tuple[list[CardUpdate], int]:
            seq, views = self.log.snapshot(employee_id)
            updates = [CardUpdate(seq, CardChange.SHOW.value, v) for v in views]
            if reset_reason is not None:
                updates.insert(0, CardUpdate(seq, "reset", None, reset_reason))
            return updates, seq

        result: tuple[list[CardUpdate], int] = await self.runner.run(read)
        return result

    async def calls(
        self, after_seq: int, subscription: Subscription | None = None
    ) -> AsyncIterator[CallUpdate]:
        subscription = subscription or self.hub.subscribe()
        try:
            if after_seq > 0:

                def replay() -> tuple[list[CallUpdate] | None, int]:
                    events, end = self.log.call_events_after(after_seq)
                    if events is None:
                        return None, end
                    return [CallUpdate(e.seq, e.kind, e.view) for e in events], end

                replayed, position = await self.runner.run(replay)
                if replayed is None:
                    yield CallUpdate(position, "reset", None, "resume")
                else:
                    for update in replayed:
                        yield update
            else:
                position = await self.runner.run(self.log.last_seq)
            while True:
                item = await subscription.get()
                if isinstance(item, _Closed):
                    return
                if isinstance(item, PublishedEvent):
                    if item.seq <= position:
                        continue
                    position = item.seq
                    yield CallUpdate(item.seq, item.kind, item.view)
                    continue
                subscription.drain()
                position = await self.runner.run(self.log.last_seq)
                yield CallUpdate(position, "reset", None, "lagging")
        finally:
            self.hub.unsubscribe(subscription)
