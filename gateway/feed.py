"""The gateway's one card feed from core, and the card streams (SSE) it delivers.

Core decides every card's audience and every stream's scope. A browser's stream is
opened at core (OpenCardStream: its token or ticket checked, whose cards it shows, its
snapshot or the events it missed, and the seq they bring it up to); core's WatchCardFeed,
one per gateway, brings every event's card changes with the employee each is for, and
the tokens revoked. The gateway routes the changes by employee, each SSE message
serialised once per event and change, and keeps a window of recent events, so that a
stream resuming with Last-Event-ID within it needs no replay from core.

Nothing is lost or doubled: a stream takes the window's events after the seq core
answered with, then the live ones. When the window does not reach back that far, or the
stream fell behind, it catches up from core's log first (with the gateway's own token,
for that employee; core sends a reset and a snapshot when its log does not reach back
either). When the feed breaks it reconnects with the last seq it has, and core replays
what came meanwhile.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Iterable
from typing import Any

import grpc
import grpc.aio
from falcon.asgi import SSEvent

from gateway import convert
from gateway.config import Config
from gateway.core_client import CoreClient, caller_metadata
from telephony.v1 import call_service_pb2 as pb

log = logging.getLogger("gateway")

_FEED = pb.CardFeedEvent
# The window: at most this many recent events, and this many card changes in them.
WINDOW_EVENTS = 10_000
WINDOW_CHANGES = 200_000
# Messages a stream may have waiting; one that falls further behind catches up from core.
STREAM_BACKLOG = 1024
# How often a stream tries to catch up before it ends (the browser then reconnects).
CATCH_UP_ATTEMPTS = 3
# Reconnecting the feed: the first delay, the longest, and the one after core said it
# has no feed (an older core: streams are then relayed one by one).
RETRY_FIRST = 0.05
RETRY_LONGEST = 1.0
RETRY_UNSUPPORTED = 30.0
KEEPALIVE = convert.keepalive()


class Encoded(SSEvent):
    """An SSE message serialised once, sent as it is to every stream it goes to."""

    __slots__ = ("_block",)

    def __init__(self, block: bytes, event: str | None) -> None:
        super().__init__(event=event)
        self._block = block

    def serialize(self, handler: Any = None) -> bytes:
        return self._block


def encoded(event: pb.CallCardEvent, public_url: str) -> Encoded | None:
    message = convert.card_event(event, public_url)
    return None if message is None else Encoded(message.serialize(), message.event)


class FeedEvent:
    """One event of the feed: each employee's card change, and its SSE messages."""

    __slots__ = ("_messages", "card", "changes", "seq")

    def __init__(self, message: pb.CardFeedEvent) -> None:
        self.seq = message.seq
        self.card = message.card
        # employee -> (CallCardEvent type, reason)
        self.changes: dict[int, tuple[pb.CallCardEvent.Type, str]] = {}
        for change in message.changes:
            self.changes.update(dict.fromkeys(change.employee_ids, (change.type, change.reason)))
        self._messages: dict[tuple[pb.CallCardEvent.Type, str, str], Encoded | None] = {}

    def message(self, employee_id: int, public_url: str) -> Encoded | None:
        """The SSE message for this employee's stream (None when its cards did not change)."""
        change = self.changes.get(employee_id)
        if change is None:
            return None
        kind, reason = change
        key = (kind, reason, public_url)
        try:
            return self._messages[key]
        except KeyError:
            event = pb.CallCardEvent(seq=self.seq, type=kind, reason=reason, card=self.card)
            found = self._messages[key] = encoded(event, public_url)
            return found


class _Signal:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


QUIET = _Signal("QUIET")  # nothing was sent for a while: send a keepalive
BEHIND = _Signal("BEHIND")  # the stream must catch up from core
END = _Signal("END")  # the stream is over
_IDLE = _Signal("IDLE")  # nothing to do yet


