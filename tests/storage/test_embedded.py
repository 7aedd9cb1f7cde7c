"""The embedded store's shortcuts give exactly what mongomock's scans give."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import mongomock
import pytest
from mongomock.collection import Collection

from core import embedded


@contextmanager
def plain_mongomock() -> Iterator[None]:
    """mongomock's own scans, for the reference side of a comparison."""
    patched = (Collection._iter_documents, Collection._ensure_uniques)
    Collection._iter_documents, Collection._ensure_uniques = embedded.ORIGINAL  # type: ignore[method-assign]
    try:
        yield
    finally:
        Collection._iter_documents, Collection._ensure_uniques = patched  # type: ignore[method-assign]


def new_pair() -> tuple[Any, Any]:
    fast = embedded.client()["t"]["c"]
    plain = mongomock.MongoClient(tz_aware=True)["t"]["c"]
    for collection in (fast, plain):
        collection.create_index(
            [("channel_id", 1), ("pbx_call_id", 1)],
            unique=True,
            partialFilterExpression={"pbx_call_id": {"$type": "string"}},
        )
        collection.create_index("key", unique=True, sparse=True)
    return fast, plain


def both(pair: tuple[Any, Any], op: Any) -> tuple[Any, Any]:
    fast, plain = pair
    results = []
    for collection, reference in ((fast, False), (plain, True)):
        try:
            if reference:
                with plain_mongomock():
                    results.append(("ok", op(collection)))
            else:
                results.append(("ok", op(collection)))
        except mongomock.DuplicateKeyError:
            results.append(("duplicate", None))
    return results[0], results[1]


@pytest.fixture
def pair() -> tuple[Any, Any]:
    pair = new_pair()
    docs = [
        {"_id": 1, "v": "int", "channel_id": 1, "pbx_call_id": "a"},
        {"_id": "1", "v": "str", "channel_id": 1, "pbx_call_id": None},
        {"_id": 2.0, "v": "float", "key": "k"},
        {"_id": {"a": 1}, "v": "doc"},
    ]
    for collection in pair:
        collection.insert_many([dict(d) for d in docs])
    return pair


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
        {"_id": {"$in": ["1", 1, 1, 99]}},
        {"_id": {"$in": []}},
        {"v": "str"},
        {"_id": 1, "v": "int"},
        {"_id": 1, "v": "str"},
        {"_id": 1, "v": {"$ne": "str"}},
        {"_id": "nope", "v": "int"},
        {"channel_id": 1, "pbx_call_id": "a"},
        {"channel_id": 1, "pbx_call_id": None},
        {"channel_id": 1, "pbx_call_id": "zz"},
        {"key": "k"},
        {"key": None},
        {},
    ],
)
def test_lookup_matches_the_scan(pair: tuple[Any, Any], query: dict[str, Any]) -> None:
    def run(c: Any) -> tuple[list[Any], int]:
        found = list(c.find(query))
        if "$in" in str(query):
            # Without a sort, $in promises no order (on MongoDB neither).
            found.sort(key=lambda d: (type(d["_id"]).__name__, str(d["_id"])))
        return found, c.count_documents(query)

    fast, plain = both(pair, run)
    assert fast == plain


def test_random_writes_and_reads_match_mongomock() -> None:
    rng = random.Random(7)
    pair = new_pair()
    channels, pbx_ids, keys = [1, 2], ["p1", "p2", "p3", None, 5], ["k1", "k2", None]
    duplicates = 0
    for step in range(400):
        doc_id = rng.randrange(30)
        choice = rng.random()
        if choice < 0.35:
            doc = {
                "_id": doc_id,
                "channel_id": rng.choice(channels),
                "pbx_call_id": rng.choice(pbx_ids),
                "n": step,
            }
            if rng.random() < 0.5:
                doc["key"] = rng.choice(keys)
            fast, plain = both(pair, lambda c, doc=doc: c.insert_one(dict(doc)).inserted_id)
        elif choice < 0.65:
            change = {
                "$set": {
                    rng.choice(["pbx_call_id", "channel_id", "key"]): rng.choice(
                        pbx_ids + channels + keys
                    )
                }
            }
            fast, plain = both(
                pair,
                lambda c, i=doc_id, ch=change: c.update_one({"_id": i}, ch).modified_count,
            )
        elif choice < 0.75:
            fast, plain = both(pair, lambda c, i=doc_id: c.delete_one({"_id": i}).deleted_count)
        else:
            query = {"channel_id": rng.choice(channels), "pbx_call_id": rng.choice(pbx_ids)}
            fast, plain = both(
                pair, lambda c, q=query: sorted((d["_id"] for d in c.find(q)), key=str)
            )
        assert fast == plain, (step, fast, plain)
        assert list(pair[0].find()) == list(pair[1].find())
        duplicates += fast[0] == "duplicate"
    # The sequence did run into the unique indexes, both ways.
    assert duplicates > 10
