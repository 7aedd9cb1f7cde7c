"""Blob stores keep recording bytes: round trips, byte ranges, abort, delete.

Every behaviour runs on the file store, on GridFS over mongomock, and on GridFS over a real
MongoDB when VATS_TEST_MONGODB_URI is set.
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mongomock
import mongomock.gridfs
import pytest

from core.recordings.blobs import (
    READ_CHUNK_BYTES,
    BlobExists,
    BlobNotFound,
    BlobStore,
    FileBlobStore,
    InvalidRange,
)
from core.storage.mongo.blobs import GridFSBlobStore

MONGODB_URI = os.environ.get("VATS_TEST_MONGODB_URI")
DATA = random.Random(7).randbytes(300_000)

mongomock.gridfs.enable_gridfs_integration()


class Backend:
    """A store and a way to see everything it has left behind."""

    def __init__(self, store: BlobStore, leftovers: Any) -> None:
        self.store = store
        self.leftovers = leftovers


def file_backend(tmp_path: Path) -> Backend:
    root = tmp_path / "recordings"

    def leftovers() -> list[str]:
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())

    return Backend(FileBlobStore(tmp_path), leftovers)


def gridfs_backend(database: Any) -> Backend:
    def leftovers() -> list[str]:
        files = [str(d["_id"]) for d in database["recordings.files"].find()]
        chunks = [f"chunk {d['files_id']}/{d['n']}" for d in database["recordings.chunks"].find()]
        return sorted(files + chunks)

    # A small chunk size makes every recording here span several GridFS chunks.
    return Backend(GridFSBlobStore(database, chunk_size_bytes=16 * 1024), leftovers)


@pytest.fixture(
    params=[
        "file",
        "gridfs-mongomock",
        pytest.param("gridfs-mongodb", marks=pytest.mark.mongodb),
    ]
)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "file":
        yield file_backend(tmp_path)
    elif request.param == "gridfs-mongomock":
        yield gridfs_backend(mongomock.MongoClient().get_database("vats"))
    else:
        if not MONGODB_URI:
            pytest.skip("VATS_TEST_MONGODB_URI is not set")
        import pymongo

        client: pymongo.MongoClient[Any] = pymongo.MongoClient(
            MONGODB_URI, serverSelectionTimeoutMS=5000
        )
        name = f"vats_test_recordings_{uuid.uuid4().hex[:12]}"
        try:
            yield gridfs_backend(client.get_database(name))
        finally:
            client.drop_database(name)
            client.close()


def store_bytes(store: BlobStore, recording_id: str, data: bytes, chunk: int = 10_000) -> None:
    writer = store.open_writer(recording_id, "audio/mpeg")
    for start in range(0, len(data), chunk):
        writer.write(data[start : start + chunk])
    writer.commit()


def read_all(store: BlobStore, recording_id: str, offset: int = 0, length: int = 0) -> bytes:
    return b"".join(store.open_reader(recording_id, offset, length))


def test_recording_round_trips_in_bounded_chunks(backend: Backend) -> None:
    store = backend.store
    store_bytes(store, "rec1", DATA)

    chunks = list(store.open_reader("rec1"))

    assert b"".join(chunks) == DATA
    assert max(len(c) for c in chunks) <= READ_CHUNK_BYTES
    assert store.size("rec1") == len(DATA)


def test_empty_recording_round_trips(backend: Backend) -> None:
    store_bytes(backend.store, "empty", b"")

    assert list(backend.store.open_reader("empty")) == []
    assert backend.store.size("empty") == 0


@pytest.mark.parametrize(
    ("offset", "length"),
    [
        (0, 1),
        (1, 0),
        (12_345, 100_000),
        (16 * 1024 - 1, 2),  # across a GridFS chunk boundary
        (len(DATA) - 1, 0),
        (len(DATA) - 10, 1000),  # cut at the end
        (len(DATA), 0),  # nothing left
    ],
)
def test_byte_range_reads_exactly_that_range(backend: Backend, offset: int, length: int) -> None:
    store_bytes(backend.store, "rec1", DATA)

    got = read_all(backend.store, "rec1", offset, length)

    assert got == DATA[offset : offset + length if length else None]


@pytest.mark.parametrize(("offset", "length"), [(len(DATA) + 1, 0), (-1, 0), (0, -5)])
def test_range_outside_the_recording_is_refused(backend: Backend, offset: int, length: int) -> None:
    store_bytes(backend.store, "rec1", DATA)

    with pytest.raises(InvalidRange):
        backend.store.open_reader("rec1", offset, length)


def test_recording_is_not_readable_before_commit(backend: Backend) -> None:
    writer = backend.store.open_writer("rec1", "audio/wav")
    writer.write(DATA[:50_000])

    with pytest.raises(BlobNotFound):
        backend.store.open_reader("rec1")
    writer.abort()


def test_abort_leaves_nothing_behind(backend: Backend) -> None:
    writer = backend.store.open_writer("rec1", "audio/wav")
    for start in range(0, len(DATA), 7_000):
        writer.write(DATA[start : start + 7_000])

    writer.abort()
    writer.abort()

    assert backend.leftovers() == []
    with pytest.raises(BlobNotFound):
        backend.store.size("rec1")


def test_error_inside_writer_block_aborts(backend: Backend) -> None:
    with pytest.raises(RuntimeError), backend.store.open_writer("rec1", "audio/ogg") as writer:
        writer.write(DATA[:40_000])
        raise RuntimeError("the upload broke off")

    assert backend.leftovers() == []


def test_writer_block_left_without_commit_aborts(backend: Backend) -> None:
    with backend.store.open_writer("rec1", "audio/ogg") as writer:
        writer.write(DATA[:40_000])

    assert backend.leftovers() == []


def test_committed_writer_block_keeps_the_recording(backend: Backend) -> None:
    with backend.store.open_writer("rec1", "audio/ogg") as writer:
        writer.write(DATA[:40_000])
        writer.commit()

    assert read_all(backend.store, "rec1") == DATA[:40_000]
    assert writer.bytes_written == 40_000


def test_delete_removes_only_that_recording(backend: Backend) -> None:
    store_bytes(backend.store, "rec1", DATA)
    store_bytes(backend.store, "rec2", DATA[:1000])

    assert backend.store.delete("rec1") is True

    with pytest.raises(BlobNotFound):
        backend.store.open_reader("rec1")
    assert backend.store.delete("rec1") is False
    assert read_all(backend.store, "rec2") == DATA[:1000]


def test_delete_of_the_last_recording_leaves_no_data(backend: Backend) -> None:
    store_bytes(backend.store, "rec1", DATA)

    backend.store.delete("rec1")

    assert backend.leftovers() == []


def test_stored_id_cannot_be_written_again(backend: Backend) -> None:
    store_bytes(backend.store, "rec1", DATA[:100])

    with pytest.raises(BlobExists):
        backend.store.open_writer("rec1", "audio/mpeg")
    assert read_all(backend.store, "rec1") == DATA[:100]


def test_unknown_recording_is_not_found(backend: Backend) -> None:
    with pytest.raises(BlobNotFound):
        backend.store.open_reader("nope")
    with pytest.raises(BlobNotFound):
        backend.store.size("nope")
    assert backend.store.delete("nope") is False


def test_listing_names_every_committed_recording_and_nothing_else(backend: Backend) -> None:
    store_bytes(backend.store, "rec1", DATA[:1000])
    store_bytes(backend.store, "rec2", b"")
    store_bytes(backend.store, "gone", DATA[:10])
    backend.store.delete("gone")
    uploading = backend.store.open_writer("rec3", "audio/wav")
    uploading.write(DATA[:20_000])

    listed = sorted(backend.store.list_ids())

    uploading.abort()
    assert listed == ["rec1", "rec2"]


def test_listing_an_empty_store_names_nothing(backend: Backend) -> None:
    assert list(backend.store.list_ids()) == []


def test_reader_closed_early_releases_the_recording(backend: Backend) -> None:
    store_bytes(backend.store, "rec1", DATA)
    reader = backend.store.open_reader("rec1")
    first = next(reader)

    reader.close()

    assert first == DATA[: len(first)]
    assert list(reader) == []
    assert backend.store.delete("rec1") is True


# --- what each store keeps where ---------------------------------------------------------------


def test_file_store_keeps_a_committed_recording_at_its_sharded_path(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    store_bytes(store, "0f8e2c", DATA[:5000])

    path = store.path("0f8e2c")

    assert path.read_bytes() == DATA[:5000]
    assert path.parent.parent.parent == tmp_path / "recordings"
    assert not list((tmp_path / "recordings" / "incoming").iterdir())


def test_file_store_writes_into_incoming_until_commit(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    writer = store.open_writer("rec1", "audio/wav")
    writer.write(b"partial")

    assert not store.path("rec1").exists()
    assert len(list((tmp_path / "recordings" / "incoming").iterdir())) == 1
    writer.abort()


def test_file_store_discards_uploads_a_stopped_process_left(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    interrupted = store.open_writer("rec1", "audio/wav")
    interrupted.write(b"half of it")
    store_bytes(store, "rec2", b"whole")

    assert FileBlobStore(tmp_path).discard_incomplete() == 1

    assert not list((tmp_path / "recordings" / "incoming").iterdir())
    assert read_all(store, "rec2") == b"whole"
    interrupted.abort()


@pytest.mark.parametrize("bad_id", ["../escape", "a/b", "", ".", "x" * 129, "rec 1"])
def test_file_store_refuses_ids_that_are_not_plain_names(tmp_path: Path, bad_id: str) -> None:
    with pytest.raises(ValueError):
        FileBlobStore(tmp_path).open_writer(bad_id, "audio/wav")


def test_gridfs_store_keeps_content_type_and_length_in_the_files_document() -> None:
    database: Any = mongomock.MongoClient().get_database("vats")
    store = GridFSBlobStore(database, chunk_size_bytes=16 * 1024)

    store_bytes(store, "rec1", DATA[:40_000])

    document = database["recordings.files"].find_one({"_id": "rec1"})
    assert document is not None
    assert document["length"] == 40_000
    assert document["metadata"] == {"contentType": "audio/mpeg"}
    assert database["recordings.chunks"].count_documents({"files_id": "rec1"}) == 3


def test_gridfs_store_takes_the_content_type_found_at_commit() -> None:
    database: Any = mongomock.MongoClient().get_database("vats")
    store = GridFSBlobStore(database)
    writer = store.open_writer("rec1", "application/octet-stream")
    writer.write(DATA[:1000])

    writer.commit("audio/ogg")

    document = database["recordings.files"].find_one({"_id": "rec1"})
    assert document is not None
    assert document["metadata"] == {"contentType": "audio/ogg"}
