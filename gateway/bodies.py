"""Reads a PBX request body of any accepted type into a call; a recording is streamed on."""

from __future__ import annotations

import contextlib
import io
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import falcon
import falcon.asgi
import falcon.media.multipart
from falcon.asgi.multipart import MultipartParseError

from gateway import forms
from gateway.config import Config
from gateway.errors import GatewayError, invalid_fields

# Recordings travel to core in chunks of this size (the last one may be shorter).
CHUNK_SIZE = 64 * 1024
# A multipart body no longer than this (by its Content-Length) is read whole, then parsed in
# one go: parsing a PBX request's few fields as they stream in costs several times the CPU
# (every line of the form is an await). Longer bodies, recordings, are parsed as they come.
BUFFERED_MULTIPART_BYTES = 64 * 1024

MULTIPART = "multipart/form-data"
URLENCODED = "application/x-www-form-urlencoded"
JSON = "application/json"
PLAIN_TEXT = "text/plain"
ACCEPTED = (MULTIPART, URLENCODED, JSON)

# Given the recording's file name and its bytes, stores it and returns its id.
Uploader = Callable[[str, AsyncIterator[bytes]], Awaitable[str]]


@dataclass(frozen=True)
class CallBody:
    call: forms.CreateCall | forms.UpdateCall
    recording_id: str = ""


def bad_request(message: str) -> GatewayError:
    return GatewayError(400, "bad_request", message)


def too_large(message: str) -> GatewayError:
    return GatewayError(413, "payload_too_large", message)


def unsupported(message: str) -> GatewayError:
    return GatewayError(415, "unsupported_media_type", message)


def cut_off() -> GatewayError:
    return bad_request("the body ended early: the connection closed before all of it came")


async def read_call_body(req: falcon.asgi.Request, config: Config, upload: Uploader) -> CallBody:
    """The call the body describes, and the id of its recording once core has it whole.

    A body refused for any reason, including one that ends early, leaves no recording.
    """
    media_type, params = falcon.parse_header(req.content_type or "")
    media_type = media_type.strip().lower()
    charset = params.get("charset") or None
    if media_type == MULTIPART:
        return await _read_multipart(req, config, upload)
    if media_type not in ACCEPTED:
        raise unsupported("the body must be " + ", ".join(ACCEPTED))
    body = await _read_limited(req, config.max_body_bytes)
    try:
        if media_type == JSON:
            form = forms.from_json(body, charset, config.max_form_parts)
        else:
            form = forms.from_urlencoded(body, charset)
    except forms.UnparsableBody as err:
        raise bad_request(str(err)) from None
    except forms.UnsupportedCharset as err:
        raise unsupported(str(err)) from None
    except forms.TooManyFields as err:
        raise too_large(str(err)) from None
    return CallBody(_parse(form))


def _parse(form: forms.RawForm) -> forms.CreateCall | forms.UpdateCall:
    if form.values("audio_record"):
        raise invalid_fields({"audio_record": "must be a file sent as multipart/form-data"})
    try:
        return forms.parse_call(form)
    except forms.FormError as err:
        raise invalid_fields(err.fields) from None


