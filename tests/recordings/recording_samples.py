"""Recordings for the tests: the shipped fixtures and WAVs written with the standard library."""

from __future__ import annotations

import io
import math
import struct
import wave
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def make_wav(seconds: float, rate: int = 8000, channels: int = 1, sample_width: int = 2) -> bytes:
    """A sine tone as a PCM WAV written by the `wave` module."""
    frames = int(seconds * rate)
    peak = 2 ** (8 * sample_width - 1) - 1
    fmt = {1: "B", 2: "h", 4: "i"}[sample_width]
    samples = bytearray()
    for n in range(frames):
        value = int(peak * 0.5 * math.sin(2 * math.pi * 440 * n / rate))
        if sample_width == 1:
            value += 128
        samples += struct.pack(f"<{fmt}", value) * channels
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(sample_width)
        out.setframerate(rate)
        out.writeframes(bytes(samples))
    return buffer.getvalue()


def pcm_wav(seconds: float, rate: int = 8000, pattern: bytes = b"\x01\x02") -> bytes:
    """A mono 16-bit WAV whose samples repeat `pattern`: cheap to make, any length."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pattern * int(rate * seconds * 2 / len(pattern)))
    return buffer.getvalue()
