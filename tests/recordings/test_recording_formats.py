"""Recognising recordings by content, and reading their duration, from whole files and streams."""

from __future__ import annotations

import hashlib
import random
import struct
import zlib
from pathlib import Path

import pytest

from core.errors import TooLarge, UnsupportedMedia
from core.recordings.formats import (
    HEAD_BYTES,
    AudioFormat,
    RecordingInfo,
    RecordingInspector,
    detect_format,
    inspect_bytes,
    read_duration,
)
from tests.recordings.recording_samples import fixture_bytes, make_wav

# (fixture, format, content type, duration as ffprobe reports it)
FIXTURES = [
    ("tone-cbr.mp3", AudioFormat.MP3, "audio/mpeg", 2.064),
    ("tone-vbr-xing.mp3", AudioFormat.MP3, "audio/mpeg", 1.541),
    ("tone-faststart.m4a", AudioFormat.MP4, "audio/mp4", 2.0),
    ("tone-moov-at-end.m4a", AudioFormat.MP4, "audio/mp4", 2.0),
    ("tone-vorbis.ogg", AudioFormat.OGG, "audio/ogg", 2.0),
    ("tone-opus.ogg", AudioFormat.OGG, "audio/ogg", 2.0),
]
FIXTURE_NAMES = [name for name, *_ in FIXTURES]
DURATION_TOLERANCE = 0.05


def inspect_in_chunks(data: bytes, chunk_size: int) -> RecordingInfo:
    inspector = RecordingInspector()
    for start in range(0, len(data), chunk_size):
        inspector.feed(data[start : start + chunk_size])
    return inspector.finish()


