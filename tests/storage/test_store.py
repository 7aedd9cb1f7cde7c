"""Storage on mongomock (always) and on a real MongoDB (when VATS_TEST_MONGODB_URI is set):
the documents the desk writes, the indexes, counters and uniqueness."""

from __future__ import annotations

import concurrent.futures
import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import mongomock
import pymongo
import pytest

from core.auth import secret_hash
from core.domain import CreateCall, Direction, Status, UpdateCall
from core.service import ChannelRef, TelephonyDesk
from core.storage import Store
from tests.conftest import DEMO_SEED

MONGODB_URI = os.environ.get("VATS_TEST_MONGODB_URI")
DEMO = ChannelRef(key="demo-channel-key")


@pytest.fixture(params=["mongomock", pytest.param("mongodb", marks=pytest.mark.mongodb)])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    if request.param == "mongomock":
        yield Store(mongomock.MongoClient(tz_aware=True)["vats"])
        return
    if not MONGODB_URI:
        pytest.skip("VATS_TEST_MONGODB_URI is not set")
    client: pymongo.MongoClient[Any] = pymongo.MongoClient(MONGODB_URI, tz_aware=True)
    name = f"vats_test_{uuid.uuid4().hex[:8]}"
    try:
        yield Store(client[name])
    finally:
        client.drop_database(name)
        client.close()


@pytest.fixture
def desk(store: Store) -> TelephonyDesk:
    store.ensure_indexes()
    desk = TelephonyDesk(store, public_url="http://vats.test")
    desk.apply_seed(json.loads(DEMO_SEED.read_text()))
    return desk


def incoming(**fields: Any) -> CreateCall:
    return CreateCall(direction=Direction.INCOMING, phone="8 (495) 123-45-67", **fields)


def test_call_ticket_and_contact_documents(desk: TelephonyDesk, store: Store) -> None:
    view, created = desk.create_call(
        DEMO, incoming(pbx_call_id="p1", comment="hello", user_ids=(1,))
    )
    assert created
    call = store.calls.find_one({"_id": view.call_id})
    assert call is not None
    assert call["channel_id"] == 1 and call["pbx_call_id"] == "p1"
    assert call["status"] == "ringing" and call["direction"] == "incoming"
    assert call["phone"] == "8 (495) 123-45-67" and call["phone_e164"] == "+74951234567"
    assert call["audience"] == [1] and call["viewers"] == [1] and call["user_id"] == 1
    assert [h["status"] for h in call["history"]] == ["ringing"]
    ticket = store.tickets.find_one({"_id": call["ticket_id"]})
    assert ticket is not None
    assert ticket["call_id"] == view.call_id and ticket["department_id"] == 1
    assert ticket["executor_id"] == 1
    assert [c["text"] for c in ticket["comments"]] == ["hello"]
    contact = store.contacts.find_one({"_id": ticket["contact_id"]})
    assert contact is not None and contact["phone_e164"] == "+74951234567"


def test_update_writes_status_history_and_times(desk: TelephonyDesk, store: Store) -> None:
    view, _ = desk.create_call(DEMO, incoming())
    desk.update_call(DEMO, UpdateCall(status=Status.IN_PROGRESS, call_id=view.call_id))
    desk.update_call(DEMO, UpdateCall(status=Status.ANSWERED, call_id=view.call_id))
    call = store.calls.find_one({"_id": view.call_id})
    assert call is not None
    assert [h["status"] for h in call["history"]] == ["ringing", "in-progress", "answered"]
    assert call["answered_at"] is not None and call["ended_at"] is not None
    assert call["viewers"] == [] and call["version"] == 2


def test_secrets_are_stored_hashed(desk: TelephonyDesk, store: Store) -> None:
    channel = store.channels.find_one({"_id": 1})
    assert channel is not None and channel["key_hash"] == secret_hash("demo-channel-key")
    assert "demo-channel-key" not in json.dumps(channel, default=str)
    tokens = list(store.tokens.find())
    assert tokens and all("demo-" not in json.dumps(t, default=str) for t in tokens)


def test_seed_is_safe_to_apply_twice(desk: TelephonyDesk, store: Store) -> None:
    counts = {n: store.db[n].count_documents({}) for n in ("channels", "employees", "tokens")}
    desk.apply_seed(json.loads(DEMO_SEED.read_text()))
    assert {n: store.db[n].count_documents({}) for n in counts} == counts


@pytest.fixture
def mongodb_store() -> Iterator[Store]:
    """A real MongoDB only: for what mongomock cannot show (threads, explain plans)."""
    if not MONGODB_URI:
        pytest.skip("VATS_TEST_MONGODB_URI is not set")
    client: pymongo.MongoClient[Any] = pymongo.MongoClient(MONGODB_URI, tz_aware=True)
    name = f"vats_test_{uuid.uuid4().hex[:8]}"
    try:
        yield Store(client[name])
    finally:
        client.drop_database(name)
        client.close()


