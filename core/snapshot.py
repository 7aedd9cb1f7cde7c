"""An optional on-disk snapshot of the embedded store.

The embedded store lives in memory and is gone when core exits (SPEC 1). With
VATS_EMBEDDED_SNAPSHOT set, core saves it to that file when it stops
gracefully and loads it when it starts, so that a restart (an upgrade, say)
keeps calls, tickets and the event log. A crash still loses everything since
the last graceful stop: for durability use MongoDB.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bson import json_util
from pymongo.database import Database

_OPTIONS = json_util.JSONOptions(json_mode=json_util.JSONMode.CANONICAL, tz_aware=True, tzinfo=None)


def save(db: Database[Any], path: Path) -> int:
    """Write every collection to `path` atomically; returns the number of documents."""
    collections = {name: list(db[name].find()) for name in sorted(db.list_collection_names())}
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("w", encoding="utf-8") as file:
        file.write(json_util.dumps(collections, json_options=_OPTIONS))
        file.flush()
        os.fsync(file.fileno())
    temporary.replace(path)
    return sum(len(docs) for docs in collections.values())


def load(db: Database[Any], path: Path) -> int:
    """Fill an empty database from a snapshot; returns the number of documents."""
    if not path.exists():
        return 0
    collections = json_util.loads(path.read_text(encoding="utf-8"), json_options=_OPTIONS)
    count = 0
    for name, docs in collections.items():
        if docs:
            db[name].insert_many(docs)
            count += len(docs)
    return count
