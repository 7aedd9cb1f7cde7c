"""The recordings a call keeps: upload, download, cleanup and reconciliation.

Bytes go to the store's blob store (files beside SQLite, GridFS on MongoDB) as
they arrive; the recording's record (format, size, sha256, duration) is stored
only once the bytes are complete and recognised. A call takes a recording in
its own unit of work (core.app.calls); one nobody took (its request failed, or
never came) is removed by `sweep_unattached`. All methods block: core runs
them on worker threads.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from core.errors import InvalidRequest, NotFound, RangeNotSatisfiable
from core.model import Recording, utc_now
from core.recordings.blobs import BlobReader, BlobWriter, InvalidRange
from core.recordings.formats import RecordingInspector
from core.storage.port import Store

log = logging.getLogger("vats.recordings")

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
        self.writer: BlobWriter = library.store.blobs.open_writer(
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

    def finish(self) -> Recording:
        """Make the bytes durable once every one is in; returns the recording to store."""
        try:
            if self.inspector.size == 0:
                raise InvalidRequest.of({"audio_record": "the file is empty"})
            info = self.inspector.finish()
            self.writer.commit(info.content_type)
        except BaseException:
            self.abort()
            raise
        return Recording(
            recording_id=self.recording_id,
            channel_id=self.channel_id,
            format=info.format.value,
            content_type=info.content_type,
            size=info.size,
            sha256=info.sha256,
            created_at=utc_now(),
            duration_seconds=info.duration_seconds,
            file_name=self.file_name,
        )

    def abort(self) -> None:
        self.writer.abort()


class RecordingLibrary:
    def __init__(self, store: Store, max_bytes: int) -> None:
        self.store = store
        self.max_bytes = max_bytes

    def start_upload(self, channel_id: int, file_name: str) -> Upload:
        return Upload(self, channel_id, file_name)

    def save(self, recording: Recording) -> None:
        """Store a finished upload's record; its bytes are removed if that fails."""
        try:
            with self.store.unit_of_work() as uow:
                uow.recordings.add(recording)
                uow.commit()
        except BaseException:
            self.store.blobs.delete(recording.recording_id)
            raise

    def discard(self, recording_id: str) -> None:
        """Remove a recording that no call took (its request failed)."""
        with self.store.unit_of_work() as uow:
            recording = uow.recordings.get(recording_id)
            if recording is None or recording.attached:
                return
            uow.recordings.remove(recording_id)
            uow.commit()
        self.store.blobs.delete(recording_id)

    # --- download ------------------------------------------------------------

    def get(self, recording_id: str) -> Recording:
        with self.store.reading() as uow:
            recording = uow.recordings.get(recording_id)
        if recording is None or not recording.attached:
            raise NotFound(f"recording {recording_id} not found")
        return recording

    def check_range(self, recording: Recording, offset: int, length: int) -> None:
        """Refuse a byte range that the stored recording cannot serve."""
        if offset < 0 or length < 0:
            raise InvalidRequest.of({"range": "offset and length must not be negative"})
        if offset and offset >= recording.size:
            raise RangeNotSatisfiable(f"the recording has {recording.size} bytes")

    def open_reader(self, recording_id: str, offset: int, length: int) -> BlobReader:
        """The recording's bytes in a range (check_range ran on its record)."""
        try:
            return self.store.blobs.open_reader(recording_id, offset, length)
        except InvalidRange as error:
            raise RangeNotSatisfiable(error.message) from error

    # --- cleanup ---------------------------------------------------------

    def sweep_unattached(self, now: datetime | None = None) -> int:
        cutoff = (now or utc_now()) - UNATTACHED_GRACE
        with self.store.reading() as uow:
            stale = uow.recordings.unattached_before(cutoff)
        for recording_id in stale:
            self.discard(recording_id)
        return len(stale)

    def reconcile(self) -> tuple[int, int, int]:
        """At start: remove files that no record names (an upload cut off before its
        record was stored) and records of uploads no call took whose file is gone.
        A call's recording whose file is gone keeps its record (the file may yet be
        restored from a backup) and is reported. Returns the three counts."""
        with self.store.reading() as uow:
            recorded = {r: uow.recordings.get(r) for r in uow.recordings.ids()}
        stored = set(self.store.blobs.list_ids())
        orphan_files = stored - set(recorded)
        for recording_id in orphan_files:
            self.store.blobs.delete(recording_id)
        missing = [r for r in recorded.values() if r is not None and r.recording_id not in stored]
        unattached = [r.recording_id for r in missing if not r.attached]
        if unattached:
            with self.store.unit_of_work() as uow:
                for recording_id in unattached:
                    uow.recordings.remove(recording_id)
                uow.commit()
        lost = len(missing) - len(unattached)
        if orphan_files or unattached:
            log.warning(
                "recordings reconciled: %d files without a record removed, "
                "%d records of unattached uploads without a file removed",
                len(orphan_files),
                len(unattached),
            )
        if lost:
            log.error(
                "%d recordings of calls have no file under the data directory; "
                "restore recordings/ from the backup",
                lost,
            )
        return len(orphan_files), len(unattached), lost
