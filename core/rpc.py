"""The telephony.v1 gRPC servicers: thin adapters from messages to the use cases.

Each unary method authenticates, runs its work on the storage executor (one
hop, so the store never blocks the event loop) and converts the result. Domain
errors become gRPC statuses in one table, with google.rpc.ErrorInfo and
BadRequest details that the gateway maps to HTTP.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from core import convert, domain, errors
from core.app import UseCases
from core.app.admin import ChannelRef
from core.app.queries import CallFilter
from core.auth import Principal, Role
from core.events import EventStreams
from core.model import Department, Employee, Group, Recording
from core.recordings import LinkSigner
from core.recordings.library import RecordingLibrary, Upload
from telephony.v1 import (
    call_service_pb2,
    call_service_pb2_grpc,
    channel_service_pb2,
    channel_service_pb2_grpc,
    directory_service_pb2,
    directory_service_pb2_grpc,
)
from vocabulary import CARD_EVENT

T = TypeVar("T")

ERROR_DOMAIN = "telephony.v1"

STATUS_CODES: dict[type[errors.DomainError], grpc.StatusCode] = {
    errors.InvalidRequest: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.FinalStatus: grpc.StatusCode.FAILED_PRECONDITION,
    errors.IdempotencyConflict: grpc.StatusCode.ABORTED,
    errors.UnsupportedMedia: grpc.StatusCode.INVALID_ARGUMENT,
    errors.TooLarge: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.Conflict: grpc.StatusCode.ABORTED,
    errors.RangeNotSatisfiable: grpc.StatusCode.OUT_OF_RANGE,
    errors.ContactInUse: grpc.StatusCode.FAILED_PRECONDITION,
}


def error_status(error: errors.DomainError) -> grpc.Status:
    code = STATUS_CODES.get(type(error), grpc.StatusCode.INVALID_ARGUMENT)
    status = status_pb2.Status(code=code.value[0], message=error.message)
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN))
    status.details.append(info)
    if error.fields:
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=name, description=text)
                for name, text in sorted(error.fields.items())
            ]
        )
        detail = any_pb2.Any()
        detail.Pack(bad_request)
        status.details.append(detail)
    return rpc_status.to_status(status)


async def abort(context: grpc.aio.ServicerContext[Any, Any], error: errors.DomainError) -> NoReturn:
    await context.abort_with_status(error_status(error))
    raise AssertionError("abort_with_status returned")  # pragma: no cover


def bearer_token(context: grpc.aio.ServicerContext[Any, Any]) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


class StorageRunner:
    """Runs blocking storage work off the event loop, on a pool of worker threads."""

    def __init__(self, workers: int, test_delay: float = 0.0) -> None:
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="storage"
        )
        # Seconds added to each request's storage work by the test suite, as a slow
        # database would add them (VATS_TEST_STORAGE_DELAY_MS).
        self.test_delay = test_delay

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def shutdown(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=False)


class _Abandoned(Exception):
    """The caller's deadline passed while the job waited for a storage thread."""


class Handler:
    """What every servicer shares: authentication and the error table."""

    def __init__(
        self, app: UseCases, runner: StorageRunner, links: convert.LinkMaker | None
    ) -> None:
        self.app = app
        self.runner = runner
        self.links = links

    async def call(
        self,
        context: grpc.aio.ServicerContext[Any, Any],
        roles: tuple[Role, ...],
        work: Callable[[Principal], T],
    ) -> T:
        token = bearer_token(context)
        remaining = context.time_remaining()
        deadline = None if remaining is None else time.monotonic() + remaining

        def job() -> T:
            # Under load jobs queue for the storage thread: one whose caller has given up
            # is skipped, so that it is not applied after its caller was told it failed.
            if deadline is not None and time.monotonic() >= deadline:
                raise _Abandoned
            if self.runner.test_delay:
                time.sleep(self.runner.test_delay)
            principal = self.app.tokens.authenticate(token)
            principal.require(*roles)
            return work(principal)

        try:
            return await self.runner.run(job)
        except errors.DomainError as error:
            await abort(context, error)
        except _Abandoned:
            await context.abort(
                grpc.StatusCode.DEADLINE_EXCEEDED, "the deadline passed before the work began"
            )
            raise AssertionError("abort returned") from None  # pragma: no cover

    async def principal(
        self, context: grpc.aio.ServicerContext[Any, Any], roles: tuple[Role, ...]
    ) -> Principal:
        return await self.call(context, roles, lambda p: p)


