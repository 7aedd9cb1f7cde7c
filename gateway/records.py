"""Recording downloads: GET /api/v2/telephony/records/{recording_id}, Range-aware, streamed."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator

import falcon.asgi
import grpc
import grpc.aio

from gateway import ranges
from gateway.auth import caller_authorization
from gateway.core_client import CoreClient
from gateway.errors import GatewayError
from telephony.v1 import call_pb2, call_service_pb2

log = logging.getLogger("gateway")

_EXPIRES = re.compile(r"[0-9]{1,18}")
# The id of the token a signed link was made for (links made before links were bound name none).
_TOKEN_ID = re.compile(r"[A-Za-z0-9_-]{0,64}")
# Recording ids are short tokens; anything else names no recording (and would only
# make core echo it back in an oversized error).
_RECORDING_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


class _OutOfRange(Exception):
    pass


def _invalid_link() -> GatewayError:
    return GatewayError(403, "permission_denied", "the link is invalid or has expired")


def _core_broke_protocol() -> GatewayError:
    return GatewayError(502, "core_error", "core sent no recording metadata")


def _unsatisfiable(size: int) -> GatewayError:
    return GatewayError(
        416,
        "range_not_satisfiable",
        f"the recording has {size} bytes",
        headers={"Content-Range": ranges.unsatisfied_range(size)},
    )


def _read_link(req: falcon.asgi.Request, request: call_service_pb2.DownloadRecordRequest) -> None:
    """A signed link's expiry, token and signature, passed on for core to check."""
    expires = req.get_param("expires") or ""
    signature = req.get_param("signature") or ""
    token_id = req.get_param("token") or ""
    if not (expires or signature or token_id):
        return
    if not (signature and _EXPIRES.fullmatch(expires) and _TOKEN_ID.fullmatch(token_id)):
        raise _invalid_link()
    request.expires, request.signature, request.token_id = int(expires), signature, token_id


class RecordsResource:
    def __init__(self, core: CoreClient) -> None:
        self._core = core

    async def on_get(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, recording_id: str
    ) -> None:
        request_id: str = req.context.request_id
        authorization = caller_authorization(req)
        if not _RECORDING_ID.fullmatch(recording_id):
            raise GatewayError(404, "not_found", "no such recording")
        request = call_service_pb2.DownloadRecordRequest(recording_id=recording_id)
        _read_link(req, request)
        wanted = ranges.parse_range(req.get_header("Range"))
        if wanted is not None and wanted.offset is not None:
            request.offset, request.length = wanted.offset, wanted.length

        try:
            call, recording = await self._open(request, authorization, request_id)
        except _OutOfRange:
            raise _unsatisfiable(await self._size(request, authorization, request_id)) from None
        size = recording.size_bytes
        start, end = 0, size - 1
        if wanted is not None:
            try:
                start, end = wanted.resolve(size)
            except ranges.RangeNotSatisfiable:
                call.cancel()
                raise _unsatisfiable(size) from None
            if start != request.offset:
                # A suffix range: only now is its offset known.
                call.cancel()
                request.offset, request.length = start, end - start + 1
                call, _ = await self._open(request, authorization, request_id)
            resp.status = falcon.HTTP_206
            resp.set_header("Content-Range", ranges.content_range(start, end, size))
        length = max(0, end - start + 1)
        resp.content_type = recording.content_type or "application/octet-stream"
        resp.content_length = length
        resp.set_header("Accept-Ranges", "bytes")
        resp.stream = _body(call, length, recording_id)

    async def _open(
        self,
        request: call_service_pb2.DownloadRecordRequest,
        authorization: str | None,
        request_id: str,
    ) -> tuple[grpc.aio.UnaryStreamCall, call_pb2.Recording]:
        """Starts the download and reads its first message, the recording's metadata."""
        call = self._core.download_record(request, authorization, request_id)
        try:
            first = await call.read()
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.OUT_OF_RANGE:
                raise _OutOfRange from error
            # A signed link travels with the gateway's token: core refusing that token is
            # our misconfiguration, while a refused signature is the caller's 403.
            misconfigured = bool(request.signature) and (
                error.code() == grpc.StatusCode.UNAUTHENTICATED
            )
            raise self._core.rpc_error(error, service_auth=misconfigured) from error
        if first is grpc.aio.EOF or first.WhichOneof("part") != "recording":
            call.cancel()
            raise _core_broke_protocol()
        return call, first.recording

    async def _size(
        self,
        request: call_service_pb2.DownloadRecordRequest,
        authorization: str | None,
        request_id: str,
    ) -> int:
        whole = call_service_pb2.DownloadRecordRequest()
        whole.CopyFrom(request)
        whole.offset, whole.length = 0, 0
        call, recording = await self._open(whole, authorization, request_id)
        call.cancel()
        return recording.size_bytes


async def _body(
    call: grpc.aio.UnaryStreamCall, length: int, recording_id: str
) -> AsyncIterator[bytes]:
    sent = 0
    try:
        while sent < length:
            message = await call.read()
            if message is grpc.aio.EOF:
                break
            if message.WhichOneof("part") != "chunk":
                continue
            data = message.chunk[: length - sent]
            sent += len(data)
            yield data
    except grpc.aio.AioRpcError as error:
        log.warning("download of recording %s broke off: %s", recording_id, error.code().name)
    finally:
        call.cancel()
    if sent < length:
        # Headers are gone already: a short body is the only signal left to send.
        log.warning("recording %s ended after %d of %d bytes", recording_id, sent, length)
