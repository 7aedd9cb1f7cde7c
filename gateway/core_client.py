"""The gateway's one client of core: its gRPC channel, and every call the resources make on it,
each with its metadata (a token, the request id), its deadline and its errors as HTTP errors.

A call goes with the gateway's own service token (the PBX's requests, sent in batches:
`_command`) or with the caller's token as it came (`_as_caller`, `_caller_stream`); core
decides what a caller may see.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import falcon.asgi
import grpc
import grpc.aio
from google.rpc import status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

import vats_rpc
from gateway import errors, metrics
from gateway.batcher import Batcher
from gateway.config import Config
from gateway.convert import channel_ref
from telephony.v1 import (
    call_pb2,
    call_service_pb2,
    call_service_pb2_grpc,
    directory_service_pb2,
    directory_service_pb2_grpc,
)
from vats_rpc import Metadata

# The rules of a token as metadata, where the gateway's request handling finds them.
from vats_rpc import bearer as bearer
from vats_rpc import is_metadata_safe as is_metadata_safe

log = logging.getLogger("gateway")

# A stub's method: called with a request, metadata and a timeout.
Rpc = Callable[..., Any]

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

# Where the request being answered came from (set for each request by `process_request`):
# every call made for it tells core, whose audit log records it.
CLIENT_ADDRESS: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "client_address", default=None
)
CLIENT_ADDRESS_KEY = "x-client-address"

# What core's health service says of a service (see `CoreClient.health`).
SERVING, NOT_SERVING, UNREACHABLE = "serving", "not_serving", "unreachable"


class CoreClient:
    """Opens the channel on app startup and closes it on shutdown (Falcon middleware hooks)."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._channel: grpc.aio.Channel | None = None
        self._calls: call_service_pb2_grpc.CallServiceStub | None = None
        self._health: health_pb2_grpc.HealthStub | None = None
        self._directory: directory_service_pb2_grpc.DirectoryServiceStub | None = None
        self.batcher = Batcher(
            self._submit_calls, config.core_timeout, observe=metrics.CALL_BATCH.observe
        )
        # What core last said of the service token: when it took it, or why it refused it.
        self._token_accepted_at: float | None = None
        self._token_refusal: str | None = None

    async def process_startup(self, scope: dict[str, Any], event: dict[str, Any]) -> None:
        self.open()

    async def process_shutdown(self, scope: dict[str, Any], event: dict[str, Any]) -> None:
        await self.close()

    async def process_request(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        # The client as uvicorn reports it: the peer, or the one a trusted proxy names.
        CLIENT_ADDRESS.set(req.remote_addr or None)

    def open(self) -> None:
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(
                self._config.core_target, options=CHANNEL_OPTIONS
            )
            self._calls = call_service_pb2_grpc.CallServiceStub(self._channel)
            self._health = health_pb2_grpc.HealthStub(self._channel)
            self._directory = directory_service_pb2_grpc.DirectoryServiceStub(self._channel)

    async def close(self) -> None:
        await self.batcher.close()
        channel, self._channel, self._calls, self._health = self._channel, None, None, None
        self._directory = None
        if channel is not None:
            await channel.close()

    @property
    def calls(self) -> call_service_pb2_grpc.CallServiceStub:
        # Servers that skip the ASGI lifespan still get a channel, on first use.
        self.open()
        assert self._calls is not None
        return self._calls

    @property
    def directory(self) -> directory_service_pb2_grpc.DirectoryServiceStub:
        self.open()
        assert self._directory is not None
        return self._directory

    @property
    def health_service(self) -> health_pb2_grpc.HealthStub:
        self.open()
        assert self._health is not None
        return self._health

    # The PBX's requests, made with the gateway's own token.

    async def create_call(
        self, request: call_service_pb2.CreateCallRequest, request_id: str
    ) -> call_pb2.Call:
        command = call_service_pb2.CallCommand(create=request, request_id=request_id)
        return (await self._command(command)).created.call

    async def update_call(
        self, request: call_service_pb2.UpdateCallRequest, request_id: str
    ) -> call_pb2.Call:
        command = call_service_pb2.CallCommand(update=request, request_id=request_id)
        return (await self._command(command)).updated.call

    async def _command(self, command: call_service_pb2.CallCommand) -> call_service_pb2.CallOutcome:
        """A PBX command, sent to core in the next batch (gateway.batcher)."""
        try:
            outcome = await self.batcher.submit(command)
        except grpc.aio.AioRpcError as error:
            raise self._error(error, service_auth=True) from error
        self._token_accepted()
        if outcome.WhichOneof("outcome") == "error":
            status = errors.CoreStatus.of_status(status_pb2.Status.FromString(outcome.error))
            raise self._refusal(status, service_auth=True)
        return outcome

    def _submit_calls(
        self, commands: Sequence[call_service_pb2.CallCommand], seconds: float
    ) -> Awaitable[call_service_pb2.SubmitCallsResponse]:
        """Starts the batch's call at once (the batcher awaits it)."""
        # The batch goes with the first command's request id (core logs each command's), and
        # with no client address: its requests come from many.
        # Brief: each call comes back with just what the PBX is answered (convert.call_reply).
        request = call_service_pb2.SubmitCallsRequest(commands=commands, brief=True)
        metadata = vats_rpc.token_metadata(self._config.service_token, commands[0].request_id)
        call: Awaitable[call_service_pb2.SubmitCallsResponse] = self.calls.SubmitCalls(
            request, metadata=metadata, timeout=seconds
        )
        return call

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
            await _send_upload(call, metadata, chunks)
            response = await call
        except grpc.aio.AioRpcError as error:
            raise self._error(error, service_auth=True) from error
        except BaseException:
            call.cancel()
            raise
        self._token_accepted()
        return response.recording

    # The callers' requests, made with the caller's token as it came.

    async def list_calls(
        self, request: call_service_pb2.ListCallsRequest, authorization: str | None, request_id: str
    ) -> call_service_pb2.ListCallsResponse:
        return await self._as_caller(self.calls.ListCalls, request, authorization, request_id)

    async def get_call(
        self, request: call_service_pb2.GetCallRequest, authorization: str | None, request_id: str
    ) -> call_service_pb2.GetCallResponse:
        return await self._as_caller(self.calls.GetCall, request, authorization, request_id)

    def watch_cards(
        self,
        request: call_service_pb2.WatchCallCardsRequest,
        authorization: str | None,
        request_id: str,
    ) -> grpc.aio.UnaryStreamCall:
        return self._caller_stream(self.calls.WatchCallCards, request, authorization, request_id)

    async def list_callbacks(
        self,
        request: call_service_pb2.ListCallbacksRequest,
        authorization: str | None,
        request_id: str,
    ) -> call_service_pb2.ListCallbacksResponse:
        return await self._as_caller(self.calls.ListCallbacks, request, authorization, request_id)

    async def mark_called_back(
        self,
        request: call_service_pb2.MarkCalledBackRequest,
        authorization: str | None,
        request_id: str,
    ) -> call_service_pb2.MarkCalledBackResponse:
        return await self._as_caller(self.calls.MarkCalledBack, request, authorization, request_id)

    async def get_board(
        self, request: call_service_pb2.GetBoardRequest, authorization: str | None, request_id: str
    ) -> call_service_pb2.GetBoardResponse:
        return await self._as_caller(self.calls.GetBoard, request, authorization, request_id)

    def watch_board(
        self,
        request: call_service_pb2.WatchBoardRequest,
        authorization: str | None,
        request_id: str,
    ) -> grpc.aio.UnaryStreamCall:
        return self._caller_stream(self.calls.WatchBoard, request, authorization, request_id)

    # Stream tickets and the audit log (DirectoryService), with the caller's token.

    async def issue_stream_ticket(
        self, authorization: str | None, request_id: str
    ) -> directory_service_pb2.IssueStreamTicketResponse:
        request = directory_service_pb2.IssueStreamTicketRequest()
        return await self._as_caller(
            self.directory.IssueStreamTicket, request, authorization, request_id
        )

    async def list_audit_entries(
        self,
        request: directory_service_pb2.ListAuditEntriesRequest,
        authorization: str | None,
        request_id: str,
    ) -> directory_service_pb2.ListAuditEntriesResponse:
        return await self._as_caller(
            self.directory.ListAuditEntries, request, authorization, request_id
        )

    def export_audit_entries(
        self,
        request: directory_service_pb2.ExportAuditEntriesRequest,
        authorization: str | None,
        request_id: str,
    ) -> grpc.aio.UnaryStreamCall:
        return self._caller_stream(
            self.directory.ExportAuditEntries, request, authorization, request_id
        )

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
            else caller_metadata(authorization, request_id)
        )
        return self.calls.DownloadRecord(
            request, metadata=metadata, timeout=self._config.record_timeout
        )

    # What every call shares: metadata, deadlines, errors.

    def service_metadata(self, request_id: str) -> Metadata:
        return (
            *vats_rpc.token_metadata(self._config.service_token, request_id),
            *_client_address(),
        )

    async def _as_caller(
        self, rpc: Rpc, request: Any, authorization: str | None, request_id: str
    ) -> Any:
        """A unary call with the caller's token and the unary deadline."""
        metadata = caller_metadata(authorization, request_id)
        return await self._unary(rpc, request, metadata, service_auth=False)

    async def _unary(
        self, rpc: Rpc, request: Any, metadata: Metadata, *, service_auth: bool
    ) -> Any:
        try:
            return await rpc(request, metadata=metadata, timeout=self._config.core_timeout)
        except grpc.aio.AioRpcError as error:
            raise self._error(error, service_auth=service_auth) from error

    def _caller_stream(
        self, rpc: Rpc, request: Any, authorization: str | None, request_id: str
    ) -> grpc.aio.UnaryStreamCall:
        """A server stream with the caller's token and the stream deadline; its failures
        come when it is read (turn them into HTTP errors with `rpc_error`)."""
        return rpc(
            request,
            metadata=caller_metadata(authorization, request_id),
            timeout=self._config.watch_timeout,
        )

    def rpc_error(self, error: grpc.RpcError, *, service_auth: bool = False) -> errors.GatewayError:
        """The HTTP error for a failed call (service_auth: made with the gateway's token)."""
        return self._error(error, service_auth=service_auth)

    def _error(self, error: grpc.RpcError, *, service_auth: bool) -> errors.GatewayError:
        return self._refusal(errors.CoreStatus.of(error), service_auth=service_auth)

    def _refusal(self, status: errors.CoreStatus, *, service_auth: bool) -> errors.GatewayError:
        """The HTTP error for what core said; a refused service token is noted for readiness."""
        if service_auth and errors.refuses_credentials(status):
            self._token_refused(status)
        return errors.from_core(
            status, service_auth=service_auth, retry_after=self._config.retry_after
        )

    # Health and readiness.

    async def healthy(self) -> bool:
        return await self.health() == SERVING

    async def health(self, service: str = "") -> str:
        """What core's health service says of `service` ("" for core as a whole): SERVING,
        NOT_SERVING (also for a service it does not know) or UNREACHABLE."""
        try:
            reply = await self.health_service.Check(
                health_pb2.HealthCheckRequest(service=service),
                timeout=self._config.health_timeout,
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return NOT_SERVING
            log.warning("core health check failed: %s", error.code().name)
            return UNREACHABLE
        return SERVING if reply.status == health_pb2.HealthCheckResponse.SERVING else NOT_SERVING

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


def caller_metadata(authorization: str | None, request_id: str) -> Metadata:
    """The metadata of a call made with the caller's credentials."""
    return (*vats_rpc.metadata(authorization, request_id), *_client_address())


def _client_address() -> Metadata:
    address = CLIENT_ADDRESS.get()
    return ((CLIENT_ADDRESS_KEY, address),) if address and is_metadata_safe(address) else ()


async def _send_upload(
    call: grpc.aio.StreamUnaryCall,
    metadata: call_service_pb2.UploadRecordRequest.Metadata,
    chunks: AsyncIterator[bytes],
) -> None:
    try:
        await call.write(call_service_pb2.UploadRecordRequest(metadata=metadata))
        async for chunk in chunks:
            await call.write(call_service_pb2.UploadRecordRequest(chunk=chunk))
        await call.done_writing()
    except (asyncio.InvalidStateError, grpc.aio.AioRpcError):
        # Core ended the call before the last chunk (a refused format, say). A write racing
        # that end reports a local INTERNAL error; the status core sent is the one raised by
        # awaiting the call.
        pass