def _channel_ref(message: call_service_pb2.ChannelRef) -> ChannelRef:
    which = message.WhichOneof("ref")
    if which == "channel_key":
        return ChannelRef(key=message.channel_key)
    if which == "channel_id":
        return ChannelRef(channel_id=message.channel_id)
    raise errors.InvalidRequest.of({"channel": "channel_key or channel_id is required"})


def _status(state: int, field: str = "call_status") -> domain.Status | None:
    status = convert.status_from_proto(state)
    if status is None and state != 0:
        raise errors.InvalidRequest.of({field: f"unknown status {state}"})
    return status


def _direction(value: int) -> domain.Direction | None:
    direction = convert.direction_from_proto(value)
    if direction is None and value != 0:
        raise errors.InvalidRequest.of({"direction": f"unknown direction {value}"})
    return direction


def create_command(request: call_service_pb2.CreateCallRequest) -> domain.CreateCall:
    return domain.CreateCall(
        direction=_direction(request.direction),
        phone=request.phone,
        status=_status(request.state),
        pbx_call_id=request.pbx_call_id if request.HasField("pbx_call_id") else None,
        pbx_user_ids=tuple(request.pbx_user_ids),
        user_ids=tuple(request.user_ids),
        group_ids=tuple(request.group_ids),
        comment=request.comment if request.HasField("comment") else None,
        recording_id=request.recording_id or None,
    )


def update_command(request: call_service_pb2.UpdateCallRequest) -> domain.UpdateCall:
    return domain.UpdateCall(
        status=_status(request.state),
        call_id=request.call_id if request.HasField("call_id") else None,
        pbx_call_id=request.pbx_call_id if request.HasField("pbx_call_id") else None,
        user_id=request.user_id if request.HasField("user_id") else None,
        pbx_user_id=request.pbx_user_id if request.HasField("pbx_user_id") else None,
        comment=request.comment if request.HasField("comment") else None,
        recording_id=request.recording_id or None,
    )


def call_filter(request: call_service_pb2.ListCallsRequest) -> CallFilter:
    statuses = []
    for state in request.states:
        status = _status(state, "states")
        if status is not None:
            statuses.append(status)
    return CallFilter(
        channel_id=request.channel_id or None,
        phone=request.phone or None,
        statuses=tuple(statuses),
        direction=_direction(request.direction),
        employee_id=request.employee_id or None,
        created_from=(
            convert.from_timestamp(request.create_time_from)
            if request.HasField("create_time_from")
            else None
        ),
        created_to=(
            convert.from_timestamp(request.create_time_to)
            if request.HasField("create_time_to")
            else None
        ),
    )


_CALL_TYPES = {
    "created": call_service_pb2.CallEvent.TYPE_CREATED,
    "updated": call_service_pb2.CallEvent.TYPE_UPDATED,
    "expired": call_service_pb2.CallEvent.TYPE_UPDATED,
    "reset": call_service_pb2.CallEvent.TYPE_RESET,
}


