"""A stand-in for core: a real grpc.aio server whose CallService replies as a test tells it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Self

import grpc
import grpc.aio
import httpx
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2_grpc
from grpc_status import rpc_status

from telephony.v1 import call_pb2, call_service_pb2, call_service_pb2_grpc

SERVICE_TOKEN = "service-secret"
EMPLOYEE_TOKEN = "anna-secret"
RECORDING = bytes(range(256)) * 1000  # 256000 bytes


@dataclass
class Failure:
    """What a fake RPC should fail with."""

    code: grpc.StatusCode
    reason: str = ""
    message: str = "refused"
    fields: dict[str, str] = field(default_factory=dict)


def rich_status(failure: Failure) -> grpc.Status:
    return rpc_status.to_status(status_message(failure))


def status_message(failure: Failure) -> status_pb2.Status:
    status = status_pb2.Status(code=failure.code.value[0], message=failure.message)
    if failure.reason:
        info = any_pb2.Any()
        info.Pack(error_details_pb2.ErrorInfo(reason=failure.reason, domain="telephony.v1"))
        status.details.append(info)
    if failure.fields:
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=k, description=v)
                for k, v in failure.fields.items()
            ]
        )
        detail = any_pb2.Any()
        detail.Pack(bad_request)
        status.details.append(detail)
    return status


# What fails a SubmitCalls as a whole rather than each of its commands.
BATCH_FAILURES = frozenset(
    {
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.CANCELLED,
    }
)


def sample_call(**overrides: Any) -> call_pb2.Call:
    call = call_pb2.Call(
        call_id=725,
        channel_id=1,
        state=call_pb2.Call.STATE_RINGING,
        direction=call_pb2.DIRECTION_OUTGOING,
        phone="777777777",
        ticket=call_pb2.Ticket(ticket_id=8592),
    )
    for name, value in overrides.items():
        if isinstance(value, call_pb2.Recording):
            getattr(call, name).CopyFrom(value)
        else:
            setattr(call, name, value)
    return call


def sample_card(call_id: int = 725) -> call_pb2.CallCard:
    card = call_pb2.CallCard(
        call_id=call_id,
        ticket_id=8592,
        channel_id=1,
        channel_name="+7 495 000-00-00",
        direction=call_pb2.DIRECTION_INCOMING,
        phone="+74951234567",
        phone_display="+7 495 123-45-67",
        contact_name="Ivan",
        state=call_pb2.Call.STATE_RINGING,
        user_name="",
        recording_path="",
    )
    card.create_time.FromJsonString("2025-01-02T03:04:05Z")
    return card


class FakeCallService(call_service_pb2_grpc.CallServiceServicer):
    def __init__(self) -> None:
        self.received: list[Any] = []
        self.metadata: list[dict[str, str]] = []
        self.reply = sample_call()
        self.failure: Failure | None = None
        self.upload_failure: Failure | None = None
        self.upload_chunks: list[int] = []
        # Whether each SubmitCalls asked for brief outcomes.
        self.brief_batches: list[bool] = []
        self.upload_metadata: list[call_service_pb2.UploadRecordRequest.Metadata] = []
        self.download_requests: list[call_service_pb2.DownloadRecordRequest] = []
        self.card_events: asyncio.Queue[call_service_pb2.CallCardEvent] = asyncio.Queue()
        self.watch_requests: list[call_service_pb2.WatchCallCardsRequest] = []
        self.watch_ended = asyncio.Event()
        self.delay = 0.0

    def _note(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        self.received.append(request)
        self.metadata.append(dict(context.invocation_metadata() or ()))

    async def _maybe_fail(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.failure is not None:
            await context.abort_with_status(rich_status(self.failure))

    async def CreateCall(
        self, request: call_service_pb2.CreateCallRequest, context: Any
    ) -> call_service_pb2.CreateCallResponse:
        self._note(request, context)
        await self._maybe_fail(context)
        return call_service_pb2.CreateCallResponse(call=self.reply, created=True)

    async def UpdateCall(
        self, request: call_service_pb2.UpdateCallRequest, context: Any
    ) -> call_service_pb2.UpdateCallResponse:
        self._note(request, context)
        await self._maybe_fail(context)
        return call_service_pb2.UpdateCallResponse(call=self.reply)

    async def SubmitCalls(
        self, request: call_service_pb2.SubmitCallsRequest, context: Any
    ) -> call_service_pb2.SubmitCallsResponse:
        """Each command as CreateCall or UpdateCall would answer it: a failure of the call
        itself (the token, the deadline, core's own trouble) fails the whole batch, any
        other refuses each command alone, as core does."""
        self.brief_batches.append(request.brief)
        commands = list(request.commands)
        for command in commands:
            self._note(getattr(command, str(command.WhichOneof("command"))), context)
        failure = self.failure
        if failure is not None and failure.code in BATCH_FAILURES:
            await self._maybe_fail(context)
        elif self.delay:
            await asyncio.sleep(self.delay)
        return call_service_pb2.SubmitCallsResponse(
            outcomes=[self._outcome(command, failure) for command in commands]
        )

    def _outcome(
        self, command: call_service_pb2.CallCommand, failure: Failure | None
    ) -> call_service_pb2.CallOutcome:
        if failure is not None:
            return call_service_pb2.CallOutcome(error=status_message(failure).SerializeToString())
        if command.HasField("create"):
            created = call_service_pb2.CreateCallResponse(call=self.reply, created=True)
            return call_service_pb2.CallOutcome(created=created)
        return call_service_pb2.CallOutcome(
            updated=call_service_pb2.UpdateCallResponse(call=self.reply)
        )

    async def UploadRecord(
        self, request_iterator: AsyncIterator[call_service_pb2.UploadRecordRequest], context: Any
    ) -> call_service_pb2.UploadRecordResponse:
        self.metadata.append(dict(context.invocation_metadata() or ()))
        async for message in request_iterator:
            if message.WhichOneof("part") == "metadata":
                self.upload_metadata.append(message.metadata)
            else:
                self.upload_chunks.append(len(message.chunk))
        # Refusing only once the client is done writing: a status that arrives while a
        # client write is in flight can be replaced by a local INTERNAL error in grpc.aio.
        if self.upload_failure is not None:
            await context.abort_with_status(rich_status(self.upload_failure))
        return call_service_pb2.UploadRecordResponse(
            recording=call_pb2.Recording(recording_id="rec-1", size_bytes=sum(self.upload_chunks))
        )

    async def DownloadRecord(
        self, request: call_service_pb2.DownloadRecordRequest, context: Any
    ) -> AsyncIterator[call_service_pb2.DownloadRecordResponse]:
        self.download_requests.append(request)
        self.metadata.append(dict(context.invocation_metadata() or ()))
        token = self.metadata[-1].get("authorization")
        if token not in (f"Bearer {EMPLOYEE_TOKEN}", f"Bearer {SERVICE_TOKEN}"):
            await context.abort_with_status(
                rich_status(Failure(grpc.StatusCode.UNAUTHENTICATED, "unauthenticated"))
            )
        signed = bool(request.signature or request.expires)
        if signed and (token != f"Bearer {SERVICE_TOKEN}" or request.signature != "good"):
            await context.abort_with_status(
                rich_status(Failure(grpc.StatusCode.PERMISSION_DENIED, "permission_denied"))
            )
        if request.recording_id != "rec-1":
            await context.abort_with_status(
                rich_status(Failure(grpc.StatusCode.NOT_FOUND, "not_found", "no such recording"))
            )
        if request.offset >= len(RECORDING):
            await context.abort_with_status(
                rich_status(Failure(grpc.StatusCode.OUT_OF_RANGE, "range_not_satisfiable"))
            )
        yield call_service_pb2.DownloadRecordResponse(
            recording=call_pb2.Recording(
                recording_id="rec-1", content_type="audio/mpeg", size_bytes=len(RECORDING)
            )
        )
        end = request.offset + request.length if request.length else len(RECORDING)
        data = RECORDING[request.offset : end]
        for start in range(0, len(data), 65536):
            yield call_service_pb2.DownloadRecordResponse(chunk=data[start : start + 65536])

    async def WatchCallCards(
        self, request: call_service_pb2.WatchCallCardsRequest, context: Any
    ) -> AsyncIterator[call_service_pb2.CallCardEvent]:
        self.watch_requests.append(request)
        md = dict(context.invocation_metadata() or ())
        if md.get("authorization") != f"Bearer {EMPLOYEE_TOKEN}":
            await context.abort_with_status(
                rich_status(Failure(grpc.StatusCode.UNAUTHENTICATED, "unauthenticated", "who?"))
            )
        async for event in self.queued_card_events(context):
            yield event

    async def queued_card_events(
        self, context: Any
    ) -> AsyncIterator[call_service_pb2.CallCardEvent]:
        """An accepted card stream: the events a test queues, until the stream ends."""
        await context.send_initial_metadata(())
        try:
            while True:
                yield await self.card_events.get()
        finally:
            self.watch_ended.set()


class FakeCore:
    def __init__(self, calls: FakeCallService | None = None) -> None:
        # A test's own CallService (a subclass answering more calls) replaces the plain one.
        self.calls = calls or FakeCallService()
        self.health = health.aio.HealthServicer()
        self.server = grpc.aio.server()
        call_service_pb2_grpc.add_CallServiceServicer_to_server(self.calls, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        await self.server.start()

    async def stop(self) -> None:
        await self.server.stop(grace=None)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


def multipart(
    fields: list[tuple[str, str]], files: list[tuple[str, str, bytes]] | None = None
) -> tuple[bytes, str]:
    """A multipart/form-data body (and its content type) built the way HTTP clients build it."""
    request = httpx.Request(
        "POST",
        "http://gw.test/",
        data=dict(fields) if fields else None,
        files=[(name, (file_name, data)) for name, file_name, data in files or []] or None,
    )
    return request.read(), request.headers["content-type"]


def raw_multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "b0und") -> bytes:
    """Parts in exactly the given order: (name, file name or None, content)."""
    out = b""
    for name, file_name, content in parts:
        disposition = f'form-data; name="{name}"'
        if file_name is not None:
            disposition += f'; filename="{file_name}"'
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n".encode()
        if file_name is not None:
            out += b"Content-Type: application/octet-stream\r\n"
        out += b"\r\n" + content + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()
