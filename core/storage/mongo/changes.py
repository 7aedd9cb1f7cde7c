"""Follows the event collection with a MongoDB change stream, so that an event
stored by any core reaches the subscribers of this one (SPEC 7).

Used when core runs on a MongoDB replica set; on a single-writer store the
unit of work hands events to the hub directly. The follower runs on its own
thread (pymongo blocks), resumes after errors from its last resume token, and
when the oplog no longer holds that token it resets every subscriber, who then
start over from a fresh snapshot.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any, Protocol

from pymongo.errors import OperationFailure, PyMongoError

from core.model import PublishedEvent
from core.storage.mongo.documents import event_from_document

log = logging.getLogger("vats.changes")

# Server error codes meaning the resume token is no longer in the oplog.
HISTORY_LOST_CODES = frozenset({136, 260, 280, 286})


class Hub(Protocol):
    def publish(self, event: PublishedEvent) -> None: ...

    def reset_all(self) -> None: ...


class Resequencer:
    """Hands events on in seq order.

    Cores allocate a seq, then insert the event: two cores can insert 11
    before 10, and the change stream shows them in insert order. A stream
    that delivered 11 would then drop 10 as already seen. So an event after
    a gap waits until the gap fills, or until `max_wait` seconds pass (a seq
    that was allocated but never stored leaves a gap for good).
    """

    def __init__(self, max_wait: float = 2.0) -> None:
        self.max_wait = max_wait
        self.next_seq: int | None = None
        self._waiting: dict[int, PublishedEvent] = {}
        self._gap_since: float | None = None

    def push(self, event: PublishedEvent, now: float) -> list[PublishedEvent]:
        if self.next_seq is None:
            self.next_seq = event.seq
        if event.seq < self.next_seq:
            # Later than its gap's wait: hand it on rather than lose it.
            return [event]
        self._waiting[event.seq] = event
        return self._release(now)

    def poll(self, now: float) -> list[PublishedEvent]:
        return self._release(now)

    def _release(self, now: float) -> list[PublishedEvent]:
        ready: list[PublishedEvent] = []
        while self._waiting:
            assert self.next_seq is not None
            event = self._waiting.pop(self.next_seq, None)
            if event is not None:
                ready.append(event)
                self.next_seq += 1
                self._gap_since = None
                continue
            if self._gap_since is None:
                self._gap_since = now
            if now - self._gap_since < self.max_wait:
                break
            # The gap stayed open too long: skip to the lowest waiting seq.
            self.next_seq = min(self._waiting)
            self._gap_since = None
        return ready


class ChangeStreamFollower:
    def __init__(
        self,
        events: Any,
        hub: Hub,
        *,
        max_await_ms: int = 250,
        retry_delay: float = 0.5,
    ) -> None:
        self.events = events
        self.hub = hub
        self.max_await_ms = max_await_ms
        self.retry_delay = retry_delay
        self.resume_token: Mapping[str, Any] | None = None
        self.delivered = 0
        self.resets = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.order = Resequencer()

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="change-stream", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self._follow()
            except OperationFailure as error:
                if error.code in HISTORY_LOST_CODES and self.resume_token is not None:
                    log.warning("change stream lost its place (%s); resetting subscribers", error)
                    self.resume_token = None
                    self.order = Resequencer()
                    self.resets += 1
                    self.hub.reset_all()
                else:
                    log.warning("change stream failed: %s; retrying", error)
                    self._stop.wait(self.retry_delay)
            except PyMongoError as error:
                log.warning("change stream interrupted: %s; resuming", error)
                self._stop.wait(self.retry_delay)

    def _follow(self) -> None:
        pipeline = [{"$match": {"operationType": "insert"}}]
        with self.events.watch(
            pipeline, resume_after=self.resume_token, max_await_time_ms=self.max_await_ms
        ) as stream:
            while not self._stop.is_set() and stream.alive:
                change = stream.try_next()
                if change is None:
                    # No event yet, but the token still moves on with the oplog.
                    if stream.resume_token is not None:
                        self.resume_token = stream.resume_token
                    self._hand_on(self.order.poll(time.monotonic()))
                    continue
                event = event_from_document(change["fullDocument"])
                self._hand_on(self.order.push(event, time.monotonic()))
                self.resume_token = stream.resume_token

    def _hand_on(self, events: list[PublishedEvent]) -> None:
        for event in events:
            self.hub.publish(event)
            self.delivered += 1
