"""Uploads one large WAV recording with create_call, streamed from a generator.

    python -m bench.upload_load --url http://HOST:PORT/api/v2/telephony/calls/KEY --mb 200

The body is a multipart form: the create_call fields, then `audio_record` = a valid
44-byte WAV header (PCM, 8 kHz, 16-bit mono) and MB megabytes of PCM, produced chunk by
chunk so that this process never holds the file. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import struct
import time
from collections.abc import AsyncIterator
from typing import Any

from bench.rawhttp import CLOSING, CONTENT_TYPE, Connection, file_part_head, form_part, host_port

CHUNK = 256 * 1024
SAMPLE_RATE = 8000


def wav_header(data_bytes: int) -> bytes:
    channels, bits = 1, 16
    byte_rate = SAMPLE_RATE * channels * bits // 8
    fmt = struct.pack("<HHIIHH", 1, channels, SAMPLE_RATE, byte_rate, channels * bits // 8, bits)
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"data"
        + struct.pack("<I", data_bytes)
    )


async def body(head: bytes, data_bytes: int, tail: bytes) -> AsyncIterator[bytes]:
    yield head
    # A quiet tone rather than zeros, so nothing along the way can shortcut the bytes.
    pattern = bytes((i * 7) & 0xFF for i in range(CHUNK))
    left = data_bytes
    while left > 0:
        size = min(left, CHUNK)
        yield pattern[:size]
        left -= size
    yield tail


async def run(args: argparse.Namespace) -> dict[str, Any]:
    data_bytes = args.mb * 1024 * 1024
    head = b"".join(
        form_part(k, v)
        for k, v in (
            ("action", "create_call"),
            ("direction", "incoming"),
            ("phone", "777777777"),
            ("call_status", "answered"),
        )
    )
    head += file_part_head("audio_record", "call.wav", "audio/wav") + wav_header(data_bytes)
    tail = b"\r\n" + CLOSING
    length = len(head) + data_bytes + len(tail)
    host, port, path = host_port(args.url)
    connection = await Connection.open(host, port)
    began = time.perf_counter()
    try:
        status, reply = await connection.stream_request(
            "POST", path, body(head, data_bytes, tail), length, {"Content-Type": CONTENT_TYPE}
        )
    finally:
        await connection.close()
    seconds = time.perf_counter() - began
    return {
        "status": status,
        "reply": reply.decode(errors="replace")[:300],
        "bytes": length,
        "seconds": seconds,
        "mb_per_s": length / (1024 * 1024) / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.upload_load")
    parser.add_argument("--url", required=True)
    parser.add_argument("--mb", type=int, default=200)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