class CallServicer(call_service_pb2_grpc.CallServiceServicer):
    def __init__(
        self,
        handler: Handler,
        streams: EventStreams,
        library: RecordingLibrary,
        signer: LinkSigner,
        blob_runner: StorageRunner,
    ) -> None:
        self.h = handler
        self.streams = streams
        self.library = library
        self.signer = signer
        # Recording bytes move on their own threads, so that an upload never
        # queues the storage thread behind it.
        self.blobs = blob_runner

    async def CreateCall(
        self,
        request: call_service_pb2.CreateCallRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> call_service_pb2.CreateCallResponse:
        def work(_: Principal) -> call_service_pb2.CreateCallResponse:
            view, created = self.h.app.calls.create_call(
                _channel_ref(request.channel), create_command(request), request.idempotency_key
            )
            return call_service_pb2.CreateCallResponse(
                call=convert.call_message(view, self.h.links), created=created
            )

        return await self.h.call(context, (Role.SERVICE,), work)

    async def UpdateCall(
        self,
        request: call_service_pb2.UpdateCallRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> call_service_pb2.UpdateCallResponse:
        def work(_: Principal) -> call_service_pb2.UpdateCallResponse:
            view = self.h.app.calls.update_call(
                _channel_ref(request.channel), update_command(request), request.idempotency_key
            )
            return call_service_pb2.UpdateCallResponse(
                call=convert.call_message(view, self.h.links)
            )

        return await self.h.call(context, (Role.SERVICE,), work)

    async def GetCall(
        self,
        request: call_service_pb2.GetCallRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> call_service_pb2.GetCallResponse:
        def work(principal: Principal) -> call_service_pb2.GetCallResponse:
            view = self.h.app.queries.get_call(principal, request.call_id)
            return call_service_pb2.GetCallResponse(call=convert.call_message(view, self.h.links))

        return await self.h.call(context, (Role.SERVICE, Role.EMPLOYEE), work)

    async def ListCalls(
        self,
        request: call_service_pb2.ListCallsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> call_service_pb2.ListCallsResponse:
        def work(principal: Principal) -> call_service_pb2.ListCallsResponse:
            views, next_token = self.h.app.queries.list_calls(
                principal, call_filter(request), request.page_size, request.page_token
            )
            return call_service_pb2.ListCallsResponse(
                calls=[convert.call_message(v, self.h.links) for v in views],
                next_page_token=next_token,
            )

        return await self.h.call(context, (Role.SERVICE, Role.EMPLOYEE), work)

    async def WatchCallCards(
        self,
        request: call_service_pb2.WatchCallCardsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[call_service_pb2.CallCardEvent]:
        principal = await self.h.principal(context, (Role.SERVICE, Role.EMPLOYEE))
        employee_id = request.employee_id
        if principal.is_employee:
            if employee_id not in (0, principal.employee_id):
                await abort(
                    context, errors.PermissionDenied("an employee token watches only its own cards")
                )
            employee_id = principal.employee_id or 0
        if employee_id <= 0:
            await abort(context, errors.InvalidRequest.of({"employee_id": "required"}))
        if request.after_seq < 0:
            await abort(context, errors.InvalidRequest.of({"after_seq": "must not be negative"}))
        # Subscribe first, then tell the client at once that the stream is
        # accepted: every change after that moment reaches it.
        subscription = self.streams.hub.subscribe(principal.token_id)
        try:
            await context.send_initial_metadata(())
        except BaseException:
            self.streams.hub.unsubscribe(subscription)
            raise
        async for update in self.streams.cards(employee_id, request.after_seq, subscription):
            event = call_service_pb2.CallCardEvent(
                seq=update.seq, type=CARD_EVENT.number(update.change), reason=update.reason
            )
            if update.view is not None:
                event.card.CopyFrom(convert.card_message(update.view, self.h.links))
            yield event
        if subscription.revoked:
            await abort(context, errors.Unauthenticated("the token was revoked"))

    async def WatchCalls(
        self,
        request: call_service_pb2.WatchCallsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[call_service_pb2.CallEvent]:
        principal = await self.h.principal(context, (Role.SERVICE,))
        if request.after_seq < 0:
            await abort(context, errors.InvalidRequest.of({"after_seq": "must not be negative"}))
        subscription = self.streams.hub.subscribe(principal.token_id)
        try:
            await context.send_initial_metadata(())
        except BaseException:
            self.streams.hub.unsubscribe(subscription)
            raise
        async for update in self.streams.calls(request.after_seq, subscription):
            event = call_service_pb2.CallEvent(
                seq=update.seq, type=_CALL_TYPES[update.kind], reason=update.reason
            )
            if update.view is not None:
                event.call.CopyFrom(convert.call_message(update.view, self.h.links))
            yield event
        if subscription.revoked:
            await abort(context, errors.Unauthenticated("the token was revoked"))

    async def UploadRecord(
        self,
        request_iterator: AsyncIterator[call_service_pb2.UploadRecordRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> call_service_pb2.UploadRecordResponse:
        first = await anext(aiter(request_iterator), None)
        if first is None or first.WhichOneof("part") != "metadata":
            await abort(
                context, errors.InvalidRequest.of({"metadata": "the first message is the metadata"})
            )
        metadata = first.metadata
        channel = await self.h.call(
            context,
            (Role.SERVICE,),
            lambda _: self.h.app.channels.resolve(_channel_ref(metadata.channel)),
        )
        # A job handed to a thread runs to its end even when the wait for it is cancelled:
        # the one in flight is kept here, to be waited for before what it did is undone.
        in_flight: list[asyncio.Future[Any]] = []

        async def settled(job: Awaitable[T]) -> T:
            in_flight[:] = [asyncio.ensure_future(job)]
            return await asyncio.shield(in_flight[0])

        upload: Upload | None = None
        try:
            upload = await settled(
                self.blobs.run(
                    lambda: self.library.start_upload(channel.channel_id, metadata.file_name)
                )
            )
            async for message in request_iterator:
                if message.WhichOneof("part") != "chunk":
                    raise errors.InvalidRequest.of({"chunk": "only the first message is metadata"})
                await settled(self.blobs.run(upload.write, message.chunk))
            recording = await settled(self.blobs.run(upload.finish))
            await settled(self.h.runner.run(lambda: self.library.save(recording)))
        except errors.DomainError as error:
            if upload is not None:
                await self.blobs.run(upload.abort)
            # Read what the client still sends: aborting during its write can
            # replace this status with a transport error on the client's side.
            async for _ in request_iterator:
                pass
            await abort(context, error)
        except BaseException:
            # The client went away or the server is stopping: nothing is kept, not even a
            # recording kept meanwhile (grpc.aio ends the request stream as if complete
            # when the client cancels while core waits for the next chunk).
            await asyncio.shield(self._forget_upload(upload, in_flight))
            raise
        return call_service_pb2.UploadRecordResponse(
            recording=convert.recording_message(recording, self.h.links)
        )

    async def _forget_upload(
        self, upload: Upload | None, in_flight: list[asyncio.Future[Any]]
    ) -> None:
        """Remove what an abandoned upload left, once the job in flight is done: its part
        file, or its file and record if they were kept meanwhile."""
        for job in in_flight:
            with contextlib.suppress(Exception):
                result = await job
                if upload is None and isinstance(result, Upload):
                    upload = result
        if upload is None:
            return
        recording_id = upload.recording_id
        await self.blobs.run(upload.abort)
        await self.h.runner.run(lambda: self.library.discard(recording_id))
        await self.blobs.run(self.library.store.blobs.delete, recording_id)

    async def DownloadRecord(
        self,
        request: call_service_pb2.DownloadRecordRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[call_service_pb2.DownloadRecordResponse]:
        def authorize(principal: Principal) -> Recording:
            recording = self.library.get(request.recording_id)
            if request.signature or request.expires:
                principal.require(Role.SERVICE)
                if not self.signer.verify(
                    request.recording_id, request.expires, request.signature, time.time()
                ):
                    raise errors.PermissionDenied("the link is invalid or has expired")
            else:
                principal.require(Role.SERVICE, Role.EMPLOYEE)
                # An employee downloads only recordings of calls they can see.
                self.h.app.queries.get_call(principal, recording.call_id or 0)
            self.library.check_range(recording, request.offset, request.length)
            return recording

        recording = await self.h.call(context, (Role.SERVICE, Role.EMPLOYEE), authorize)
        yield call_service_pb2.DownloadRecordResponse(
            recording=convert.recording_message(recording, self.h.links)
        )
        reader = await self.blobs.run(
            self.library.open_reader, request.recording_id, request.offset, request.length
        )
        try:
            while True:
                chunk = await self.blobs.run(lambda: next(reader, b""))
                if not chunk:
                    break
                yield call_service_pb2.DownloadRecordResponse(chunk=chunk)
        finally:
            await self.blobs.run(reader.close)


class ChannelServicer(channel_service_pb2_grpc.ChannelServiceServicer):
    def __init__(self, handler: Handler) -> None:
        self.h = handler

    async def CreateChannel(
        self,
        request: channel_service_pb2.CreateChannelRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> channel_service_pb2.CreateChannelResponse:
        def work(_: Principal) -> channel_service_pb2.CreateChannelResponse:
            channel, key = self.h.app.channels.create(
                request.name, request.department_id, request.key or None
            )
            return channel_service_pb2.CreateChannelResponse(
                channel=convert.channel_message(channel), key=key, url=self.h.app.channels.url(key)
            )

        return await self.h.call(context, (), work)

    async def GetChannel(
        self,
        request: channel_service_pb2.GetChannelRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> channel_service_pb2.GetChannelResponse:
        return await self.h.call(
            context,
            (),
            lambda _: channel_service_pb2.GetChannelResponse(
                channel=convert.channel_message(self.h.app.channels.get(request.channel_id))
            ),
        )

    async def ListChannels(
        self,
        request: channel_service_pb2.ListChannelsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> channel_service_pb2.ListChannelsResponse:
        return await self.h.call(
            context,
            (),
            lambda _: channel_service_pb2.ListChannelsResponse(
                channels=[convert.channel_message(c) for c in self.h.app.channels.list()]
            ),
        )

    async def UpdateChannel(
        self,
        request: channel_service_pb2.UpdateChannelRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> channel_service_pb2.UpdateChannelResponse:
        def work(_: Principal) -> channel_service_pb2.UpdateChannelResponse:
            channel = self.h.app.channels.update(
                request.channel_id,
                name=request.name if request.HasField("name") else None,
                department_id=(
                    request.department_id if request.HasField("department_id") else None
                ),
                enabled=request.enabled if request.HasField("enabled") else None,
            )
            return channel_service_pb2.UpdateChannelResponse(
                channel=convert.channel_message(channel)
            )

        return await self.h.call(context, (), work)

    async def RotateChannelKey(
        self,
        request: channel_service_pb2.RotateChannelKeyRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> channel_service_pb2.RotateChannelKeyResponse:
        def work(_: Principal) -> channel_service_pb2.RotateChannelKeyResponse:
            channel, key = self.h.app.channels.rotate_key(request.channel_id)
            return channel_service_pb2.RotateChannelKeyResponse(
                channel=convert.channel_message(channel), key=key, url=self.h.app.channels.url(key)
            )

        return await self.h.call(context, (), work)

    async def MapPbxUser(
        self,
        request: channel_service_pb2.MapPbxUserRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> channel_service_pb2.MapPbxUserResponse:
        return await self.h.call(
            context,
            (),
            lambda _: channel_service_pb2.MapPbxUserResponse(
                channel=convert.channel_message(
                    self.h.app.channels.map_pbx_user(
                        request.channel_id, request.pbx_user_id, request.employee_id
                    )
                )
            ),
        )

    async def UnmapPbxUser(
        self,
        request: channel_service_pb2.UnmapPbxUserRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> channel_service_pb2.UnmapPbxUserResponse:
        return await self.h.call(
            context,
            (),
            lambda _: channel_service_pb2.UnmapPbxUserResponse(
                channel=convert.channel_message(
                    self.h.app.channels.unmap_pbx_user(request.channel_id, request.pbx_user_id)
                )
            ),
        )


def _department(department: Department) -> directory_service_pb2.Department:
    return directory_service_pb2.Department(
        department_id=department.department_id, name=department.name
    )


def _employee(employee: Employee) -> directory_service_pb2.Employee:
    return directory_service_pb2.Employee(
        employee_id=employee.employee_id, name=employee.name, telephony=employee.telephony
    )


def _group(group: Group) -> directory_service_pb2.Group:
    return directory_service_pb2.Group(
        group_id=group.group_id,
        name=group.name,
        member_employee_ids=list(group.members),
    )


class DirectoryServicer(directory_service_pb2_grpc.DirectoryServiceServicer):
    def __init__(self, handler: Handler) -> None:
        self.h = handler

    async def UpsertDepartment(
        self,
        request: directory_service_pb2.UpsertDepartmentRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> directory_service_pb2.UpsertDepartmentResponse:
        d = request.department
        return await self.h.call(
            context,
            (),
            lambda _: directory_service_pb2.UpsertDepartmentResponse(
                department=_department(
                    self.h.app.directory.upsert_department(d.department_id, d.name)
                )
            ),
        )

    async def ListDepartments(
        self,
        request: directory_service_pb2.ListDepartmentsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> directory_service_pb2.ListDepartmentsResponse:
        return await self.h.call(
            context,
            (),
            lambda _: directory_service_pb2.ListDepartmentsResponse(
                departments=[_department(d) for d in self.h.app.directory.list_departments()]
            ),
        )

    async def UpsertEmployee(
        self,
        request: directory_service_pb2.UpsertEmployeeRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> directory_service_pb2.UpsertEmployeeResponse:
        e = request.employee
        return await self.h.call(
            context,
            (),
            lambda _: directory_service_pb2.UpsertEmployeeResponse(
                employee=_employee(
                    self.h.app.directory.upsert_employee(e.employee_id, e.name, e.telephony)
                )
            ),
        )

    async def ListEmployees(
        self,
        request: directory_service_pb2.ListEmployeesRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> directory_service_pb2.ListEmployeesResponse:
        return await self.h.call(
            context,
            (),
            lambda _: directory_service_pb2.ListEmployeesResponse(
                employees=[_employee(d) for d in self.h.app.directory.list_employees()]
            ),
        )

    async def UpsertGroup(
        self,
        request: directory_service_pb2.UpsertGroupRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> directory_service_pb2.UpsertGroupResponse:
        g = request.group
        return await self.h.call(
            context,
            (),
            lambda _: directory_service_pb2.UpsertGroupResponse(
                group=_group(
                    self.h.app.directory.upsert_group(g.group_id, g.name, g.member_employee_ids)
                )
            ),
        )

    async def ListGroups(
        self,
        request: directory_service_pb2.ListGroupsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> directory_service_pb2.ListGroupsResponse:
        return await self.h.call(
            context,
            (),
            lambda _: directory_service_pb2.ListGroupsResponse(
                groups=[_group(d) for d in self.h.app.directory.list_groups()]
            ),
        )

    async def UpsertContact(
        self,
        request: directory_service_pb2.UpsertContactRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> directory_service_pb2.UpsertContactResponse:
        return await self.h.call(
            context,
            (),
            lambda _: directory_service_pb2.UpsertContactResponse(
                contact=convert.contact_message(
                    self.h.app.directory.upsert_contact(request.phone, request.name)
                )
            ),
        )

    async def ListContacts(
        self,
        request: directory_service_pb2.ListContactsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> directory_service_pb2.ListContactsResponse:
        def work(_: Principal) -> directory_service_pb2.ListContactsResponse:
            contacts, next_token = self.h.app.directory.list_contacts(
                request.page_size, request.page_token
            )
            return directory_service_pb2.ListContactsResponse(
                contacts=[convert.contact_message(c) for c in contacts],
                next_page_token=next_token,
            )

        return await self.h.call(context, (), work)

    async def RemoveContact(
        self,
        request: directory_service_pb2.RemoveContactRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> directory_service_pb2.RemoveContactResponse:
        def work(_: Principal) -> directory_service_pb2.RemoveContactResponse:
            self.h.app.directory.remove_contact(request.contact_id)
            return directory_service_pb2.RemoveContactResponse()

        return await self.h.call(context, (), work)

    async def IssueToken(
        self,
        request: directory_service_pb2.IssueTokenRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> directory_service_pb2.IssueTokenResponse:
        def work(_: Principal) -> directory_service_pb2.IssueTokenResponse:
            role = convert.role_from_proto(request.role)
            if role is None:
                raise errors.InvalidRequest.of({"role": "admin, service or employee"})
            token, secret = self.h.app.tokens.issue(
                role, request.employee_id or None, request.description
            )
            return directory_service_pb2.IssueTokenResponse(
                token=convert.token_message(token), secret=secret
            )

        return await self.h.call(context, (), work)

    async def RevokeToken(
        self,
        request: directory_service_pb2.RevokeTokenRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> directory_service_pb2.RevokeTokenResponse:
        def work(_: Principal) -> directory_service_pb2.RevokeTokenResponse:
            self.h.app.tokens.revoke(request.token_id)
            return directory_service_pb2.RevokeTokenResponse()

        return await self.h.call(context, (), work)

    async def ListTokens(
        self,
        request: directory_service_pb2.ListTokensRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> directory_service_pb2.ListTokensResponse:
        return await self.h.call(
            context,
            (),
            lambda _: directory_service_pb2.ListTokensResponse(
                tokens=[convert.token_message(t) for t in self.h.app.tokens.list_active()]
            ),
        )
