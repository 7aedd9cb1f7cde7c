"""Where recording bytes live: the BlobStore protocol and its files under the data directory
(the MongoDB adapter keeps them in GridFS: `core.storage.mongo.blobs`).

Every store streams: a writer takes chunks, a reader yields chunks of at most READ_CHUNK_BYTES
for a byte range. Every call blocks; async callers run them in a worker thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Protocol, Self

from core.errors import InvalidRequest, NotFound

READ_CHUNK_BYTES = 64 * 1024

# Ids become file names, so they are kept to characters that cannot climb out of a directory.
_RECORDING_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


class BlobNotFound(NotFound):
    """No stored recording has that id."""


class BlobExists(Exception):
    """A recording with that id is already stored (ids are never reused)."""


class InvalidRange(InvalidRequest):
    """A byte range that starts past the end of the recording, or is negative."""


class BlobWriter(Protocol):
    """One recording being stored. Nothing is visible to readers until `commit()`."""

    @property
    def bytes_written(self) -> int: ...

    def write(self, chunk: bytes) -> None: ...

    def commit(self, content_type: str | None = None) -> None:
        """Make the recording durable and readable; the writer is then closed.

        `content_type`, when given, replaces the one the writer was opened with (the content
        often tells what it is only once it is all in).
        """
        ...

    def abort(self) -> None:
        """Remove everything written; safe to call more than once, a no-op after commit."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Aborts unless committed."""
        ...


class BlobReader(Protocol):
    """Chunks of one byte range of a stored recording; `close()` releases what it holds."""

    def __iter__(self) -> Iterator[bytes]: ...

    def __next__(self) -> bytes: ...

    def close(self) -> None: ...


class BlobStore(Protocol):
    def open_writer(self, recording_id: str, content_type: str) -> BlobWriter:
        """Start storing a recording under a fresh id; raises BlobExists if the id is taken."""
        ...

    def open_reader(self, recording_id: str, offset: int = 0, length: int = 0) -> BlobReader:
        """Bytes [offset, offset + length) of a recording, length 0 meaning to the end; a range
        running past the end is cut at the end. Raises BlobNotFound or InvalidRange at once."""
        ...

    def size(self, recording_id: str) -> int:
        """Size in bytes of a stored recording; raises BlobNotFound."""
        ...

    def delete(self, recording_id: str) -> bool:
        """Remove a stored recording; False when there was none."""
        ...

    def list_ids(self) -> Iterator[str]:
        """The id of every committed recording, in no particular order (start-up
        reconciliation with the recordings' details)."""
        ...


def _check_id(recording_id: str) -> str:
    if not _RECORDING_ID.fullmatch(recording_id):
        raise ValueError(f"not a recording id: {recording_id!r}")
    return recording_id


def _range(offset: int, length: int, size: int) -> tuple[int, int]:
    """The [start, end) a request for `length` bytes at `offset` gets of `size` bytes."""
    if offset < 0:
        raise InvalidRange("a byte range cannot start before 0", {"offset": str(offset)})
    if length < 0:
        raise InvalidRange("a byte range cannot be negative", {"length": str(length)})
    if offset > size:
        raise InvalidRange(
            f"offset {offset} is past the end ({size} bytes)", {"offset": str(offset)}
        )
    end = size if length == 0 else min(size, offset + length)
    return offset, end


class _WriterBase:
    def __init__(self) -> None:
        self._written = 0
        self._done = False

    @property
    def bytes_written(self) -> int:
        return self._written

    def commit(self, content_type: str | None = None) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.abort()
            return
        # The exception in flight says more than a failure to clean up after it.
        with contextlib.suppress(Exception):
            self.abort()

    def _check_open(self) -> None:
        if self._done:
            raise ValueError("the recording writer is closed")


# --- files ---------------------------------------------------------------------------------------


class FileBlobStore:
    """Recordings as files under `data_dir/recordings/`, sharded by a hash of the id.

    A file keeps only the bytes: the content type lives with the recording's other details.
    """

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self._root = Path(data_dir) / "recordings"
        self._incoming = self._root / "incoming"
        self._incoming.mkdir(parents=True, exist_ok=True)

    def path(self, recording_id: str) -> Path:
        digest = hashlib.sha256(_check_id(recording_id).encode()).hexdigest()
        return self._root / digest[:2] / digest[2:4] / recording_id

    def open_writer(self, recording_id: str, content_type: str) -> BlobWriter:
        final = self.path(recording_id)
        if final.exists():
            raise BlobExists(recording_id)
        temporary = self._incoming / f"{recording_id}.{uuid.uuid4().hex}.part"
        return _FileWriter(temporary, final)

    def open_reader(self, recording_id: str, offset: int = 0, length: int = 0) -> BlobReader:
        try:
            file = self.path(recording_id).open("rb")
        except FileNotFoundError:
            raise BlobNotFound(f"no recording {recording_id}") from None
        try:
            start, end = _range(offset, length, os.fstat(file.fileno()).st_size)
            file.seek(start)
        except BaseException:
            file.close()
            raise
        return _RangeReader(file, end - start)

    def size(self, recording_id: str) -> int:
        try:
            return self.path(recording_id).stat().st_size
        except FileNotFoundError:
            raise BlobNotFound(f"no recording {recording_id}") from None

    def delete(self, recording_id: str) -> bool:
        try:
            self.path(recording_id).unlink()
        except FileNotFoundError:
            return False
        return True

    def list_ids(self) -> Iterator[str]:
        # Committed files sit two shard levels down; "incoming" is not a shard name.
        for path in self._root.glob("??/??/*"):
            if path.is_file() and _RECORDING_ID.fullmatch(path.name):
                yield path.name

    def discard_incomplete(self) -> int:
        """Remove uploads a stopped process left half-written; run at start-up only."""
        removed = 0
        for part in self._incoming.glob("*.part"):
            part.unlink(missing_ok=True)
            removed += 1
        return removed


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _FileWriter(_WriterBase):
    def __init__(self, temporary: Path, final: Path) -> None:
        super().__init__()
        self._temporary = temporary
        self._final = final
        self._file: BinaryIO = temporary.open("xb")

    def write(self, chunk: bytes) -> None:
        self._check_open()
        self._file.write(chunk)
        self._written += len(chunk)

    def commit(self, content_type: str | None = None) -> None:
        self._check_open()
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self._temporary, self._final)
            _fsync_directory(self._final.parent)
        except BaseException:
            self.abort()
            raise
        self._done = True

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        self._file.close()
        self._temporary.unlink(missing_ok=True)


class _Source(Protocol):
    """An open file or GridFS stream, as far as a range reader needs it."""

    def read(self, size: int, /) -> bytes: ...

    def close(self) -> None: ...


class _RangeReader:
    """Chunks of at most READ_CHUNK_BYTES from an open file or GridFS stream, for `remaining`
    bytes from where it stands; closes the source at the end."""

    def __init__(self, source: _Source, remaining: int) -> None:
        self._source = source
        self._remaining = remaining

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self._remaining <= 0:
            self.close()
            raise StopIteration
        chunk = self._source.read(min(READ_CHUNK_BYTES, self._remaining))
        if not chunk:
            self.close()
            raise StopIteration
        self._remaining -= len(chunk)
        return chunk

    def close(self) -> None:
        self._remaining = 0
        self._source.close()
