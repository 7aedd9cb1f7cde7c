"""Recognises a call recording by its content (mp3, mp4, wav, ogg); reads its duration where cheap.

`RecordingInspector` does it on a stream: it is fed chunks and keeps only a bounded head and tail.
"""

from __future__ import annotations

import enum
import hashlib
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from core.errors import TooLarge, UnsupportedMedia

# Detection reads at most this many bytes from the start of the file (and, after an ID3v2 tag,
# as many again from the start of the audio). A caller holding the first HEAD_BYTES bytes (or the
# whole file, if shorter) has all that detection needs.
HEAD_BYTES = 64 * 1024
# The last Ogg page, whose granule position gives the duration, is at most 65 307 bytes long, so
# it always starts within the last TAIL_BYTES bytes.
TAIL_BYTES = 64 * 1024


class AudioFormat(enum.StrEnum):
    MP3 = "mp3"
    MP4 = "mp4"
    WAV = "wav"
    OGG = "ogg"

    @property
    def content_type(self) -> str:
        return _CONTENT_TYPES[self]


_CONTENT_TYPES = {
    AudioFormat.MP3: "audio/mpeg",
    AudioFormat.MP4: "audio/mp4",
    AudioFormat.WAV: "audio/wav",
    AudioFormat.OGG: "audio/ogg",
}


@dataclass(frozen=True)
class RecordingInfo:
    """What the content of a recording says about it."""

    format: AudioFormat
    content_type: str
    size: int
    sha256: str
    # Zero when the format does not make it cheap to read.
    duration_seconds: float


def detect_format(data: bytes, *, complete: bool = False) -> AudioFormat | None:
    """The format of a file that starts with `data`, or None when it is not a recording we take.

    `data` is the start of the file: at least HEAD_BYTES of it, or all of it with `complete=True`.
    """
    return _detect(_Window([(0, data)], len(data) if complete else None))


def read_duration(fmt: AudioFormat, head: bytes, tail: bytes, size: int) -> float:
    """Duration in seconds from the first and last bytes of a file of `size` bytes; 0 if unknown."""
    return _duration(fmt, _Window([(0, head), (size - len(tail), tail)], size))


def inspect_bytes(data: bytes) -> RecordingInfo:
    """`RecordingInspector` over a recording already in memory."""
    inspector = RecordingInspector()
    inspector.feed(data)
    return inspector.finish()


class RecordingInspector:
    """Recognises a recording while it streams past, holding only a bounded head and tail.

    Feed every chunk in order, then call `finish()`. `early_format()` may be called at any time
    to refuse a non-recording before the whole of it has been received.
    """

    def __init__(self, max_size: int | None = None) -> None:
        self._max_size = max_size
        self._size = 0
        self._sha256 = hashlib.sha256()
        self._head = bytearray()
        self._tail = bytearray()
        # Where the audio starts after an ID3v2 tag (0 without one; None until 10 bytes are seen).
        self._audio_offset: int | None = None
        self._audio_head = bytearray()
        self._format: AudioFormat | None = None

    @property
    def size(self) -> int:
        return self._size

    def feed(self, chunk: bytes) -> None:
        """Take the next chunk; raises TooLarge once the recording exceeds `max_size`."""
        if not chunk:
            return
        start = self._size
        if self._max_size is not None and start + len(chunk) > self._max_size:
            raise TooLarge(f"recording exceeds {self._max_size} bytes")
        self._size = start + len(chunk)
        self._sha256.update(chunk)

        if start < HEAD_BYTES:
            self._head += chunk[: HEAD_BYTES - start]
        if self._audio_offset is None and len(self._head) >= _ID3_HEADER_SIZE:
            self._audio_offset = _id3v2_length(bytes(self._head[:_ID3_HEADER_SIZE])) or 0
        if self._audio_offset:
            begin = self._audio_offset + len(self._audio_head)
            end = self._audio_offset + HEAD_BYTES
            if begin < end and begin < self._size:
                lo = max(begin - start, 0)
                self._audio_head += chunk[lo : lo + (end - begin)]

        self._tail += chunk
        # Trimming lazily keeps small chunks from making every feed copy the whole tail.
        if len(self._tail) > 2 * TAIL_BYTES:
            del self._tail[: len(self._tail) - TAIL_BYTES]

    def early_format(self) -> AudioFormat | None:
        """The format once enough has been fed to tell, else None; raises UnsupportedMedia as
        soon as the head rules out every format."""
        if self._format is not None:
            return self._format
        if len(self._head) < HEAD_BYTES:
            return None
        if self._audio_offset and len(self._audio_head) < HEAD_BYTES:
            return None
        self._format = self._recognise(self._window(size=None))
        return self._format

    def finish(self) -> RecordingInfo:
        """What the whole recording turned out to be; raises UnsupportedMedia if not a recording."""
        window = self._window(size=self._size)
        fmt = self._format or self._recognise(window)
        return RecordingInfo(
            format=fmt,
            content_type=fmt.content_type,
            size=self._size,
            sha256=self._sha256.hexdigest(),
            duration_seconds=_duration(fmt, window),
        )

    def _window(self, size: int | None) -> _Window:
        tail = bytes(self._tail[-TAIL_BYTES:])
        segments = [(0, bytes(self._head)), (self._size - len(tail), tail)]
        if self._audio_offset:
            segments.append((self._audio_offset, bytes(self._audio_head)))
        return _Window(segments, size)

    @staticmethod
    def _recognise(window: _Window) -> AudioFormat:
        fmt = _detect(window)
        if fmt is None:
            raise UnsupportedMedia("the recording is not mp3, mp4, wav or ogg")
        return fmt


