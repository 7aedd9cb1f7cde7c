"""The gateway's one gRPC channel to core, and the calls it makes on it (each with a deadline)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway import errors
from gateway.config import Config
from gateway.convert import channel_ref
from telephony.v1 import call_pb2, call_service_pb2, call_service_pb2_grpc

log = logging.getLogger("gateway")

Metadata = tuple[tuple[str, str], ...]

# Reconnect to a restarted core within about a second, not after gRPC's default
# backoff of up to two minutes; requests meanwhile get 503 with Retry-After.
CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
)


# How long core's acceptance of the service token stands before readiness asks again.
TOKEN_RECHECK_SECONDS = 30.0


def bearer(token: str) -> str:
    return f"Bearer {token}"


def is_metadata_safe(value: str) -> bool:
    """gRPC refuses metadata values outside printable ASCII; such tokens are no tokens."""
    return value.isascii() and value.isprintable()


class CoreClient:
    """Opens the channel on app startup and closes it on shutdown (Falcon middleware hooks)."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._channel: grpc.aio.Channel | None = None
        self._calls: call_service_pb2_grpc.CallServiceStub | None = None
        # What core last said of the service token: when it took it, or why it refused it.
        self._token_accepted_at: float | None = None
        self._token_refusal: str | None = None

    async def process_startup(self, scope: dict[str, Any], event: dict[str, Any]) -> None:
        self.open()

    async def process_shutdown(self, scope: dict[str, Any], event: dict[str, Any]) -> None:
        await self.close()

    def open(self) -> None:
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(
                self._config.core_target, options=CHANNEL_OPTIONS
            )
            self._calls = call_service_pb2_grpc.CallServiceStub(self._channel)

    async def close(self) -> None:
        channel, self._channel, self._calls = self._channel, None, None
        if channel is not None:
            await channel.close()

    @property
    def channel(self) -> grpc.aio.Channel:
        # Servers that skip the ASGI lifespan still get a channel, on first use.
        self.open()
        assert self._channel is not None
        return self._channel

    @property
    def calls(self) -> call_service_pb2_grpc.CallServiceStub:
        self.open()
        assert self._calls is not None
        return self._calls

    def service_metadata(self, request_id: str) -> Metadata:
        token = self._config.service_token
        auth = (("authorization", bearer(token)),) if token else ()
        return (*auth, ("x-request-id", request_id))

    @staticmethod
    def caller_metadata(authorization: str | None, request_id: str) -> Metadata:
        auth = (("authorization", authorization),) if authorization else ()
        return (*auth, ("x-request-id", request_id))

    def _error(self, error: grpc.RpcError, *, service_auth: bool) -> errors.GatewayError:
        status = errors.CoreStatus.of(error)
        if service_auth and errors.refuses_credentials(status):
            self._token_refused(status)
        return errors.from_core(
            status, service_auth=service_auth, retry_after=self._config.retry_after
        )

    def _token_accepted(self) -> None:
        self._token_accepted_at, self._token_refusal = time.monotonic(), None

    def _token_refused(self, status: errors.CoreStatus) -> None:
        self._token_accepted_at = None
        if not self._config.service_token:
            self._token_refusal = "the gateway has no service token: set VATS_SERVICE_TOKEN"
        else:
            self._token_refusal = (
                f"core refuses the gateway's service token ({status.message or 'refused'}):"
                " check VATS_SERVICE_TOKEN"
            )

    async def service_token_refusal(self, request_id: str) -> str | None:
        """Why core refuses the gateway's service token; None while it takes it (or when
        it cannot tell now: readiness then rests on core's health alone).

        Asks core at most every TOKEN_RECHECK_SECONDS while the token is taken, at every
        call while it is refused; PBX requests tell the same in passing.
        """
        accepted_at = self._token_accepted_at
        if accepted_at is not None and time.monotonic() - accepted_at < TOKEN_RECHECK_SECONDS:
            return None
        refused_before = self._token_refusal is not None
        try:
            # An empty update: core checks the token and its role (service) before the
            # request, and then refuses the request itself, changing nothing.
            await self.calls.UpdateCall(
                call_service_pb2.UpdateCallRequest(),
                metadata=self.service_metadata(request_id),
                timeout=self._config.health_timeout,
            )
        except grpc.aio.AioRpcError as error:
            status = errors.CoreStatus.of(error)
            if errors.refuses_credentials(status):
                self._token_refused(status)
                if not refused_before:
                    log.error("readiness: %s", self._token_refusal)
            elif status.code == grpc.StatusCode.INVALID_ARGUMENT:
                self._token_accepted()
            return self._token_refusal
        self._token_accepted()
        return None

    async def create_call(
        self, request: call_service_pb2.CreateCallRequest, request_id: str
    ) -> call_pb2.Call:
        response = await self._as_service(self.calls.CreateCall, request, request_id)
        return response.call

    async def update_call(
        self, request: call_service_pb2.UpdateCallRequest, request_id: str
    ) -> call_pb2.Call:
        response = await self._as_service(self.calls.UpdateCall, request, request_id)
        return response.call

    async def _as_service(self, method: Any, request: Any, request_id: str) -> Any:
        """A unary call with the gateway's own token and the unary deadline."""
        try:
            response = await method(
                request,
                metadata=self.service_metadata(request_id),
                timeout=self._config.core_timeout,
            )
        except grpc.aio.AioRpcError as error:
            raise self._error(error, service_auth=True) from error
        self._token_accepted()
        return response

    async def upload_record(
        self, channel_key: str, file_name: str, chunks: AsyncIterator[bytes], request_id: str
    ) -> call_pb2.Recording:
        """Streams chunks to core as they come; an error raised by `chunks` cancels the upload."""
        call = self.calls.UploadRecord(
            metadata=self.service_metadata(request_id), timeout=self._config.record_timeout
        )
        metadata = call_service_pb2.UploadRecordRequest.Metadata(
            channel=channel_ref(channel_key), file_name=file_name
        )
        try:
            try:
                await call.write(call_service_pb2.UploadRecordRequest(metadata=metadata))
                async for chunk in chunks:
                    await call.write(call_service_pb2.UploadRecordRequest(chunk=chunk))
                await call.done_writing()
            except (asyncio.InvalidStateError, grpc.aio.AioRpcError):
                # Core ended the call before the last chunk (a refused format, say).
                # A write racing that end reports a local INTERNAL error; the status
                # core sent is the one raised by awaiting the call.
                pass
            response = await call
        except grpc.aio.AioRpcError as error:
            raise self._error(error, service_auth=True) from error
        except BaseException:
            call.cancel()
            raise
        self._token_accepted()
        return response.recording

    def download_record(
        self,
        request: call_service_pb2.DownloadRecordRequest,
        authorization: str | None,
        request_id: str,
    ) -> grpc.aio.UnaryStreamCall:
        """With a signed link (expires, signature) the gateway vouches with its own token
        and core checks the signature; otherwise the caller's token decides."""
        signed = bool(request.expires or request.signature)
        metadata = (
            self.service_metadata(request_id)
            if signed
            else self.caller_metadata(authorization, request_id)
        )
        return self.calls.DownloadRecord(
            request, metadata=metadata, timeout=self._config.record_timeout
        )

    def watch_cards(
        self,
        request: call_service_pb2.WatchCallCardsRequest,
        authorization: str | None,
        request_id: str,
    ) -> grpc.aio.UnaryStreamCall:
        return self.calls.WatchCallCards(
            request,
            metadata=self.caller_metadata(authorization, request_id),
            timeout=self._config.watch_timeout,
        )

    def rpc_error(self, error: grpc.RpcError, *, service_auth: bool = False) -> errors.GatewayError:
        """The HTTP error for a failed call (service_auth: made with the gateway's token)."""
        return self._error(error, service_auth=service_auth)

    async def healthy(self) -> bool:
        stub = health_pb2_grpc.HealthStub(self.channel)
        try:
            response = await stub.Check(
                health_pb2.HealthCheckRequest(service=""), timeout=self._config.health_timeout
            )
        except grpc.aio.AioRpcError as error:
            log.warning("core health check failed: %s", error.code().name)
            return False
        return bool(response.status == health_pb2.HealthCheckResponse.SERVING)
