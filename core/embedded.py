"""The embedded store: mongomock, with lookups by `_id` answered from its dict.

mongomock answers every query by testing every document of the collection,
so a lookup by id costs as much as a scan. It keeps documents in a dict
keyed by `_id`; a filter that is exactly `{"_id": <int or str>}` (what most
of core's reads and writes use) is answered from that dict instead, with the
same result. Every other filter goes through mongomock unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import mongomock
from mongomock.collection import Collection

_scan = Collection._iter_documents


def _iter_documents(self: Any, filter: Any) -> Iterator[dict[str, Any]]:
    if type(filter) is dict and len(filter) == 1:
        key = filter.get("_id")
        # bool is an int to Python but not to MongoDB: leave it to the scan.
        if type(key) in (int, str):
            try:
                return iter((self._store[key],))
            except KeyError:
                return iter(())
    result: Iterator[dict[str, Any]] = _scan(self, filter)
    return result


def client() -> mongomock.MongoClient:
    Collection._iter_documents = _iter_documents  # type: ignore[method-assign]
    return mongomock.MongoClient(tz_aware=True)