@pytest.mark.mongodb
def test_counters_are_unique_under_concurrency(mongodb_store: Store) -> None:
    store = mongodb_store
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda _: store.next_id("call"), range(200)))
    assert sorted(ids) == list(range(1, 201))


def test_seed_contacts_name_the_callers(desk: TelephonyDesk, store: Store) -> None:
    view, _ = desk.create_call(DEMO, incoming())
    assert view.contact["name"] == "Ivan Smirnov (OOO Romashka)"
    # Applying the seed again makes no second contact.
    desk.apply_seed(json.loads(DEMO_SEED.read_text()))
    assert store.contacts.count_documents({"phone_e164": "+74951234567"}) == 1


def test_counters_increase(store: Store) -> None:
    ids = [store.next_id("ticket") for _ in range(50)]
    assert ids == list(range(1, 51))


def test_pbx_call_id_is_unique_per_channel_by_index(desk: TelephonyDesk, store: Store) -> None:
    view, _ = desk.create_call(DEMO, incoming(pbx_call_id="same"))
    doc = dict(store.calls.find_one({"_id": view.call_id}) or {})
    doc["_id"] = 10_000
    with pytest.raises(pymongo.errors.DuplicateKeyError):
        store.calls.insert_one(doc)
    # Calls without a pbx_call_id do not collide.
    desk.create_call(DEMO, incoming())
    desk.create_call(DEMO, incoming())


def test_idempotency_record_keeps_the_first_reply(desk: TelephonyDesk, store: Store) -> None:
    view, _ = desk.create_call(DEMO, incoming(), idempotency_key="abc")
    record = store.idempotency.find_one({"_id": "1:abc"})
    assert record is not None and record["reply"]["view"]["call"]["_id"] == view.call_id
    again, created = desk.create_call(DEMO, incoming(), idempotency_key="abc")
    assert again.call_id == view.call_id and created
    assert store.calls.count_documents({}) == 1


def test_events_are_logged_with_increasing_seq(desk: TelephonyDesk, store: Store) -> None:
    view, _ = desk.create_call(DEMO, incoming(user_ids=(1, 2)))
    desk.update_call(DEMO, UpdateCall(status=Status.MISSED, call_id=view.call_id))
    events = list(store.events.find().sort("_id"))
    assert [e["kind"] for e in events] == ["created", "updated"]
    assert events[0]["_id"] < events[1]["_id"]
    assert events[0]["card_viewers"] == [1, 2]
    assert {(c["employee_id"], c["change"], c["reason"]) for c in events[1]["card_events"]} == {
        (1, "hide", "final"),
        (2, "hide", "final"),
    }


def test_expiry_sweep_hides_stale_cards(desk: TelephonyDesk, store: Store) -> None:
    from datetime import timedelta

    from core.domain import ExpiryPolicy

    view, _ = desk.create_call(DEMO, incoming(user_ids=(1, 2)))
    assert desk.expire_stale_calls(ExpiryPolicy()) == 0
    assert desk.expire_stale_calls(ExpiryPolicy(ringing=timedelta(0))) == 1
    call = store.calls.find_one({"_id": view.call_id})
    assert call is not None and call["status"] == "ringing" and call["viewers"] == []
    last = store.events.find_one(sort=[("_id", -1)])
    assert last is not None and last["kind"] == "expired"
    assert {c["reason"] for c in last["card_events"]} == {"expired"}


def test_every_query_path_has_an_index(desk: TelephonyDesk, store: Store) -> None:
    names = {tuple(k for k, _ in spec["key"]) for spec in store.calls.index_information().values()}
    for key in [
        ("channel_id", "pbx_call_id"),
        ("created_at", "_id"),
        ("channel_id", "created_at", "_id"),
        ("phone_key", "created_at", "_id"),
        ("audience", "created_at", "_id"),
        ("user_id", "created_at", "_id"),
        ("viewers",),
        ("status", "expired", "updated_at"),
    ]:
        assert key in names
    assert ("card_viewers", "_id") in {
        tuple(k for k, _ in s["key"]) for s in store.events.index_information().values()
    }


@pytest.mark.mongodb
def test_queries_use_indexes_on_mongodb(mongodb_store: Store) -> None:
    store = mongodb_store
    store.ensure_indexes()
    desk = TelephonyDesk(store)
    desk.apply_seed(json.loads(DEMO_SEED.read_text()))
    desk.create_call(DEMO, incoming(pbx_call_id="x"))
    for collection, query in [
        (store.calls, {"channel_id": 1, "pbx_call_id": "x"}),
        (store.calls, {"viewers": 1}),
        (store.calls, {"phone_key": "+74951234567"}),
        (store.events, {"card_viewers": 1, "_id": {"$gt": 0}}),
        (store.channels, {"key_hash": "x"}),
        (store.tokens, {"hash": "x"}),
    ]:
        plan = json.dumps(collection.find(query).explain()["queryPlanner"]["winningPlan"])
        assert "IXSCAN" in plan or "IDHACK" in plan or "EXPRESS" in plan, (query, plan)