def ogg_crc(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
            crc &= 0xFFFFFFFF
    return crc


def ogg_first_page(packet: bytes) -> bytes:
    """A beginning-of-stream Ogg page holding one packet, with a correct checksum."""
    assert len(packet) < 255
    header = b"OggS" + struct.pack("<BBqIIIB", 0, 0x02, 0, 1234, 0, 0, 1) + bytes([len(packet)])
    page = header + packet
    return page[:22] + struct.pack("<I", ogg_crc(page)) + page[26:]


def png_bytes() -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


# --- recognised --------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "fmt", "content_type", "duration"), FIXTURES)
def test_fixture_is_recognised_with_content_type_and_duration(
    name: str, fmt: AudioFormat, content_type: str, duration: float
) -> None:
    data = fixture_bytes(name)

    info = inspect_bytes(data)

    assert info.format is fmt
    assert info.content_type == content_type
    assert info.size == len(data)
    assert info.duration_seconds == pytest.approx(duration, abs=DURATION_TOLERANCE)


@pytest.mark.parametrize(
    ("seconds", "rate", "channels", "width"),
    [(1.5, 8000, 1, 2), (2.0, 44100, 2, 2), (0.5, 16000, 1, 1), (1.0, 48000, 2, 4)],
)
def test_wav_written_by_wave_module_is_recognised_with_duration(
    seconds: float, rate: int, channels: int, width: int
) -> None:
    info = inspect_bytes(make_wav(seconds, rate, channels, width))

    assert info.format is AudioFormat.WAV
    assert info.content_type == "audio/wav"
    assert info.duration_seconds == pytest.approx(seconds, abs=0.001)


def test_streamed_wav_without_data_size_takes_duration_from_file_size() -> None:
    data = bytearray(make_wav(2.0))
    data_at = data.index(b"data")
    data[data_at + 4 : data_at + 8] = b"\xff\xff\xff\xff"
    data[4:8] = b"\xff\xff\xff\xff"

    assert inspect_bytes(bytes(data)).duration_seconds == pytest.approx(2.0, abs=0.001)


def test_wav_cut_short_reports_the_duration_it_holds() -> None:
    data = make_wav(2.0)

    info = inspect_bytes(data[: len(data) // 2 + 22])

    assert info.format is AudioFormat.WAV
    assert info.duration_seconds == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize(("name", "fmt", "content_type", "duration"), FIXTURES)
def test_format_is_known_from_the_head_alone(
    name: str, fmt: AudioFormat, content_type: str, duration: float
) -> None:
    assert detect_format(fixture_bytes(name)[:2048]) is fmt


@pytest.mark.parametrize(
    ("name", "head_bytes", "tail_bytes", "duration"),
    [
        ("tone-moov-at-end.m4a", 64, 1600, 2.0),
        ("tone-vorbis.ogg", 200, 1000, 2.0),
        ("tone-opus.ogg", 200, 400, 2.0),
        ("tone-cbr.mp3", 1000, 200, 2.064),
    ],
)
def test_duration_is_read_from_head_and_tail_of_a_file(
    name: str, head_bytes: int, tail_bytes: int, duration: float
) -> None:
    data = fixture_bytes(name)
    fmt = detect_format(data, complete=True)
    assert fmt is not None

    seconds = read_duration(fmt, data[:head_bytes], data[-tail_bytes:], len(data))

    assert seconds == pytest.approx(duration, abs=DURATION_TOLERANCE)


def test_duration_is_unknown_without_the_tail_that_holds_it() -> None:
    data = fixture_bytes("tone-moov-at-end.m4a")

    assert read_duration(AudioFormat.MP4, data[:64], data[-16:], len(data)) == 0.0


def test_mp3_behind_an_id3_tag_larger_than_the_head_is_recognised() -> None:
    frames = fixture_bytes("tone-cbr.mp3")[20:]  # the fixture's own empty 10+10 byte tag removed
    assert frames[:2] == b"\xff\xf3"
    tag_body = 3 * HEAD_BYTES
    syncsafe = bytes((tag_body >> shift) & 0x7F for shift in (21, 14, 7, 0))
    data = b"ID3\x04\x00\x00" + syncsafe + b"\x00" * tag_body + frames

    info = inspect_in_chunks(data, 4096)

    assert info.format is AudioFormat.MP3
    assert info.duration_seconds == pytest.approx(2.064, abs=DURATION_TOLERANCE)
    assert detect_format(data, complete=True) is AudioFormat.MP3


# --- refused -----------------------------------------------------------------------------------


def refused(data: bytes) -> bool:
    with pytest.raises(UnsupportedMedia):
        inspect_bytes(data)
    return detect_format(data, complete=True) is None


def test_text_named_mp3_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "recording.mp3"
    path.write_text("This is not a recording, whatever its name says.\n" * 40)

    assert refused(path.read_bytes())


@pytest.mark.parametrize(
    ("name", "cut"),
    [
        ("tone-cbr.mp3", 30),  # the ID3 tag and the start of the first frame
        ("tone-vbr-xing.mp3", 100),  # inside the first frame
        ("tone-faststart.m4a", 20),  # inside the ftyp box
        ("tone-moov-at-end.m4a", 28),  # the ftyp box and nothing after it
        ("tone-vorbis.ogg", 40),  # inside the first page
        ("tone-opus.ogg", 40),
    ],
)
def test_truncated_header_is_refused(name: str, cut: int) -> None:
    assert refused(fixture_bytes(name)[:cut])


def test_truncated_wav_header_is_refused() -> None:
    assert refused(make_wav(1.0)[:30])


def test_wav_header_without_a_data_chunk_is_refused() -> None:
    assert refused(make_wav(1.0)[:36])


def test_png_is_refused() -> None:
    assert refused(png_bytes())


def test_random_bytes_are_refused() -> None:
    assert refused(random.Random(1).randbytes(200_000))


def test_random_bytes_behind_an_mpeg_frame_header_are_refused() -> None:
    frame = fixture_bytes("tone-vbr-xing.mp3")[:4]

    assert refused(frame + random.Random(2).randbytes(20_000))


def test_empty_input_is_refused() -> None:
    assert refused(b"")


def test_id3_followed_by_garbage_is_refused() -> None:
    assert refused(b"ID3" + random.Random(3).randbytes(10_000))


def test_valid_id3_tag_followed_by_garbage_is_refused() -> None:
    tag = b"ID3\x03\x00\x00\x00\x00\x00\x10" + b"\x00" * 16

    assert refused(tag + b"not audio at all " * 500)


def test_riff_that_is_not_wave_is_refused() -> None:
    assert refused(b"RIFF\x24\x00\x00\x00AVI LIST" + b"\x00" * 200)


def test_ogg_carrying_neither_vorbis_nor_opus_is_refused() -> None:
    opus_head = b"OpusHead\x01\x01\x38\x01\x80\xbb\x00\x00\x00\x00\x00"
    speex_head = b"Speex   1.2.1" + b"\x00" * 67

    assert detect_format(ogg_first_page(opus_head), complete=True) is AudioFormat.OGG
    assert refused(ogg_first_page(speex_head))


def test_ogg_page_with_a_wrong_checksum_is_refused() -> None:
    data = bytearray(fixture_bytes("tone-vorbis.ogg"))
    data[40] ^= 0x01

    assert refused(bytes(data))


def test_mp4_with_an_unknown_brand_is_refused() -> None:
    data = bytearray(fixture_bytes("tone-faststart.m4a"))
    data[8:12] = b"zzzz"
    data[16:28] = b"zzzzzzzzzzzz"

    assert refused(bytes(data))


# --- streaming ---------------------------------------------------------------------------------


STREAMED = [*FIXTURE_NAMES, "long.wav"]


def streamed_bytes(name: str) -> bytes:
    # Longer than the head and tail together, so both buffers are exercised.
    return make_wav(12.0) if name == "long.wav" else fixture_bytes(name)


@pytest.mark.parametrize("name", STREAMED)
def test_chunk_size_does_not_change_what_the_inspector_finds(name: str) -> None:
    data = streamed_bytes(name)

    results = {size: inspect_in_chunks(data, size) for size in (1, 7, 64 * 1024, len(data))}

    assert len(set(results.values())) == 1
    assert results[7].sha256 == hashlib.sha256(data).hexdigest()
    assert results[7].size == len(data)


def test_long_wav_streamed_has_its_full_duration() -> None:
    assert inspect_in_chunks(make_wav(12.0), 5000).duration_seconds == pytest.approx(12.0)


def test_inspector_refuses_early_once_the_head_rules_out_every_format() -> None:
    inspector = RecordingInspector()
    inspector.feed(b"x" * (HEAD_BYTES - 1))
    assert inspector.early_format() is None

    inspector.feed(b"x")
    with pytest.raises(UnsupportedMedia):
        inspector.early_format()


def test_inspector_knows_the_format_once_the_head_is_in() -> None:
    data = make_wav(12.0)
    inspector = RecordingInspector()
    inspector.feed(data[:HEAD_BYTES])

    assert inspector.early_format() is AudioFormat.WAV


def test_inspector_refuses_a_recording_over_the_size_limit() -> None:
    inspector = RecordingInspector(max_size=10_000)
    inspector.feed(b"\x00" * 6000)

    with pytest.raises(TooLarge):
        inspector.feed(b"\x00" * 4001)


def test_inspector_accepts_a_recording_exactly_at_the_size_limit() -> None:
    data = fixture_bytes("tone-opus.ogg")
    inspector = RecordingInspector(max_size=len(data))
    inspector.feed(data)

    assert inspector.finish().format is AudioFormat.OGG
