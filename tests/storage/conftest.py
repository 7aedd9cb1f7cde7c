"""Every storage adapter under one fixture: SQLite and mongomock always, a real
MongoDB when VATS_TEST_MONGODB_URI is set."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import mongomock
import pymongo
import pytest

from core.recordings.blobs import FileBlobStore
from core.storage.port import Store
from core.storage.sqlite import SqliteStore

S = TypeVar("S", bound=Store)

MONGODB_URI = os.environ.get("VATS_TEST_MONGODB_URI")


@dataclasses.dataclass
class Backend:
    """One database an adapter runs on; `open()` gives a fresh store over it, as a
    restarted core would get, so that tests can look past the first store's memory."""

    name: str
    open: Callable[[], Store]
    blobs: FileBlobStore


def _sqlite(tmp_path: Path) -> Backend:
    blobs = FileBlobStore(tmp_path)
    return Backend("sqlite", lambda: SqliteStore(tmp_path / "vats.db", blobs), blobs)


def _mongo(database: Any, tmp_path: Path, name: str) -> Backend:
    from core.storage.mongo import MongoStore

    blobs = FileBlobStore(tmp_path)
    return Backend(name, lambda: MongoStore(database, blobs=blobs), blobs)


@pytest.fixture(params=["sqlite", "mongomock", pytest.param("mongodb", marks=pytest.mark.mongodb)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        yield _sqlite(tmp_path)
        return
    if request.param == "mongomock":
        client: Any = mongomock.MongoClient(tz_aware=True)
        yield _mongo(client["vats"], tmp_path, "mongomock")
        return
    if not MONGODB_URI:
        pytest.skip("VATS_TEST_MONGODB_URI is not set")
    real: pymongo.MongoClient[Any] = pymongo.MongoClient(MONGODB_URI, tz_aware=True, w="majority")
    name = f"vats_test_{uuid.uuid4().hex[:8]}"
    try:
        yield _mongo(real[name], tmp_path, "mongodb")
    finally:
        real.drop_database(name)
        real.close()


@contextlib.contextmanager
def _prepared(opened: S) -> Iterator[S]:
    opened.prepare()
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def store(backend: Backend) -> Iterator[Store]:
    with _prepared(backend.open()) as opened:
        yield opened


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SqliteStore]:
    """The SQLite store alone, for the tests of what only it does (their `store`)."""
    with _prepared(SqliteStore(tmp_path / "vats.db", FileBlobStore(tmp_path))) as opened:
        yield opened
