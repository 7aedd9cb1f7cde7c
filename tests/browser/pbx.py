"""The PBX's side of the browser tests: calls posted to the real gateway as the PBX posts them."""

from __future__ import annotations

import io
import math
import struct
import wave
from typing import Any

import httpx


def tone_wav(seconds: float, rate: int = 8000) -> bytes:
    """A 440 Hz tone as PCM WAV: a recording a browser can decode, play and seek."""
    frames = b"".join(
        struct.pack("<h", int(12000 * math.sin(2 * math.pi * 440 * n / rate)))
        for n in range(int(seconds * rate))
    )
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(frames)
    return buffer.getvalue()


class Pbx:
    """Posts create_call / update_call forms (multipart, as the PBX sends them)."""

    def __init__(self, client: httpx.AsyncClient, calls_url: str) -> None:
        self._client = client
        self._url = calls_url

    async def post(
        self, fields: list[tuple[str, str]], recording: bytes | None = None
    ) -> dict[str, Any]:
        parts: list[tuple[str, Any]] = [(name, (None, value)) for name, value in fields]
        if recording is not None:
            parts.append(("audio_record", ("call.wav", recording, "audio/wav")))
        response = await self._client.post(self._url, files=parts)
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()["data"]
        return data

    async def create(
        self, phone: str, direction: str = "incoming", user_ids: tuple[int, ...] = (1,)
    ) -> dict[str, Any]:
        fields = [("action", "create_call"), ("direction", direction), ("phone", phone)]
        fields += [("user_ids[]", str(user_id)) for user_id in user_ids]
        return await self.post(fields)

    async def update(
        self,
        call_id: int,
        status: str,
        *,
        user_id: int | None = None,
        comment: str | None = None,
        recording: bytes | None = None,
    ) -> dict[str, Any]:
        fields = [("action", "update_call"), ("call_id", str(call_id)), ("call_status", status)]
        if user_id is not None:
            fields.append(("user_id", str(user_id)))
        if comment is not None:
            fields.append(("comment", comment))
        return await self.post(fields, recording)
