"""CallService: calls from the PBX, call queries, card and call streams, recordings."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

from core import errors
from core.app.audit import Action
from core.app.board import Board
from core.auth import Principal, Role
from core.board_stream import BoardFeed
from core.events import CallUpdate, EventStreams
from core.logs import note_rpc
from core.model import CallView, Recording
from core.recordings import LinkSigner
from core.recordings.library import RecordingLibrary, Upload
from core.rpc import decode, encode, workspace
from core.rpc.card_streams import CardStreams
from core.rpc.handler import (
    READERS,
    SERVICE,
    SUPERVISORS,
    Context,
    Handler,
    StorageRunner,
    checked,
    deadline_of,
    passed,
    watch,
)
from core.rpc.status import abort, status_message
from telephony.v1 import call_pb2, call_service_pb2_grpc
from telephony.v1 import call_service_pb2 as pb

T = TypeVar("T")

_CALL_TYPES = {
    "created": pb.CallEvent.TYPE_CREATED,
    "updated": pb.CallEvent.TYPE_UPDATED,
    "expired": pb.CallEvent.TYPE_UPDATED,
    "reset": pb.CallEvent.TYPE_RESET,
}


def _outcome(result: pb.CallOutcome | errors.DomainError) -> pb.CallOutcome:
    if isinstance(result, errors.DomainError):
        return pb.CallOutcome(error=status_message(result).SerializeToString())
    return result


def _outcome_name(result: pb.CallOutcome | errors.DomainError) -> str:
    """How a command ended, for the log: created, updated, or why it was refused."""
    if isinstance(result, errors.DomainError):
        return result.reason
    return str(result.WhichOneof("outcome"))


def _metadata(first: pb.UploadRecordRequest | None) -> pb.UploadRecordRequest.Metadata:
    if first is None or first.WhichOneof("part") != "metadata":
        raise errors.InvalidRequest.of({"metadata": "the first message is the metadata"})
    return first.metadata


class CallServicer(call_service_pb2_grpc.CallServiceServicer):
    def __init__(
        self,
        handler: Handler,
        streams: EventStreams,
        library: RecordingLibrary,
        signer: LinkSigner,
        blob_runner: StorageRunner,
        batch_runner: StorageRunner,
        board_feed: BoardFeed,
    ) -> None:
        self.h = handler
        self.app = handler.app
        self.streams = streams
        self.cards = CardStreams(handler, streams)
        self.library = library
        self.signer = signer
        # Recording bytes move on their own threads, so that an upload never
        # queues the storage thread behind it.
        self.blobs = blob_runner
        self.batches = batch_runner
        self.board_feed = board_feed

    def _call(self, view: CallView, principal: Principal, brief: bool = False) -> call_pb2.Call:
        """A call as handed to `principal`, its recordings' links bound to its token; `brief`:
        only what the PBX is answered with."""
        links = self.h.links_for(principal)
        if brief:
            return encode.reply_call_message(view, links)
        return encode.call_message(view, links)

    def _create(
        self, request: pb.CreateCallRequest, principal: Principal, brief: bool = False
    ) -> pb.CreateCallResponse:
        view, created = self.app.calls.create_call(
            decode.channel_ref(request.channel),
            decode.create_command(request),
            request.idempotency_key,
        )
        return pb.CreateCallResponse(call=self._call(view, principal, brief), created=created)

    def _update(
        self, request: pb.UpdateCallRequest, principal: Principal, brief: bool = False
    ) -> pb.UpdateCallResponse:
        view = self.app.calls.update_call(
            decode.channel_ref(request.channel),
            decode.update_command(request),
            request.idempotency_key,
        )
        return pb.UpdateCallResponse(call=self._call(view, principal, brief))

    def _command(
        self, command: pb.CallCommand, principal: Principal, deadline: float | None, brief: bool
    ) -> pb.CallOutcome:
        # Under load a batch may start late or run long: a command its caller has given up
        # on by now is not done, so that it is not applied after its caller was told it failed.
        if passed(deadline):
            raise errors.TooLate("the deadline passed before the command began")
        which = command.WhichOneof("command")
        if which == "create":
            return pb.CallOutcome(created=self._create(command.create, principal, brief))
        if which == "update":
            return pb.CallOutcome(updated=self._update(command.update, principal, brief))
        raise errors.InvalidRequest.of({"command": "create or update is required"})

    async def CreateCall(
        self, request: pb.CreateCallRequest, context: Context
    ) -> pb.CreateCallResponse:
        return await self.h.call(context, SERVICE, lambda p: self._create(request, p))

    async def UpdateCall(
        self, request: pb.UpdateCallRequest, context: Context
    ) -> pb.UpdateCallResponse:
        return await self.h.call(context, SERVICE, lambda p: self._update(request, p))

    async def SubmitCalls(
        self, request: pb.SubmitCallsRequest, context: Context
    ) -> pb.SubmitCallsResponse:
        commands = request.commands
        await checked(context, lambda: decode.batch_size(len(commands)))
        deadline = deadline_of(context)

        def work(principal: Principal) -> tuple[pb.SubmitCallsResponse, list[str]]:
            results = self.app.calls.in_batch(
                [
                    functools.partial(self._command, command, principal, deadline, request.brief)
                    for command in commands
                ]
            )
            outcomes = [_outcome(result) for result in results]
            return pb.SubmitCallsResponse(outcomes=outcomes), [_outcome_name(r) for r in results]

        response, names = await self.h.call(context, SERVICE, work, runner=self.batches)
        # The batch's log line names each command's request id, and how it ended.
        note_rpc(request_ids=[command.request_id[:128] for command in commands], outcomes=names)
        return response

    async def GetCall(self, request: pb.GetCallRequest, context: Context) -> pb.GetCallResponse:
        def work(principal: Principal) -> pb.GetCallResponse:
            view = self.app.queries.get_call(principal, request.call_id)
            return pb.GetCallResponse(call=self._call(view, principal))

        return await self.h.call(context, READERS, work)

    async def ListCalls(
        self, request: pb.ListCallsRequest, context: Context
    ) -> pb.ListCallsResponse:
        def work(principal: Principal) -> pb.ListCallsResponse:
            views, next_page_token = self.app.queries.list_calls(
                principal, decode.call_filter(request), request.page_size, request.page_token
            )
            return pb.ListCallsResponse(
                calls=[self._call(v, principal) for v in views], next_page_token=next_page_token
            )

        return await self.h.call(context, READERS, work)

    # The card streams yield encoded messages (core.rpc.card_streams.add_call_service).
    async def WatchCallCards(
        self, request: pb.WatchCallCardsRequest, context: Context
    ) -> AsyncIterator[bytes]:
        async for data in self.cards.watch(request, context):
            yield data

    async def OpenCardStream(
        self, request: pb.OpenCardStreamRequest, context: Context
    ) -> pb.OpenCardStreamResponse:
        return await self.cards.open(request, context)

    async def WatchCardFeed(
        self, request: pb.WatchCardFeedRequest, context: Context
    ) -> AsyncIterator[bytes]:
        async for data in self.cards.feed(request, context):
            yield data

    async def WatchCalls(
        self, request: pb.WatchCallsRequest, context: Context
    ) -> AsyncIterator[pb.CallEvent]:
        def opened(principal: Principal) -> Principal:
            decode.after_seq(request.after_seq)
            # Every call's changes: recorded once, when the stream opens.
            self.app.audit.record(principal, Action.CALLS_WATCHED, after_seq=request.after_seq)
            return principal

        principal = await self.h.call(context, (*SERVICE, *SUPERVISORS), opened, stream=True)
        async for event in watch(
            context,
            self.streams.hub,
            principal,
            lambda subscription: self.streams.calls(request.after_seq, subscription),
            lambda update: self._call_event(update, principal),
        ):
            yield event

    def _call_event(self, update: CallUpdate, principal: Principal) -> pb.CallEvent:
        event = pb.CallEvent(seq=update.seq, type=_CALL_TYPES[update.kind], reason=update.reason)
        if update.view is not None:
            event.call.CopyFrom(self._call(update.view, principal))
        return event

    async def UploadRecord(
        self, request_iterator: AsyncIterator[pb.UploadRecordRequest], context: Context
    ) -> pb.UploadRecordResponse:
        first = await anext(aiter(request_iterator), None)
        metadata = await checked(context, lambda: _metadata(first))
        channel, links = await self.h.call(
            context,
            SERVICE,
            lambda principal: (
                self.app.channels.resolve(decode.channel_ref(metadata.channel)),
                self.h.links_for(principal),
            ),
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
        return pb.UploadRecordResponse(recording=encode.recording_message(recording, links))

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

    def _link_holder(self, principal: Principal, request: pb.DownloadRecordRequest) -> Principal:
        """Who downloads through a signed link: the token the link was made for, at the
        address the gateway forwards; for a link bound to no token (made before links
        were), the caller itself."""
        principal.require(Role.SERVICE)
        if not self.signer.verify(
            request.recording_id, request.expires, request.signature, time.time(), request.token_id
        ):
            raise errors.PermissionDenied("the link is invalid or has expired")
        if not request.token_id:
            return principal
        return self.app.tokens.link_holder(request.token_id, address=principal.address)

    def _downloadable(self, principal: Principal, request: pb.DownloadRecordRequest) -> Recording:
        recording = self.library.get(request.recording_id)
        if request.signature or request.expires or request.token_id:
            reader = self._link_holder(principal, request)
        else:
            principal.require(*READERS)
            # An employee downloads only recordings of calls they can see.
            self.app.queries.get_call(principal, recording.call_id or 0)
            reader = principal
        self.library.check_range(recording, request.offset, request.length)
        # A player asks for many ranges per play and seek: a download is recorded once,
        # by the request that starts at its first byte; later ranges continue it.
        if request.offset == 0:
            self.app.audit.record(
                reader,
                Action.RECORDING_DOWNLOADED,
                recording.recording_id,
                call_id=recording.call_id,
                length=request.length or None,
            )
        return recording

    async def DownloadRecord(
        self, request: pb.DownloadRecordRequest, context: Context
    ) -> AsyncIterator[pb.DownloadRecordResponse]:
        recording, links = await self.h.call(
            context,
            READERS,
            lambda principal: (
                self._downloadable(principal, request),
                self.h.links_for(principal),
            ),
        )
        yield pb.DownloadRecordResponse(recording=encode.recording_message(recording, links))
        reader = await self.blobs.run(
            self.library.open_reader, request.recording_id, request.offset, request.length
        )
        try:
            while True:
                chunk = await self.blobs.run(lambda: next(reader, b""))
                if not chunk:
                    break
                yield pb.DownloadRecordResponse(chunk=chunk)
        finally:
            await self.blobs.run(reader.close)

    # --- the helpdesk's workspace ------------------------------------------------------------

    async def ListCallbacks(
        self, request: pb.ListCallbacksRequest, context: Context
    ) -> pb.ListCallbacksResponse:
        return await self.h.unary(
            context,
            READERS,
            lambda principal: self.app.callbacks.list(
                principal, workspace.callback_query(request), request.page_size, request.page_token
            ),
            lambda page: pb.ListCallbacksResponse(
                callbacks=[workspace.callback_message(v) for v in page.callbacks],
                next_page_token=page.next_page_token,
                open_count=page.open_count,
            ),
        )

    async def MarkCalledBack(
        self, request: pb.MarkCalledBackRequest, context: Context
    ) -> pb.MarkCalledBackResponse:
        return await self.h.unary(
            context,
            READERS,
            lambda principal: self.app.callbacks.mark_called_back(
                principal, request.callback_id, workspace.employee_id(request.employee_id)
            ),
            lambda view: pb.MarkCalledBackResponse(callback=workspace.callback_message(view)),
        )

    async def GetBoard(self, request: pb.GetBoardRequest, context: Context) -> pb.GetBoardResponse:
        def work(principal: Principal) -> Board:
            # Every active call's phone: a read of personal data in bulk.
            self.app.audit.record(principal, Action.BOARD_READ)
            return self.app.board.snapshot()

        return await self.h.unary(
            context,
            SUPERVISORS,
            work,
            lambda board: pb.GetBoardResponse(board=workspace.board_message(board)),
        )

    async def WatchBoard(
        self, request: pb.WatchBoardRequest, context: Context
    ) -> AsyncIterator[pb.WatchBoardResponse]:
        def opened(principal: Principal) -> Principal:
            # Recorded once, when the stream opens, not for each board it sends.
            self.app.audit.record(principal, Action.BOARD_READ, live=True)
            return principal

        principal = await self.h.call(context, SUPERVISORS, opened, stream=True)
        async for event in watch(
            context,
            self.streams.hub,
            principal,
            self.board_feed.watch,
            lambda board: pb.WatchBoardResponse(board=workspace.board_message(board)),
        ):
            yield event