class _Window:
    """Known stretches of a file at their absolute offsets; `size` is None while unknown."""

    def __init__(self, segments: Iterable[tuple[int, bytes]], size: int | None) -> None:
        self.segments = [(offset, data) for offset, data in segments if data]
        self.size = size

    def read(self, offset: int, length: int) -> bytes | None:
        """Exactly `length` bytes at `offset`, or None when no known stretch holds all of them."""
        if offset < 0 or length < 0:
            return None
        for start, data in self.segments:
            if start <= offset and offset + length <= start + len(data):
                return data[offset - start : offset - start + length]
        return None

    def read_upto(self, offset: int, length: int) -> bytes:
        """Up to `length` known bytes from `offset` (fewer where the known stretch ends)."""
        for start, data in self.segments:
            if start <= offset < start + len(data):
                return data[offset - start : offset - start + length]
        return b""

    def last(self) -> tuple[int, bytes] | None:
        """The known stretch that ends the file, when the size is known."""
        if self.size is None:
            return None
        for start, data in self.segments:
            if start + len(data) == self.size:
                return start, data
        return None


def _detect(window: _Window) -> AudioFormat | None:
    if _is_wav(window):
        return AudioFormat.WAV
    if _is_mp4(window):
        return AudioFormat.MP4
    if _ogg_stream(window) is not None:
        return AudioFormat.OGG
    if _mpeg_audio_start(window) is not None:
        return AudioFormat.MP3
    return None


def _duration(fmt: AudioFormat, window: _Window) -> float:
    if fmt is AudioFormat.WAV:
        seconds = _wav_duration(window)
    elif fmt is AudioFormat.MP4:
        seconds = _mp4_duration(window)
    elif fmt is AudioFormat.OGG:
        seconds = _ogg_duration(window)
    else:
        seconds = _mp3_duration(window)
    return max(seconds or 0.0, 0.0)


def _u32be(data: bytes, at: int = 0) -> int:
    value: int = struct.unpack_from(">I", data, at)[0]
    return value


# --- mp3 -----------------------------------------------------------------------------------------

_ID3_HEADER_SIZE = 10
# Some encoders leave zero padding between the ID3v2 tag and the first frame.
_MAX_PADDING_AFTER_TAG = 4096
# Frames that must follow one another, each header consistent with the first, when present.
_MPEG_FRAMES_TO_CHECK = 3

