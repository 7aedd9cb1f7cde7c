"""Call recordings: recognising their format, storing their bytes, signing download links."""

from core.recordings.blobs import (
    READ_CHUNK_BYTES,
    BlobExists,
    BlobNotFound,
    BlobReader,
    BlobStore,
    BlobWriter,
    FileBlobStore,
    InvalidRange,
)
from core.recordings.formats import (
    HEAD_BYTES,
    TAIL_BYTES,
    AudioFormat,
    RecordingInfo,
    RecordingInspector,
    detect_format,
    inspect_bytes,
    read_duration,
)
from core.recordings.signing import LinkSigner, signed_path

__all__ = [
    "HEAD_BYTES",
    "READ_CHUNK_BYTES",
    "TAIL_BYTES",
    "AudioFormat",
    "BlobExists",
    "BlobNotFound",
    "BlobReader",
    "BlobStore",
    "BlobWriter",
    "FileBlobStore",
    "InvalidRange",
    "LinkSigner",
    "RecordingInfo",
    "RecordingInspector",
    "detect_format",
    "inspect_bytes",
    "read_duration",
    "signed_path",
]
