"""Reads a PBX request body of any accepted type into a RawForm; a recording is streamed on."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import falcon
import falcon.asgi
from falcon.asgi.multipart import BodyPart, MultipartForm, MultipartParseError

from gateway import forms
from gateway.config import Config
from gateway.errors import GatewayError, invalid_fields

# Recordings travel to core in chunks of this size (the last one may be shorter).
CHUNK_SIZE = 64 * 1024

MULTIPART = "multipart/form-data"
URLENCODED = "application/x-www-form-urlencoded"
JSON = "application/json"
ACCEPTED = (MULTIPART, URLENCODED, JSON)

# Given the recording's file name and its bytes, stores it and returns its id.
Uploader = Callable[[str, AsyncIterator[bytes]], Awaitable[str]]


@dataclass(frozen=True)
class CallBody:
    form: forms.RawForm
    recording_id: str = ""


def bad_request(message: str) -> GatewayError:
    return GatewayError(400, "bad_request", message)


def too_large(message: str) -> GatewayError:
    return GatewayError(413, "payload_too_large", message)


def unsupported(message: str) -> GatewayError:
    return GatewayError(415, "unsupported_media_type", message)


async def read_call_body(req: falcon.asgi.Request, config: Config, upload: Uploader) -> CallBody:
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
            return CallBody(forms.from_json(body, charset, config.max_form_parts))
        return CallBody(forms.from_urlencoded(body, charset))
    except forms.UnparsableBody as err:
        raise bad_request(str(err)) from None
    except forms.UnsupportedCharset as err:
        raise unsupported(str(err)) from None
    except forms.TooManyFields as err:
        raise too_large(str(err)) from None


async def _read_limited(req: falcon.asgi.Request, limit: int) -> bytes:
    if req.content_length is not None and req.content_length > limit:
        raise too_large(f"the body is over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in req.stream:
        size += len(chunk)
        if size > limit:
            raise too_large(f"the body is over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _read_multipart(req: falcon.asgi.Request, config: Config, upload: Uploader) -> CallBody:
    form_parts: MultipartForm = await req.get_media()
    async with contextlib.aclosing(_counted(form_parts, config.max_form_parts)) as parts:
        return await _read_parts(parts, config, upload)


async def _read_parts(parts: AsyncIterator[BodyPart], config: Config, upload: Uploader) -> CallBody:
    form = forms.RawForm()
    recording_id = ""
    budget = config.max_body_bytes
    async for part in parts:
        try:
            name, file_name = part.name or "", part.filename
            charset = falcon.parse_header(part.content_type)[1].get("charset") or "utf-8"
        except (UnicodeError, ValueError):
            raise bad_request("a form part has unreadable headers") from None
        try:
            charset = forms.check_charset(charset)
        except forms.UnsupportedCharset as err:
            raise unsupported(str(err)) from None
        parsed = forms.field_name(name)
        if file_name is not None and parsed is not None and parsed[0] == "audio_record":
            if recording_id:
                raise invalid_fields({"audio_record": "only one recording per request"})
            recording_id = await _upload(part, file_name, config.max_record_bytes, upload)
            continue
        if file_name is not None:
            # Some other file: not ours to keep, but it counts against the body limit.
            async for chunk in part.stream:
                budget -= len(chunk)
                if budget < 0:
                    raise too_large(f"the form is over {config.max_body_bytes} bytes")
            continue
        data = await part.stream.read(config.max_field_bytes + 1)
        if len(data) > config.max_field_bytes:
            raise too_large(f"form field {name!r} is over {config.max_field_bytes} bytes")
        budget -= len(data)
        if budget < 0:
            raise too_large(f"the form is over {config.max_body_bytes} bytes")
        try:
            form.add(name, data.decode(charset))
        except UnicodeError:
            raise bad_request(f"form field {name!r} is not valid {charset} text") from None
    return CallBody(form, recording_id)


async def _counted(form_parts: MultipartForm, limit: int) -> AsyncGenerator[BodyPart, None]:
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


async def _upload(part: BodyPart, file_name: str, limit: int, upload: Uploader) -> str:
    first = await part.stream.read(CHUNK_SIZE)
    if not first:
        raise invalid_fields({"audio_record": "the file is empty"})
    return await upload(file_name, _chunks(part, first, limit))


async def _chunks(part: BodyPart, first: bytes, limit: int) -> AsyncIterator[bytes]:
    chunk, total = first, 0
    while chunk:
        total += len(chunk)
        if total > limit:
            raise too_large(f"the recording is over {limit // (1024 * 1024)} MB")
        yield chunk
        chunk = await part.stream.read(CHUNK_SIZE)