_MPEG1, _MPEG2, _MPEG25 = 3, 2, 0
_LAYER3, _LAYER2, _LAYER1 = 1, 2, 3
_BITRATES_KBPS = {
    (_MPEG1, _LAYER1): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (_MPEG1, _LAYER2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (_MPEG1, _LAYER3): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (_MPEG2, _LAYER1): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (_MPEG2, _LAYER2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (_MPEG2, _LAYER3): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_SAMPLE_RATES = {
    _MPEG1: (44100, 48000, 32000),
    _MPEG2: (22050, 24000, 16000),
    _MPEG25: (11025, 12000, 8000),
}


@dataclass(frozen=True)
class _MpegFrame:
    version: int
    layer: int
    bitrate: int  # bits per second
    sample_rate: int
    mono: bool
    length: int  # bytes, header included
    samples: int

    def same_stream(self, other: _MpegFrame) -> bool:
        return (self.version, self.layer, self.sample_rate) == (
            other.version,
            other.layer,
            other.sample_rate,
        )


def _mpeg_frame(header: bytes) -> _MpegFrame | None:
    """The MPEG audio frame a 4-byte header announces, or None for anything reserved or free."""
    b0, b1, b2, b3 = header
    if b0 != 0xFF or b1 & 0xE0 != 0xE0:
        return None
    version, layer = (b1 >> 3) & 3, (b1 >> 1) & 3
    bitrate_index, rate_index = b2 >> 4, (b2 >> 2) & 3
    if version == 1 or layer == 0 or bitrate_index in (0, 15) or rate_index == 3 or b3 & 3 == 2:
        return None
    table_version = _MPEG1 if version == _MPEG1 else _MPEG2
    bitrate = _BITRATES_KBPS[table_version, layer][bitrate_index] * 1000
    sample_rate = _SAMPLE_RATES[version][rate_index]
    padding = (b2 >> 1) & 1
    if layer == _LAYER1:
        samples = 384
        length = (12 * bitrate // sample_rate + padding) * 4
    elif layer == _LAYER2 or version == _MPEG1:
        samples = 1152
        length = 144 * bitrate // sample_rate + padding
    else:
        samples = 576
        length = 72 * bitrate // sample_rate + padding
    return _MpegFrame(version, layer, bitrate, sample_rate, b3 >> 6 == 3, length, samples)


def _id3v2_length(header: bytes) -> int | None:
    """Total length of an ID3v2 tag from its 10-byte header, or None when it is not one."""
    if len(header) < _ID3_HEADER_SIZE or header[:3] != b"ID3":
        return None
    major, revision, flags = header[3], header[4], header[5]
    size_bytes = header[6:10]
    if major not in (2, 3, 4) or revision == 0xFF or any(b & 0x80 for b in size_bytes):
        return None
    size = 0
    for b in size_bytes:
        size = (size << 7) | b
    footer = _ID3_HEADER_SIZE if major == 4 and flags & 0x10 else 0
    return _ID3_HEADER_SIZE + size + footer


def _mpeg_audio_start(window: _Window) -> int | None:
    """Offset of the first MPEG audio frame when the file is MPEG audio, else None."""
    start = 0
    header = window.read(0, _ID3_HEADER_SIZE)
    if header is not None and header[:3] == b"ID3":
        tag_length = _id3v2_length(header)
        if tag_length is None:
            return None
        start = tag_length
        padding = window.read_upto(start, _MAX_PADDING_AFTER_TAG)
        start += len(padding) - len(padding.lstrip(b"\x00"))
    return start if _mpeg_frames_follow(window, start) else None


def _mpeg_frames_follow(window: _Window, start: int) -> bool:
    """Whether whole MPEG audio frames of one stream follow one another from `start`."""
    first: _MpegFrame | None = None
    position = start
    for count in range(_MPEG_FRAMES_TO_CHECK):
        header = window.read(position, 4)
        if header is None or (count and header[:3] == b"TAG"):
            # The known data ends, or an ID3v1 tag begins: enough after one whole frame.
            return count > 0
        frame = _mpeg_frame(header)
        if frame is None or (first is not None and not frame.same_stream(first)):
            return False
        if window.read(position + frame.length - 1, 1) is None:
            return count > 0
        first = first or frame
        position += frame.length
    return True


def _mp3_duration(window: _Window) -> float | None:
    start = _mpeg_audio_start(window)
    if start is None:
        return None
    header = window.read(start, 4)
    frame = _mpeg_frame(header) if header else None
    if frame is None:
        return None
    frames = _xing_frames(window, start, frame)
    if frames is None:
        frames = _vbri_frames(window, start)
    if frames is not None:
        return frames * frame.samples / frame.sample_rate
    if window.size is None:
        return None
    audio_bytes = window.size - start
    if window.read(window.size - 128, 3) == b"TAG":
        audio_bytes -= 128
    return audio_bytes * 8 / frame.bitrate


# Side information after the frame header, by (MPEG-1, mono); a Xing/Info tag follows it.
_SIDE_INFO_BYTES = {(True, False): 32, (True, True): 17, (False, False): 17, (False, True): 9}


def _xing_frames(window: _Window, start: int, frame: _MpegFrame) -> int | None:
    side_info = _SIDE_INFO_BYTES[frame.version == _MPEG1, frame.mono]
    tag = window.read(start + 4 + side_info, 12)
    if tag is None or tag[:4] not in (b"Xing", b"Info") or not _u32be(tag, 4) & 1:
        return None
    return _u32be(tag, 8)


def _vbri_frames(window: _Window, start: int) -> int | None:
    tag = window.read(start + 36, 18)
    if tag is None or tag[:4] != b"VBRI":
        return None
    return _u32be(tag, 14)


# --- mp4 -----------------------------------------------------------------------------------------

_MP4_BRANDS = {
    b"M4A ", b"M4B ", b"M4P ", b"M4V ", b"mp41", b"mp42", b"mp71", b"isom", b"iso2", b"iso3",
    b"iso4", b"iso5", b"iso6", b"iso8", b"iso9", b"avc1", b"dash", b"3gp4", b"3gp5", b"3gp6",
    b"3g2a", b"qt  ", b"f4a ", b"f4v ", b"MSNV", b"NDAS", b"caqv",
}  # fmt: skip
_MAX_FTYP_SIZE = 1024
_MAX_TOP_LEVEL_BOXES = 64


def _is_fourcc(value: bytes) -> bool:
    return len(value) == 4 and all(0x20 <= b < 0x7F for b in value)


def _is_mp4(window: _Window) -> bool:
    header = window.read(0, 8)
    if header is None or header[4:] != b"ftyp":
        return False
    size = _u32be(header)
    if not 16 <= size <= _MAX_FTYP_SIZE or size % 4:
        return False
    body = window.read(8, size - 8)
    if body is None:
        return False
    brands = [body[:4]] + [body[i : i + 4] for i in range(8, len(body), 4)]
    if not all(_is_fourcc(brand) for brand in brands) or not _MP4_BRANDS.intersection(brands):
        return False
    # A box must follow the ftyp: a file that stops here is cut short.
    following = window.read(size, 8)
    if following is None or not _is_fourcc(following[4:]):
        return False
    return _u32be(following) in (0, 1) or _u32be(following) >= 8


def _mp4_boxes(window: _Window, start: int, end: int | None) -> Iterable[tuple[bytes, int, int]]:
    """(type, body offset, end offset) of the boxes from start to end, while headers are known."""
    position = start
    for _ in range(_MAX_TOP_LEVEL_BOXES):
        if end is not None and position + 8 > end:
            return
        header = window.read(position, 8)
        if header is None:
            return
        size, kind, body = _u32be(header), header[4:], position + 8
        if size == 1:
            large = window.read(position + 8, 8)
            if large is None:
                return
            size, body = struct.unpack(">Q", large)[0], position + 16
        elif size == 0:
            limit = end if end is not None else window.size
            if limit is None:
                return
            size = limit - position
        if size < body - position:
            return
        yield kind, body, position + size
        position += size


def _mp4_duration(window: _Window) -> float | None:
    for kind, body, end in _mp4_boxes(window, 0, window.size):
        if kind != b"moov":
            continue
        for child, child_body, _ in _mp4_boxes(window, body, end):
            if child != b"mvhd":
                continue
            version = window.read(child_body, 1)
            if version == b"\x00":
                fields = window.read(child_body + 12, 8)
                timescale, duration = struct.unpack(">II", fields) if fields else (0, 0)
            elif version == b"\x01":
                fields = window.read(child_body + 20, 12)
                timescale, duration = struct.unpack(">IQ", fields) if fields else (0, 0)
            else:
                return None
            unknown = duration in (0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF)
            return duration / timescale if timescale and not unknown else None
        return None
    return None


# --- wav -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _WavLayout:
    byte_rate: int
    data_offset: int
    data_size: int


_MAX_WAV_CHUNKS = 64


def _wav_layout(window: _Window) -> _WavLayout | None:
    header = window.read(0, 12)
    if header is None or header[:4] != b"RIFF" or header[8:] != b"WAVE":
        return None
    byte_rate = 0
    position = 12
    for _ in range(_MAX_WAV_CHUNKS):
        chunk = window.read(position, 8)
        if chunk is None:
            return None
        kind, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
        if kind == b"fmt ":
            fmt = window.read(position + 8, 16) if size >= 16 else None
            if fmt is None:
                return None
            tag, channels, rate, byte_rate, block_align = struct.unpack("<HHIIH", fmt[:14])
            if not (tag and 0 < channels <= 64 and 0 < rate <= 1_000_000 and byte_rate):
                return None
            if not block_align:
                return None
        elif kind == b"data":
            return _WavLayout(byte_rate, position + 8, size) if byte_rate else None
        elif not _is_fourcc(kind):
            return None
        position += 8 + size + (size & 1)
    return None


def _is_wav(window: _Window) -> bool:
    return _wav_layout(window) is not None


def _wav_duration(window: _Window) -> float | None:
    layout = _wav_layout(window)
    if layout is None:
        return None
    data_size = layout.data_size
    if window.size is not None:
        # Streamed WAVs leave the size 0 or 0xFFFFFFFF; a short file holds less than it says.
        available = window.size - layout.data_offset
        if data_size in (0, 0xFFFFFFFF) or data_size > available:
            data_size = available
    return data_size / layout.byte_rate


# --- ogg -----------------------------------------------------------------------------------------


def _ogg_crc_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        crc = i << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
        table.append(crc & 0xFFFFFFFF)
    return tuple(table)


_OGG_CRC_TABLE = _ogg_crc_table()
_OGG_HEADER_SIZE = 27


def _ogg_crc(data: bytes) -> int:
    crc = 0
    table = _OGG_CRC_TABLE
    for b in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ table[(crc >> 24) ^ b]
    return crc


@dataclass(frozen=True)
class _OggPage:
    header_type: int
    granule: int
    serial: int
    lacing: bytes
    body: bytes

    def first_packet(self) -> bytes:
        length = 0
        for value in self.lacing:
            length += value
            if value < 255:
                break
        return self.body[:length]


def _ogg_page(window: _Window, offset: int) -> _OggPage | None:
    """The Ogg page at `offset` if all of it is known and its checksum holds."""
    header = window.read(offset, _OGG_HEADER_SIZE)
    if header is None or header[:4] != b"OggS" or header[4] != 0:
        return None
    header_type, granule, serial, _, crc, segments = struct.unpack("<BqIIIB", header[5:])
    lacing = window.read(offset + _OGG_HEADER_SIZE, segments)
    if lacing is None:
        return None
    body = window.read(offset + _OGG_HEADER_SIZE + segments, sum(lacing))
    if body is None:
        return None
    if _ogg_crc(header[:22] + b"\x00\x00\x00\x00" + header[26:] + lacing + body) != crc:
        return None
    return _OggPage(header_type, granule, serial, lacing, body)


@dataclass(frozen=True)
class _OggStream:
    serial: int
    sample_rate: int
    pre_skip: int


def _ogg_stream(window: _Window) -> _OggStream | None:
    """The Vorbis or Opus stream an Ogg file begins with, or None."""
    page = _ogg_page(window, 0)
    if page is None or not page.header_type & 0x02:  # the first page must begin the stream
        return None
    packet = page.first_packet()
    if packet.startswith(b"\x01vorbis") and len(packet) >= 30:
        version, channels, rate = struct.unpack_from("<IBI", packet, 7)
        if version == 0 and channels and rate:
            return _OggStream(page.serial, rate, 0)
    elif packet.startswith(b"OpusHead") and len(packet) >= 19:
        version, channels, pre_skip = struct.unpack_from("<BBH", packet, 8)
        if version >> 4 == 0 and channels:
            return _OggStream(page.serial, 48000, pre_skip)
    return None


def _ogg_duration(window: _Window) -> float | None:
    stream = _ogg_stream(window)
    last = window.last()
    if stream is None or last is None:
        return None
    start, data = last
    position = len(data)
    while (position := data.rfind(b"OggS", 0, position)) >= 0:
        page = _ogg_page(window, start + position)
        if page is not None and page.serial == stream.serial and page.granule >= 0:
            return (page.granule - stream.pre_skip) / stream.sample_rate
    return None
