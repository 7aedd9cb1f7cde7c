"""Recording bytes in a GridFS bucket: the MongoDB adapter's BlobStore."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gridfs
import gridfs.errors
from pymongo.database import Database

from core.recordings.blobs import (
    BlobExists,
    BlobNotFound,
    BlobReader,
    BlobWriter,
    _check_id,
    _range,
    _RangeReader,
    _WriterBase,
)

GRIDFS_CHUNK_BYTES = 255 * 1024


class GridFSBlobStore:
    """Recordings in a GridFS bucket, the file `_id` being the recording id.

    Deletion goes through the bucket's collections rather than `GridFSBucket.delete`, which
    also keeps the store usable on mongomock.
    """

    def __init__(
        self,
        database: Database[Any],
        bucket_name: str = "recordings",
        chunk_size_bytes: int = GRIDFS_CHUNK_BYTES,
    ) -> None:
        self._bucket = gridfs.GridFSBucket(
            database, bucket_name=bucket_name, chunk_size_bytes=chunk_size_bytes
        )
        self._files = database[f"{bucket_name}.files"]
        self._chunks = database[f"{bucket_name}.chunks"]

    def open_writer(self, recording_id: str, content_type: str) -> BlobWriter:
        _check_id(recording_id)
        if self._files.count_documents({"_id": recording_id}, limit=1):
            raise BlobExists(recording_id)
        stream = self._bucket.open_upload_stream_with_id(
            recording_id, recording_id, metadata={"contentType": content_type}
        )
        return _GridFSWriter(stream, recording_id)

    def open_reader(self, recording_id: str, offset: int = 0, length: int = 0) -> BlobReader:
        try:
            stream = self._bucket.open_download_stream(recording_id)
        except gridfs.errors.NoFile:
            raise BlobNotFound(f"no recording {recording_id}") from None
        try:
            start, end = _range(offset, length, stream.length)
            stream.seek(start)
        except BaseException:
            stream.close()
            raise
        return _RangeReader(stream, end - start)

    def size(self, recording_id: str) -> int:
        document = self._files.find_one({"_id": recording_id}, {"length": 1})
        if document is None:
            raise BlobNotFound(f"no recording {recording_id}")
        return int(document["length"])

    def delete(self, recording_id: str) -> bool:
        # The files document goes first so that no reader finds a file whose chunks are gone.
        removed = self._files.delete_one({"_id": recording_id}).deleted_count
        self._chunks.delete_many({"files_id": recording_id})
        return bool(removed)

    def list_ids(self) -> Iterator[str]:
        # GridFS writes the files document only once every chunk is in: these are committed.
        for document in self._files.find({}, {"_id": 1}):
            yield str(document["_id"])


class _GridFSWriter(_WriterBase):
    def __init__(self, stream: gridfs.GridIn, recording_id: str) -> None:
        super().__init__()
        self._stream = stream
        self._recording_id = recording_id

    def write(self, chunk: bytes) -> None:
        self._check_open()
        try:
            self._stream.write(chunk)
        except gridfs.errors.FileExists:
            # Aborting would delete the other recording's chunks: they share the id.
            self._done = True
            raise BlobExists(self._recording_id) from None
        self._written += len(chunk)

    def commit(self, content_type: str | None = None) -> None:
        self._check_open()
        if content_type is not None:
            self._stream.set("metadata", {"contentType": content_type})
        try:
            self._stream.close()
        except gridfs.errors.FileExists:
            self._done = True
            raise BlobExists(self._recording_id) from None
        except BaseException:
            self.abort()
            raise
        self._done = True

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        self._stream.abort()
