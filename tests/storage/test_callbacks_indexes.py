"""Every query path of the callbacks and of the figures' call reads runs on an index: SQLite's
query plans on a populated database (fresh and analyzed), and the MongoDB indexes they need."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import mongomock
import pytest

from core.domain import Callback, CallbackState, Direction, Status, StatusChange
from core.model import Call, CallbackQuery
from core.recordings.blobs import FileBlobStore
from core.storage.mongo import MongoStore
from core.storage.sqlite import SqliteStore
from core.storage.sqlite import callbacks as sql
from tests.storage.query_plans import add_analyzed_copy, assert_indexed, plan

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _callback(n: int, pick: random.Random) -> Callback:
    at = T0 + timedelta(seconds=n)
    callback = Callback(
        callback_id=n,
        channel_id=pick.randint(1, 3),
        phone_key=f"+7495{n:07d}",
        phone=f"+7495{n:07d}",
        phone_e164=f"+7495{n:07d}",
        first_missed_at=at,
        last_missed_at=at,
        last_call_id=n,
        last_status=Status.MISSED,
        audience=tuple(pick.sample(range(1, 20), 3)),
    )
    if n < 2900:
        callback.mark_called_back(1, "tok", at + timedelta(minutes=5))
    return callback


def _call(n: int, pick: random.Random) -> Call:
    at = T0 + timedelta(seconds=n)
    answered = at + timedelta(seconds=5) if n % 2 else None
    return Call(
        call_id=n,
        channel_id=pick.randint(1, 3),
        direction=pick.choice(list(Direction)),
        phone="+74951234567",
        status=Status.ANSWERED if answered else Status.MISSED,
        created_at=at,
        updated_at=at + timedelta(seconds=60),
        history=[StatusChange(Status.RINGING, at)],
        answered_at=answered,
        ended_at=at + timedelta(seconds=60),
        ticket_id=n,
        phone_e164="+74951234567",
        phone_key="+74951234567",
    )


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A few thousand callbacks (nearly all resolved) and calls."""
    data = tmp_path_factory.mktemp("callback-plans")
    store = SqliteStore(data / "vats.db", FileBlobStore(data))
    store.prepare()
    pick = random.Random(12)
    with store.unit_of_work() as uow:
        for n in range(1, 3001):
            uow.callbacks.add(_callback(n, pick))
            uow.calls.add(_call(n, pick))
        uow.commit()
    store.close()
    add_analyzed_copy(data)
    yield data


# The callbacks' tables (and the calls the figures read) and their aliases in the statements.
TABLES = "b|c|v|callbacks|calls|callback_viewers"


PAGES: dict[str, tuple[CallbackQuery, str]] = {
    "everyone's": (CallbackQuery(), "callbacks_in_order"),
    "a channel's": (CallbackQuery(channel_id=2), "callbacks_by_channel"),
    "an employee's": (CallbackQuery(employee_id=3), "PRIMARY KEY"),
    "an employee's on a channel": (CallbackQuery(employee_id=3, channel_id=1), "PRIMARY KEY"),
}


@pytest.mark.parametrize("analyzed", [False, True], ids=["fresh", "analyzed"])
@pytest.mark.parametrize("state", list(CallbackState))
@pytest.mark.parametrize("name", list(PAGES))
def test_callback_pages_walk_an_index(
    populated: Path, name: str, state: CallbackState, analyzed: bool
) -> None:
    query, index = PAGES[name]
    for after in (None, (-1_000, 1500)):
        statement, params = sql.page_statement(query, state, after, 50)
        assert_indexed(plan(populated, statement, params, analyzed), index, TABLES)


LOOKUPS: dict[str, tuple[str, tuple[Any, ...], str]] = {
    "by id": (sql.CALLBACK_BY_ID, (5,), "INTEGER PRIMARY KEY"),
    "open for a phone": (sql.OPEN_CALLBACK_FOR, (1, "+74950002950"), "callbacks_open_by_phone"),
    "calls created": (sql.CALLS_CREATED_BETWEEN, (0, 10**13), "calls_newest"),
    "answered calls ended": (
        sql.ANSWERED_CALLS_ENDED_BETWEEN,
        (0, 10**13),
        "calls_answered_by_end",
    ),
}


@pytest.mark.parametrize("analyzed", [False, True], ids=["fresh", "analyzed"])
@pytest.mark.parametrize("name", list(LOOKUPS))
def test_lookups_use_an_index(populated: Path, name: str, analyzed: bool) -> None:
    statement, params, index = LOOKUPS[name]
    assert_indexed(plan(populated, statement, params, analyzed), index, TABLES)


@pytest.mark.parametrize("analyzed", [False, True], ids=["fresh", "analyzed"])
@pytest.mark.parametrize(
    ("channel_id", "employee_id", "index"),
    [
        (None, None, "callbacks_in_order"),
        (2, None, "callbacks_by_channel"),
        (None, 3, "PRIMARY KEY"),
        (2, 3, "PRIMARY KEY"),
    ],
)
def test_open_counts_use_an_index(
    populated: Path, channel_id: int | None, employee_id: int | None, index: str, analyzed: bool
) -> None:
    statement, params = sql.count_statement(channel_id, employee_id)
    assert_indexed(plan(populated, statement, params, analyzed), index, TABLES)


def indexes(store: MongoStore, collection: str) -> set[tuple[tuple[str, int], ...]]:
    found = store.database[collection].index_information()
    return {tuple((k, int(d)) for k, d in spec["key"]) for spec in found.values()}


def test_mongodb_has_an_index_for_every_callback_query(tmp_path: Path) -> None:
    client: Any = mongomock.MongoClient(tz_aware=True)
    store = MongoStore(client["vats"], blobs=FileBlobStore(tmp_path))
    store.prepare()
    store.prepare()
    in_order = (("state", 1), ("position", 1), ("_id", 1))
    callbacks = indexes(store, "callbacks")
    assert in_order in callbacks
    assert (("channel_id", 1), *in_order) in callbacks
    assert (("audience", 1), *in_order) in callbacks
    unique = store.database["callbacks"].index_information()["callbacks_open_by_phone"]
    assert unique["unique"] is True
    assert unique["partialFilterExpression"] == {"state": "open"}
    calls = indexes(store, "calls")
    assert (("ended_at", 1), ("_id", 1)) in calls
    assert (("created_at", -1), ("_id", -1)) in calls
