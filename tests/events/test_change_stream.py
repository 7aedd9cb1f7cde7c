"""The change-stream follower: delivery, resume after errors, reset when history is lost.

Its resume logic runs against a scripted fake of pymongo's change stream; the
real thing runs against MongoDB when VATS_TEST_MONGODB_URI is set.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pymongo
import pytest
from pymongo.errors import AutoReconnect, OperationFailure

from core.domain import Call, CardChange, CardEvent, Direction, Status
from core.model import CallView, PublishedEvent, Ticket
from core.storage.mongo.changes import ChangeStreamFollower, Resequencer
from core.storage.mongo.documents import event_document, event_from_document

AT = datetime(2026, 1, 1, tzinfo=UTC)


def call_view(call_id: int) -> CallView:
    call = Call(
        call_id=call_id,
        channel_id=1,
        direction=Direction.INCOMING,
        phone="+74950000000",
        status=Status.RINGING,
        created_at=AT,
        updated_at=AT,
        audience=(1,),
        viewers=(1,),
        ticket_id=call_id,
    )
    ticket = Ticket(
        ticket_id=call_id, call_id=call_id, channel_id=1, department_id=1, created_at=AT
    )
    return CallView(call=call, ticket=ticket, contact=None, channel_name="c", user_name="")


def published(seq: int) -> PublishedEvent:
    return PublishedEvent(
        seq=seq,
        kind="created",
        view=call_view(seq),
        card_events=(CardEvent(1, CardChange.SHOW),),
        at=AT,
    )


def event_doc(seq: int) -> dict[str, Any]:
    """An event as the MongoDB store keeps it."""
    return event_document(published(seq))


class RecordingHub:
    def __init__(self) -> None:
        self.events: list[PublishedEvent] = []
        self.resets = 0

    def publish(self, event: PublishedEvent) -> None:
        self.events.append(event)

    def reset_all(self) -> None:
        self.resets += 1


class FakeStream:
    """Plays a script: event seqs, None for an idle poll, or an exception to raise."""

    def __init__(self, script: list[Any], follower: ChangeStreamFollower) -> None:
        self.script = script
        self.follower = follower
        self.resume_token: dict[str, Any] | None = None

    def __enter__(self) -> FakeStream:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    @property
    def alive(self) -> bool:
        return True

    def try_next(self) -> dict[str, Any] | None:
        if not self.script:
            self.follower._stop.set()
            return None
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        if step is None:
            return None
        self.resume_token = {"_data": f"token-{step}"}
        return {"operationType": "insert", "fullDocument": event_doc(step)}


class FakeEvents:
    def __init__(self, scripts: list[list[Any]]) -> None:
        self.scripts = scripts
        self.resumed_after: list[Any] = []
        self.follower: ChangeStreamFollower | None = None

    def watch(self, pipeline: Any, resume_after: Any = None, **kwargs: Any) -> FakeStream:
        assert self.follower is not None
        self.resumed_after.append(resume_after)
        return FakeStream(self.scripts.pop(0) if self.scripts else [], self.follower)


def follow(scripts: list[list[Any]]) -> tuple[FakeEvents, RecordingHub, ChangeStreamFollower]:
    events, hub = FakeEvents(scripts), RecordingHub()
    follower = ChangeStreamFollower(events, hub, retry_delay=0)
    events.follower = follower
    follower.run()
    return events, hub, follower


def test_delivers_inserted_events_in_order() -> None:
    _, hub, follower = follow([[1, None, 2, 3]])
    assert [e.seq for e in hub.events] == [1, 2, 3]
    assert hub.events == [published(1), published(2), published(3)]
    assert follower.delivered == 3


def test_resumes_after_a_network_error_from_the_last_token() -> None:
    events, hub, _ = follow([[1, 2, AutoReconnect("gone")], [3]])
    assert [e.seq for e in hub.events] == [1, 2, 3]
    assert events.resumed_after == [None, {"_data": "token-2"}]
    assert hub.resets == 0


def test_lost_history_resets_every_subscriber() -> None:
    lost = OperationFailure("resume point no longer in the oplog", code=286)
    events, hub, follower = follow([[1, lost], [5]])
    assert events.resumed_after == [None, None]
    assert hub.resets == 1 and follower.resets == 1
    assert [e.seq for e in hub.events] == [1, 5]


def test_other_server_errors_are_retried_without_reset() -> None:
    events, hub, _ = follow([[1, OperationFailure("interrupted", code=11601)], [2]])
    assert hub.resets == 0
    assert events.resumed_after == [None, {"_data": "token-1"}]
    assert [e.seq for e in hub.events] == [1, 2]


def test_an_event_document_reads_back_as_the_event_it_was_written_from() -> None:
    event = published(7)

    document = event_doc(7)

    assert document["_id"] == 7 and document["call_id"] == 7
    assert document["card_viewers"] == [1]
    assert event_from_document(document) == event


def test_resequencer_waits_for_a_gap_to_fill() -> None:
    order = Resequencer(max_wait=2.0)
    assert [e.seq for e in order.push(published(10), now=0)] == [10]
    assert order.push(published(12), now=0.1) == []
    assert [e.seq for e in order.push(published(11), now=0.2)] == [11, 12]


def test_resequencer_skips_a_gap_that_never_fills() -> None:
    order = Resequencer(max_wait=2.0)
    order.push(published(1), now=0)
    assert order.push(published(3), now=1) == []
    assert order.poll(now=2.5) == []
    assert [e.seq for e in order.poll(now=3.1)] == [3]
    # A straggler after its wait is still handed on, not dropped here.
    assert [e.seq for e in order.push(published(2), now=4)] == [2]


def test_follower_delivers_out_of_order_inserts_in_seq_order() -> None:
    _, hub, _ = follow([[1, 3, 2, 4]])
    assert [e.seq for e in hub.events] == [1, 2, 3, 4]


@pytest.mark.mongodb
def test_follows_events_a_store_commits_on_a_real_replica_set(tmp_path: Path) -> None:
    uri = os.environ.get("VATS_TEST_MONGODB_URI")
    if not uri:
        pytest.skip("VATS_TEST_MONGODB_URI is not set")
    from core.recordings.blobs import FileBlobStore
    from core.storage.mongo import MongoStore

    client: pymongo.MongoClient[Any] = pymongo.MongoClient(uri, tz_aware=True, w="majority")
    db = client[f"vats_test_{uuid.uuid4().hex[:8]}"]
    store = MongoStore(db, blobs=FileBlobStore(tmp_path))
    store.prepare()
    hub = RecordingHub()
    follower = ChangeStreamFollower(store.events_collection, hub)
    try:
        follower.start()
        time.sleep(1)
        for seq in (1, 2, 3):
            event = published(seq)
            with store.unit_of_work() as uow:
                uow.events.add(event.kind, event.view, event.card_events, event.at)
                uow.commit()
        deadline = time.monotonic() + 10
        while len(hub.events) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert hub.events == [published(1), published(2), published(3)]
    finally:
        follower.stop()
        client.drop_database(db.name)
        client.close()
    assert not any(t.name == "change-stream" and t.is_alive() for t in threading.enumerate())
