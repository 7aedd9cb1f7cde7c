"""The recordings a call keeps: upload, attachment to a call, download, cleanup.

Bytes go to a blob store (files in embedded mode, GridFS on MongoDB) as they
arrive; the recording's document (format, size, sha256, duration, call) is
written only once the bytes are complete and recognised. A recording nobody
attached (its request failed, or never came) is removed by `sweep_unattached`.
All methods block: core runs them on worker threads.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from pymongo.collection import Collection

from core.errors import InvalidRequest, NotFound, RangeNotSatisfiable
from core.recordings.blobs import BlobReader, BlobStore, BlobWriter, InvalidRange
from core.recordings.formats import RecordingInspector
from core.storage import Document, utc_now

# An upload left unattached this long is removed by the sweeper.
UNATTACHED_GRACE = timedelta(minutes=10)


class Upload:
    """One recording being received: inspected and stored chunk by chunk."""

    def __init__(self, library: RecordingLibrary, channel_id: int, file_name: str) -> None:
        self.library = library
        self.channel_id = channel_id
        self.file_name = file_name[:255]
        self.recording_id = uuid.uuid4().hex
        self.inspector = RecordingInspector(max_size=library.max_bytes)
        self.writer: BlobWriter = library.blobs.open_writer(
            self.recording_id, "application/octet-stream"
        )

    def write(self, chunk: bytes) -> None:
        """Take the next chunk; refuses oversize or non-audio content as early as it can."""
        try:
            self.inspector.feed(chunk)
            self.inspector.early_format()
            self.writer.write(chunk)
        except BaseException:
            self.abort()
            raise

    def finish(self) -> Document:
        """Store the recording's document once every byte is in; returns it."""
        try:
            if self.inspector.size == 0:
                raise InvalidRequest.of({"audio_record": "the file is empty"})
            info = self.inspector.finish()
            self.writer.commit(info.content_type)
        except BaseException:
            self.abort()
            raise
        doc = {
            "_id": self.recording_id,
            "channel_id": self.channel_id,
            "call_id": None,
            "attached": False,
            "format": info.format.value,
            "content_type": info.content_type,
            "size": info.size,
            "sha256": info.sha256,
            "duration_seconds": info.duration_seconds,
            "file_name": self.file_name,
            "created_at": utc_now(),
        }
        return doc

    def abort(self) -> None:
        self.writer.abort()


class RecordingLibrary:
    def __init__(self, recordings: Collection[Document], blobs: BlobStore, max_bytes: int) -> None:
        self.recordings = recordings
        self.blobs = blobs
        self.max_bytes = max_bytes

    def start_upload(self, channel_id: int, file_name: str) -> Upload:
        return Upload(self, channel_id, file_name)

    def save(self, doc: Document) -> None:
        self.recordings.insert_one(doc)

    # --- the desk's part (RecordingAttachments) ------------------------------

    def claim(self, recording_id: str, channel_id: int) -> Document:
        doc = self.recordings.find_one({"_id": recording_id})
        # A recording of another channel, or already on a call, is not this request's.
        if doc is None or doc["channel_id"] != channel_id or doc.get("attached"):
            raise InvalidRequest.of({"audio_record": "unknown recording"})
        return dict(doc)

    def attach(self, recording_id: str, call_id: int) -> Document:
        self.recordings.update_one(
            {"_id": recording_id}, {"$set": {"call_id": call_id, "attached": True}}
        )
        doc = self.recordings.find_one({"_id": recording_id})
        assert doc is not None
        return dict(doc)

    def discard(self, recording_id: str) -> None:
        """Remove a recording that no call took (its request failed)."""
        result = self.recordings.delete_one({"_id": recording_id, "attached": False})
        if result.deleted_count:
            self.blobs.delete(recording_id)

    # --- download ------------------------------------------------------------

    def get(self, recording_id: str) -> Document:
        doc = self.recordings.find_one({"_id": recording_id, "attached": True})
        if doc is None:
            raise NotFound(f"recording {recording_id} not found")
        return dict(doc)

    def check_range(self, doc: Document, offset: int, length: int) -> None:
        """Refuse a byte range that the stored recording `doc` cannot serve."""
        if offset < 0 or length < 0:
            raise InvalidRequest.of({"range": "offset and length must not be negative"})
        if offset and offset >= int(doc["size"]):
            raise RangeNotSatisfiable(f"the recording has {doc['size']} bytes")

    def open_reader(self, recording_id: str, offset: int, length: int) -> BlobReader:
        """The recording's bytes in a range (check_range ran on its document)."""
        try:
            return self.blobs.open_reader(recording_id, offset, length)
        except InvalidRange as error:
            raise RangeNotSatisfiable(error.message) from error

    # --- cleanup ---------------------------------------------------------

    def sweep_unattached(self, now: datetime | None = None) -> int:
        cutoff = (now or utc_now()) - UNATTACHED_GRACE
        removed = 0
        stale: list[Any] = list(
            self.recordings.find({"attached": False, "created_at": {"$lte": cutoff}}, {"_id": 1})
        )
        for doc in stale:
            self.discard(str(doc["_id"]))
            removed += 1
        return removed
