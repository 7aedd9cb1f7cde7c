"""The embedded store: mongomock, with id and unique-key lookups from hash maps.

mongomock answers every query by testing every document of the collection,
and checks every unique index on every write the same way, so each request
costs more the more calls are stored. Two shortcuts keep the common paths
flat, with the same results:

- a filter with `"_id": <int or str>` is answered from mongomock's own dict
  keyed by `_id`, the rest of the filter tested on that one document, and
  `{"_id": {"$in": [ints or strs]}}` from the same dict (in the list's
  order: without a sort no order is promised, on MongoDB neither);
- each unique index keeps a map from key values to the ids that had them at
  their last write (every insert and update passes through mongomock's
  uniqueness check, which maintains it). Candidates are re-checked against
  the stored documents, so a stale entry never answers. Equality filters on
  exactly an index's fields (say `channel_id` and `pbx_call_id`) are answered
  from it too.

Anything else (unhashable values, operators, other filters) goes through
mongomock unchanged. mongomock also emulates TTL indexes by testing every
document of such a collection on every access; core creates no TTL index on
the embedded store and removes expired documents itself (Store.remove_expired).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from typing import Any

import mongomock
from mongomock import DuplicateKeyError, helpers
from mongomock.collection import Collection
from mongomock.filtering import filter_applies

_scan = Collection._iter_documents
# mongomock's own methods, kept for comparison in tests.
ORIGINAL = (Collection._iter_documents, Collection._ensure_uniques)
_MISSING = object()


def _value(document: dict[str, Any], field: str) -> Any:
    try:
        return helpers.get_value_by_dot(document, field)
    except KeyError:
        return None


def _hashable(values: tuple[Any, ...]) -> bool:
    return all(isinstance(v, Hashable) and type(v) is not bool for v in values)


class _UniqueMap:
    """Key values -> ids, for one unique index of one collection."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.fields = tuple(field for field, _ in spec["key"])
        self.sparse = bool(spec.get("sparse"))
        self.partial = spec.get("partialFilterExpression")
        self.ids: dict[tuple[Any, ...], set[Any]] = {}
        self.built = False

    def key_of(self, document: dict[str, Any]) -> tuple[Any, ...] | None:
        """The document's key in this index, None when the index leaves it out."""
        key = tuple(_value(document, f) for f in self.fields)
        if self.sparse and all(v is None for v in key):
            return None
        if self.partial is not None and not filter_applies(self.partial, document):
            return None
        return key

    def live(self, store: Any, key: tuple[Any, ...]) -> set[Any]:
        """Ids of stored documents with this key (stale entries dropped)."""
        alive = set()
        for doc_id in self.ids.get(key, ()):
            if doc_id in store and self.key_of(store[doc_id]) == key:
                alive.add(doc_id)
        if alive:
            self.ids[key] = alive
        else:
            self.ids.pop(key, None)
        return alive

    def build(self, store: Any) -> None:
        for document in store.documents:
            key = self.key_of(document)
            if key is not None and _hashable(key):
                self.ids.setdefault(key, set()).add(_store_key(document["_id"]))
        self.built = True


def _store_key(doc_id: Any) -> Any:
    return helpers.hashdict(doc_id) if isinstance(doc_id, dict) else doc_id


def _maps(collection: Any) -> dict[str, _UniqueMap]:
    store = collection._store
    maps: dict[str, _UniqueMap] | None = getattr(store, "_vats_unique_maps", None)
    if maps is None:
        maps = {}
        store._vats_unique_maps = maps
    for name, spec in store.indexes.items():
        if spec.get("unique") and name not in maps:
            maps[name] = _UniqueMap(spec)
    for name in [n for n in maps if n not in store.indexes]:
        del maps[name]
    for unique in maps.values():
        if not unique.built:
            unique.build(store)
    return maps


def _ensure_uniques(self: Any, new_data: dict[str, Any]) -> None:
    # As mongomock's: new_data is already stored; a second holder of its key is a duplicate.
    for unique in _maps(self).values():
        key = unique.key_of(new_data)
        if key is None:
            continue
        if not _hashable(key):
            # Arrays or sub-documents as keys: mongomock's own check.
            find: dict[str, Any] = dict(zip(unique.fields, key, strict=True))
            if unique.partial is not None:
                find = {"$and": [unique.partial, find]}
            if len(list(_scan(self, find))) > 1:
                raise DuplicateKeyError("E11000 Duplicate Key Error", 11000)
            continue
        unique.ids.setdefault(key, set()).add(_store_key(new_data["_id"]))
        if len(unique.live(self._store, key)) > 1:
            raise DuplicateKeyError("E11000 Duplicate Key Error", 11000)


def _by_unique_key(self: Any, filter: dict[str, Any]) -> list[dict[str, Any]] | None:
    """Documents matching an equality filter on exactly a unique index's fields."""
    if any(k.startswith("$") or isinstance(v, dict | list) for k, v in filter.items()):
        return None
    for unique in _maps(self).values():
        if set(unique.fields) != set(filter) or unique.sparse:
            continue
        key = tuple(filter[f] for f in unique.fields)
        if not _hashable(key):
            return None
        # Only when every document the filter matches is in the index.
        if unique.partial is not None and not filter_applies(unique.partial, filter):
            continue
        store = self._store
        return [store[i] for i in unique.live(store, key) if filter_applies(filter, store[i])]
    return None


def _iter_documents(self: Any, filter: Any) -> Iterator[dict[str, Any]]:
    if type(filter) is dict and filter:
        key = filter.get("_id", _MISSING)
        # bool is an int to Python but not to MongoDB: leave it to the scan.
        if type(key) in (int, str):
            try:
                document = self._store[key]
            except KeyError:
                return iter(())
            rest = {k: v for k, v in filter.items() if k != "_id"}
            if rest and not filter_applies(rest, document):
                return iter(())
            return iter((document,))
        if type(key) is dict and len(filter) == 1 and set(key) == {"$in"}:
            ids = key["$in"]
            if isinstance(ids, list) and all(type(i) in (int, str) for i in ids):
                store = self._store
                return iter([store[i] for i in dict.fromkeys(ids) if i in store])
        if key is _MISSING:
            found = _by_unique_key(self, filter)
            if found is not None:
                return iter(found)
    result: Iterator[dict[str, Any]] = _scan(self, filter)
    return result


def client() -> mongomock.MongoClient:
    Collection._iter_documents = _iter_documents  # type: ignore[method-assign]
    Collection._ensure_uniques = _ensure_uniques  # type: ignore[method-assign]
    return mongomock.MongoClient(tz_aware=True)
