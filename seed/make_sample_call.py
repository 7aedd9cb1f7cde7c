"""Writes seed/sample-call.wav, the recording the README's examples upload: one second of a
425 Hz tone (the Russian ringback tone), 8 kHz 8-bit mono PCM, 8 KB. The same bytes every time.

    python seed/make_sample_call.py
"""

from __future__ import annotations

import math
import sys
import wave
from pathlib import Path

SAMPLE = Path(__file__).resolve().parent / "sample-call.wav"
RATE = 8000
TONE_HZ = 425
SECONDS = 1.0
# Fading in and out keeps the tone from starting and ending with a click.
FADE_SECONDS = 0.05


def frames() -> bytes:
    count = int(RATE * SECONDS)
    fade = int(RATE * FADE_SECONDS)
    samples = bytearray()
    for n in range(count):
        envelope = min(1.0, n / fade, (count - 1 - n) / fade)
        level = 0.5 * envelope * math.sin(2 * math.pi * TONE_HZ * n / RATE)
        # 8-bit WAV samples are unsigned, silence is 128.
        samples.append(128 + round(127 * level))
    return bytes(samples)


def write(path: Path) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(1)
        out.setframerate(RATE)
        out.writeframes(frames())


if __name__ == "__main__":
    write(Path(sys.argv[1]) if len(sys.argv) > 1 else SAMPLE)