@dataclasses.dataclass(eq=False)
class CardStream:
    """One client's card stream: whose cards, the token it was opened with, and the SSE
    messages waiting to be sent."""

    employee_id: int
    token_id: str
    public_url: str
    request_id: str
    # The seq the messages given to the stream bring it up to.
    seq: int = 0
    # Taking the feed's events (else it catches up from core first).
    joined: bool = False
    behind: bool = False
    ended: bool = False
    # Nothing sent since the last keepalive tick; a keepalive is due.
    quiet: bool = False
    keepalive_due: bool = False
    _waiting: collections.deque[Encoded] = dataclasses.field(default_factory=collections.deque)
    _waiter: asyncio.Future[None] | None = None

    def put(self, message: Encoded | None) -> None:
        if message is not None:
            self._waiting.append(message)
            self._notify()

    def take(self, event: FeedEvent) -> bool:
        """Queue a feed event for this stream; False when it is too far behind to."""
        if event.seq <= self.seq:
            return True
        if len(self._waiting) >= STREAM_BACKLOG:
            self.fall_behind()
            return False
        self.seq = event.seq
        message = event.message(self.employee_id, self.public_url)
        if message is not None:
            self._waiting.append(message)
            self._notify()
        return True

    def fall_behind(self) -> None:
        self.behind = True
        self._notify()

    def end(self) -> None:
        self.ended = True
        self._notify()

    def tick(self) -> None:
        """A keepalive tick: one that finds the stream quiet since the last makes a
        keepalive due, so that one goes out within two ticks of the last message."""
        if self.quiet:
            self.keepalive_due = True
            self._notify()
        self.quiet = True

    def _notify(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _next(self) -> Encoded | _Signal:
        if self._waiting:
            self.quiet = False
            return self._waiting.popleft()
        if self.ended:
            return END
        if self.behind:
            return BEHIND
        if self.keepalive_due:
            self.keepalive_due = self.quiet = False
            return QUIET
        return _IDLE

    async def next(self) -> Encoded | _Signal:
        """The next message; QUIET when a keepalive is due; BEHIND when the stream must
        catch up; END when it is over."""
        while (item := self._next()) is _IDLE:
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        return item


class CardRouter:
    """The feed (one WatchCardFeed call to core, reconnected when it breaks), the window of
    recent events, and the streams it delivers to. Falcon middleware: the feed starts with
    the app and stops with it."""

    def __init__(self, config: Config, core: CoreClient) -> None:
        self._config = config
        self._core = core
        self._tasks: list[asyncio.Task[None]] = []
        # False once core said it has no card feed (an older core).
        self.supported = True
        self._started = asyncio.Event()
        # The window: the events after `_floor` up to `_position`, all of them.
        self._window: list[FeedEvent] = []
        self._window_changes = 0
        self._floor = 0
        self._position = 0
        self._by_employee: dict[int, set[CardStream]] = {}
        self._by_token: dict[str, set[CardStream]] = {}

    # --- lifecycle -------------------------------------------------------------------------

    async def process_startup(self, scope: dict[str, Any], event: dict[str, Any]) -> None:
        self.start()

    async def process_shutdown(self, scope: dict[str, Any], event: dict[str, Any]) -> None:
        await self.stop()

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [asyncio.create_task(self._run()), asyncio.create_task(self._tick())]

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for stream in list(self.streams()):
            stream.end()

    async def _tick(self) -> None:
        """Keepalives: a stream quiet for a whole VATS_SSE_KEEPALIVE gets one (one timer
        for every stream, not one per stream and message)."""
        while True:
            await asyncio.sleep(self._config.sse_keepalive / 2)
            for stream in self.streams():
                stream.tick()

    # --- streams ---------------------------------------------------------------------------

    async def open(
        self,
        employee_id: int,
        after_seq: int,
        authorization: str | None,
        request_id: str,
        public_url: str,
    ) -> CardStream:
        """A client's card stream, opened at core with the client's credentials: core's
        refusal raises grpc.aio.AioRpcError."""
        self.start()
        request = pb.OpenCardStreamRequest(
            employee_id=employee_id, after_seq=after_seq, held=self._holds(after_seq)
        )
        reply = await self._core.calls.OpenCardStream(
            request,
            metadata=caller_metadata(authorization, request_id),
            timeout=self._config.core_timeout,
        )
        stream = CardStream(reply.employee_id, reply.token_id, public_url, request_id)
        self._by_token.setdefault(stream.token_id, set()).add(stream)
        self._begin(stream, reply)
        return stream

    async def events(self, stream: CardStream, over: asyncio.Future[Any]) -> AsyncIterator[SSEvent]:
        """The stream's SSE messages, with a keepalive comment whenever it is quiet; it
        ends when `over` is done, its token is revoked, or it cannot catch up."""
        over.add_done_callback(lambda _: stream.end())
        try:
            while True:
                item: Encoded | _Signal | None = await stream.next()
                if item is BEHIND:
                    item = await self._catch_up(stream)
                if isinstance(item, Encoded):
                    yield item
                elif item is QUIET:
                    yield KEEPALIVE
                elif item is END:
                    return
        finally:
            over.cancel()
            self._forget(stream)

    def _holds(self, after_seq: int) -> bool:
        """Whether the window has every event after `after_seq`."""
        return (
            self._started.is_set() and after_seq > 0 and self._floor <= after_seq <= self._position
        )

    def _begin(self, stream: CardStream, reply: pb.OpenCardStreamResponse) -> None:
        for event in reply.events:
            stream.put(encoded(event, stream.public_url))
        stream.seq = reply.seq
        stream.behind = not self._join(stream)

    def _join(self, stream: CardStream) -> bool:
        """Give the stream the window's events after its seq and route the feed's to it;
        False when the window does not reach back that far."""
        if stream.ended or not self._started.is_set() or stream.seq < self._floor:
            return False
        start = bisect.bisect_right(self._window, stream.seq, key=lambda e: e.seq)
        for event in self._window[start:]:
            stream.put(event.message(stream.employee_id, stream.public_url))
        stream.seq = max(stream.seq, self._position)
        stream.joined = True
        self._by_employee.setdefault(stream.employee_id, set()).add(stream)
        return True

    def _leave(self, stream: CardStream) -> None:
        if stream.joined:
            stream.joined = False
            same = self._by_employee.get(stream.employee_id)
            if same is not None:
                same.discard(stream)
                if not same:
                    del self._by_employee[stream.employee_id]

    def _forget(self, stream: CardStream) -> None:
        stream.ended = True
        self._leave(stream)
        same = self._by_token.get(stream.token_id)
        if same is not None:
            same.discard(stream)
            if not same:
                del self._by_token[stream.token_id]

    async def _catch_up(self, stream: CardStream) -> _Signal | None:
        """Bring a stream that fell behind (or that the window did not reach) up to the
        feed from core's log: None once it is (its messages wait), QUIET while the feed
        has not started yet, END when it cannot (the client then reconnects and resumes
        with Last-Event-ID)."""
        self._leave(stream)
        if not self._started.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._started.wait(), self._config.sse_keepalive)
            return QUIET
        for _ in range(CATCH_UP_ATTEMPTS):
            request = pb.OpenCardStreamRequest(employee_id=stream.employee_id, after_seq=stream.seq)
            try:
                reply = await self._core.calls.OpenCardStream(
                    request,
                    metadata=self._core.service_metadata(stream.request_id),
                    timeout=self._config.core_timeout,
                )
            except grpc.aio.AioRpcError as error:
                log.info("card stream could not catch up: %s", error.code().name)
                return END
            if stream.ended:
                return END
            self._begin(stream, reply)
            if not stream.behind:
                return None
        return END

    # --- the feed --------------------------------------------------------------------------

    async def _run(self) -> None:
        delay = RETRY_FIRST
        while True:
            try:
                await self._follow()
                delay = RETRY_FIRST
            except grpc.aio.AioRpcError as error:
                delay = self._failed(error, delay)
            await asyncio.sleep(delay)

    def _failed(self, error: grpc.aio.AioRpcError, delay: float) -> float:
        """Note why the feed broke; the delay before it reconnects."""
        if error.code() == grpc.StatusCode.UNIMPLEMENTED:
            if self.supported:
                log.warning("core has no card feed: card streams are relayed one by one")
            self.supported = False
            return RETRY_UNSUPPORTED
        self.supported = True
        level = logging.INFO if error.code() == grpc.StatusCode.UNAVAILABLE else logging.WARNING
        log.log(level, "card feed from core broke (%s); reconnecting", error.code().name)
        return min(delay * 2, RETRY_LONGEST)

    async def _follow(self) -> None:
        request = pb.WatchCardFeedRequest(
            after_seq=self._position if self._started.is_set() else 0,
            token_ids=sorted(self._by_token),
            batches=True,
        )
        call = self._core.calls.WatchCardFeed(
            request, metadata=self._core.service_metadata("card-feed")
        )
        try:
            async for message in call:
                self.supported = True
                self._take(message)
        finally:
            call.cancel()

    def _take(self, message: pb.CardFeedEvent) -> None:
        if message.type == _FEED.TYPE_EVENT:
            self._event(FeedEvent(message))
        elif message.type == _FEED.TYPE_REVOKED:
            for stream in self._by_token.pop(message.token_id, ()):
                stream.end()
        elif message.type == _FEED.TYPE_START:
            self._start(message)
        elif message.type == _FEED.TYPE_BATCH:
            for inner in message.events:
                self._take(inner)

    def _start(self, message: pb.CardFeedEvent) -> None:
        if self._started.is_set() and not message.reset:
            return  # core replays what came after the last event this gateway has
        # The window starts afresh; the streams catch up from core's log.
        self._window.clear()
        self._window_changes = 0
        self._floor = self._position = message.seq
        for stream in self.streams():
            self._leave(stream)
            stream.fall_behind()
        self._started.set()

    def _event(self, event: FeedEvent) -> None:
        if event.seq <= self._position:
            return
        self._position = event.seq
        self._window.append(event)
        self._window_changes += len(event.changes)
        if len(self._window) > WINDOW_EVENTS or self._window_changes > WINDOW_CHANGES:
            self._trim()
        for employee_id in event.changes:
            streams = self._by_employee.get(employee_id)
            if streams:
                behind = [s for s in streams if not s.take(event)]
                for stream in behind:
                    self._leave(stream)

    def _trim(self) -> None:
        """Drop the oldest quarter of the window (by events and by changes)."""
        events_left = WINDOW_EVENTS * 3 // 4
        changes_left = WINDOW_CHANGES * 3 // 4
        cut = 0
        changes = self._window_changes
        while cut < len(self._window) and (
            len(self._window) - cut > events_left or changes > changes_left
        ):
            changes -= len(self._window[cut].changes)
            cut += 1
        self._floor = self._window[cut - 1].seq
        del self._window[:cut]
        self._window_changes = changes

    def streams(self) -> Iterable[CardStream]:
        """Every open stream."""
        for streams in self._by_token.values():
            yield from streams
