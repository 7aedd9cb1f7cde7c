"""The embedded store's lookup by id gives what mongomock's scan gives."""

from __future__ import annotations

from typing import Any

import mongomock
import pytest

from core import embedded


@pytest.fixture
def pair() -> tuple[Any, Any]:
    fast = embedded.client()["t"]["c"]
    plain = mongomock.MongoClient(tz_aware=True)["t"]["c"]
    for collection in (fast, plain):
        collection.insert_many(
            [
                {"_id": 1, "v": "int"},
                {"_id": "1", "v": "str"},
                {"_id": 2.0, "v": "float"},
                {"_id": {"a": 1}, "v": "doc"},
            ]
        )
    return fast, plain


@pytest.mark.parametrize(
    "query",
    [
        {"_id": 1},
        {"_id": "1"},
        {"_id": 2},
        {"_id": 3},
        {"_id": "nope"},
        {"_id": True},
        {"_id": {"a": 1}},
        {"_id": {"$in": [1, "1"]}},
        {"v": "str"},
        {"_id": 1, "v": "int"},
        {"_id": 1, "v": "str"},
        {},
    ],
)
def test_lookup_matches_the_scan(pair: tuple[Any, Any], query: dict[str, Any]) -> None:
    fast, plain = pair
    assert list(fast.find(query)) == list(plain.find(query))
    assert fast.count_documents(query) == plain.count_documents(query)


def test_writes_by_id_match(pair: tuple[Any, Any]) -> None:
    for collection in pair:
        collection.update_one({"_id": 1}, {"$set": {"w": 1}})
        collection.find_one_and_update({"_id": "x"}, {"$inc": {"n": 1}}, upsert=True)
        collection.delete_one({"_id": "1"})
    fast, plain = pair
    assert list(fast.find()) == list(plain.find())