async def _read_limited(req: falcon.asgi.Request, limit: int) -> bytes:
    expected = req.content_length
    if expected is not None and expected > limit:
        raise too_large(f"the body is over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in req.stream:
        size += len(chunk)
        if size > limit:
            raise too_large(f"the body is over {limit} bytes")
        chunks.append(chunk)
    if expected is not None and size < expected:
        # Falcon's stream just ends when the client goes away: what came is not the form.
        raise cut_off()
    return b"".join(chunks)


class _PartStream(Protocol):
    async def read(self, size: int = -1, /) -> bytes: ...

    def __aiter__(self) -> AsyncIterator[bytes]: ...


class _Part(Protocol):
    """A form part as it is read: Falcon's streamed part, or a part of a form read whole."""

    @property
    def name(self) -> str | None: ...

    @property
    def filename(self) -> str | None: ...

    @property
    def content_type(self) -> str: ...

    @property
    def stream(self) -> _PartStream: ...


async def _read_multipart(req: falcon.asgi.Request, config: Config, upload: Uploader) -> CallBody:
    handler = req.options.media_handlers[falcon.MEDIA_MULTIPART]
    assert isinstance(handler, falcon.media.MultipartFormHandler)
    expected = req.content_length
    streamed: _CountedBody | None = None
    parts: AsyncIterable[_Part]
    if expected is not None and expected <= BUFFERED_MULTIPART_BYTES:
        whole = await _read_limited(req, expected)
        parts = _buffered_parts(handler.deserialize(io.BytesIO(whole), req.content_type, expected))
    else:
        streamed = _CountedBody(req.stream)
        parts = await handler.deserialize_async(streamed, req.content_type, expected)
    try:
        return await _read_parts(parts, config, upload)
    except MultipartParseError as err:
        if streamed is not None and expected is not None and streamed.received < expected:
            raise cut_off() from None
        raise bad_request(f"not a well-formed multipart form: {err.description}") from None


class _CountedBody:
    """The request body, counted as it arrives: Falcon's stream just ends when the client
    goes away, and its own count (`tell`) also counts the first chunk twice."""

    def __init__(self, stream: falcon.asgi.BoundedStream) -> None:
        self._stream = stream
        self.received = 0

    async def read(self, size: int | None = -1, /) -> bytes:
        data = await self._stream.read(size)
        self.received += len(data)
        return data

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncGenerator[bytes, None]:
        async for chunk in self._stream:
            self.received += len(chunk)
            yield chunk


async def _buffered_parts(
    form: falcon.media.multipart.MultipartForm,
) -> AsyncGenerator[_Part, None]:
    for part in form:
        yield _BufferedPart(part)


class _BufferedPart:
    """A part of a form read whole, read as a streamed part is (nothing waits)."""

    def __init__(self, part: falcon.media.multipart.BodyPart) -> None:
        self._part = part

    @property
    def name(self) -> str | None:
        return self._part.name

    @property
    def filename(self) -> str | None:
        return self._part.filename

    @property
    def content_type(self) -> str:
        return self._part.content_type

    @property
    def stream(self) -> _BufferedPart:
        return self

    async def read(self, size: int = -1, /) -> bytes:
        return self._part.stream.read(size)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncGenerator[bytes, None]:
        while chunk := self._part.stream.read(CHUNK_SIZE):
            yield chunk


async def _read_parts(parts: AsyncIterable[_Part], config: Config, upload: Uploader) -> CallBody:
    async with contextlib.aclosing(_counted(parts, config.max_form_parts)) as counted:
        reader = _FormReader(counted, config)
        async for part in counted:
            name, file_name, charset = _part_headers(part)
            if _is_recording(name, file_name):
                assert file_name is not None
                recording_id = await reader.upload(part, file_name, upload)
                assert reader.call is not None
                return CallBody(reader.call, recording_id)
            await reader.read_field(part, name, file_name, charset)
    return CallBody(_parse(reader.form))


def _part_headers(part: _Part) -> tuple[str, str | None, str]:
    """The part's field name, file name (None for a plain field) and charset."""
    try:
        name, file_name = part.name or "", part.filename
        content_type = part.content_type
        # A plain field has no Content-Type of its own (Falcon then names text/plain).
        charset = "utf-8"
        if content_type != PLAIN_TEXT:
            charset = falcon.parse_header(content_type)[1].get("charset") or charset
    except (UnicodeError, ValueError):
        raise bad_request("a form part has unreadable headers") from None
    try:
        return name, file_name, forms.check_charset(charset)
    except forms.UnsupportedCharset as err:
        raise unsupported(str(err)) from None


def _is_recording(name: str, file_name: str | None) -> bool:
    parsed = forms.field_name(name)
    return file_name is not None and parsed is not None and parsed[0] == "audio_record"


class _FormReader:
    """Collects a multipart form's fields; the recording goes on to core as it arrives."""

    def __init__(self, parts: AsyncIterator[_Part], config: Config) -> None:
        self.parts = parts
        self.config = config
        self.form = forms.RawForm()
        self.budget = config.max_body_bytes
        # The call the whole form describes, once it has been read to its end.
        self.call: forms.CreateCall | forms.UpdateCall | None = None

    async def read_field(self, part: _Part, name: str, file_name: str | None, charset: str) -> None:
        limit = self.config.max_body_bytes
        if file_name is not None:
            # Some other file: not ours to keep, but it counts against the body limit.
            async for chunk in part.stream:
                self.budget -= len(chunk)
                if self.budget < 0:
                    raise too_large(f"the form is over {limit} bytes")
            return
        data = await part.stream.read(self.config.max_field_bytes + 1)
        if len(data) > self.config.max_field_bytes:
            raise too_large(f"form field {name!r} is over {self.config.max_field_bytes} bytes")
        self.budget -= len(data)
        if self.budget < 0:
            raise too_large(f"the form is over {limit} bytes")
        try:
            self.form.add(name, data.decode(charset))
        except UnicodeError:
            raise bad_request(f"form field {name!r} is not valid {charset} text") from None

    async def upload(self, part: _Part, file_name: str, upload: Uploader) -> str:
        first = await part.stream.read(CHUNK_SIZE)
        if not first:
            raise invalid_fields({"audio_record": "the file is empty"})
        async with contextlib.aclosing(self._recording(part, first)) as chunks:
            return await upload(file_name, chunks)

    async def _recording(self, part: _Part, first: bytes) -> AsyncGenerator[bytes, None]:
        limit = self.config.max_record_bytes
        chunk, total = first, 0
        while chunk:
            total += len(chunk)
            if total > limit:
                raise too_large(f"the recording is over {limit // (1024 * 1024)} MB")
            yield chunk
            chunk = await part.stream.read(CHUNK_SIZE)
        # Core keeps the recording once this ends, so the rest of the form is read first:
        # a body cut off after the recording, or a form that is refused, cancels the upload
        # and leaves nothing behind.
        async for rest in self.parts:
            name, file_name, charset = _part_headers(rest)
            if _is_recording(name, file_name):
                raise invalid_fields({"audio_record": "only one recording per request"})
            await self.read_field(rest, name, file_name, charset)
        self.call = _parse(self.form)


async def _counted(form_parts: AsyncIterable[_Part], limit: int) -> AsyncGenerator[_Part, None]:
    """The parts; more than `limit` of them is 413 (Falcon stops at the same count)."""
    seen = 0
    try:
        async for part in form_parts:
            seen += 1
            if seen > limit:
                break
            yield part
    except MultipartParseError:
        if seen < limit:
            raise
    else:
        if seen <= limit:
            return
    raise too_large(f"the form has more than {limit} parts")
