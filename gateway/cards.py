"""Live call cards as Server-Sent Events: GET /api/v2/telephony/cards/stream."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Callable
from typing import Any, Generic, TypeAlias, TypeVar

import falcon.asgi
import grpc
import grpc.aio
from falcon.asgi import SSEvent

from gateway import convert
from gateway.auth import stream_authorization
from gateway.config import Config
from gateway.core_client import CoreClient
from gateway.errors import GatewayError, invalid_fields
from gateway.feed import CardRouter, CardStream
from telephony.v1 import call_service_pb2
from telephony.v1.call_service_pb2 import CallCardEvent

log = logging.getLogger("gateway")

_SEQ = re.compile(r"[0-9]{1,18}")
_ID = re.compile(r"[1-9][0-9]{0,17}")
# Key of the request scope's event set when the client hangs up (see app.GatewayApp).
CLIENT_GONE = "vats.client_gone"
NAME_THE_EMPLOYEE = "required with a service or admin token: add ?employee_id=<id>"
# How long to wait for a refusal that came with the response headers.
_REFUSAL_GRACE = 0.05

M = TypeVar("M")
# What a feed hands over: a message, the error that ended the stream, or None at its end.
Item: TypeAlias = M | grpc.aio.AioRpcError | None


class _Quiet:
    """Core accepted the stream but has nothing to say yet."""


QUIET = _Quiet()


class Feed(Generic[M]):
    """Reads a server stream of core (of `M` messages) in a task of its own.

    Waiting for the next message can then time out (to send a keepalive) without
    cancelling the gRPC call, which cancelling a pending read would do.
    """

    def __init__(self, call: grpc.aio.UnaryStreamCall, message: type[M]) -> None:
        self._call = call
        self.message = message
        self._queue: asyncio.Queue[Item[M]] = asyncio.Queue(maxsize=64)
        self._reader = asyncio.create_task(self._read())
        self._headers = asyncio.ensure_future(call.initial_metadata())

    async def _read(self) -> None:
        try:
            async for event in self._call:
                await self._queue.put(event)
        except grpc.aio.AioRpcError as error:
            await self._queue.put(error)
        else:
            await self._queue.put(None)

    async def first(self, wait: float) -> Item[M] | _Quiet:
        """The first item, or QUIET once core has sent headers (or `wait` passed) without one."""
        getter = asyncio.ensure_future(self._queue.get())
        try:
            done, _ = await asyncio.wait(
                {getter, self._headers}, timeout=wait, return_when=asyncio.FIRST_COMPLETED
            )
            if getter not in done and self._headers in done:
                # A refusal comes as headers and status together: give the status a moment.
                await asyncio.wait({getter}, timeout=_REFUSAL_GRACE)
            return getter.result() if getter.done() else QUIET
        finally:
            getter.cancel()

    async def next(self, wait: float, over: asyncio.Future[Any]) -> Item[M] | _Quiet:
        """The next item; QUIET when there is none within `wait` seconds; None (the end)
        as soon as `over` is done."""
        getter = asyncio.ensure_future(self._queue.get())
        try:
            await asyncio.wait({getter, over}, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            if over.done():
                return None
            return getter.result() if getter.done() else QUIET
        finally:
            # An item not taken yet stays in the queue.
            getter.cancel()

    async def close(self) -> None:
        self._call.cancel()
        for task in (self._reader, self._headers):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                await task


def _after_seq(req: falcon.asgi.Request) -> int:
    raw = (req.get_header("Last-Event-ID") or req.get_param("last_event_id") or "").strip()
    if not raw:
        return 0
    if not _SEQ.fullmatch(raw):
        raise GatewayError(
            400, "bad_request", "Last-Event-ID must be the id of an event of this stream"
        )
    return int(raw)


def _employee_id(req: falcon.asgi.Request) -> int:
    """`?employee_id=`: whose cards a service or admin token watches (0: the token's own)."""
    raw = (req.get_param("employee_id") or "").strip()
    if not raw:
        return 0
    if not _ID.fullmatch(raw):
        raise invalid_fields({"employee_id": "a positive whole number"})
    return int(raw)


async def _until_over(client_gone: asyncio.Event, stopping: asyncio.Event) -> None:
    waits = {asyncio.ensure_future(client_gone.wait()), asyncio.ensure_future(stopping.wait())}
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


class EventStream:
    """Relays a server stream of core to one client as Server-Sent Events.

    The response starts once core has accepted the caller; a keepalive comment goes
    out whenever core is quiet for VATS_SSE_KEEPALIVE; the stream ends when core
    ends it, the client hangs up or the gateway stops.
    """

    def __init__(self, config: Config, core: CoreClient, stopping: asyncio.Event) -> None:
        self._config = config
        self._core = core
        # Set when the gateway shuts down: streams never end by themselves.
        self._stopping = stopping

    @staticmethod
    def authorization(req: falcon.asgi.Request) -> str | None:
        """Who opens a stream (every stream asks here): see auth.stream_authorization."""
        return stream_authorization(req)

    async def open(
        self, call: grpc.aio.UnaryStreamCall, message: type[M]
    ) -> tuple[Feed[M], Item[M] | _Quiet]:
        """A feed of `call` and its first item (QUIET when core accepted the stream but has
        nothing to say yet); core's refusal raises its HTTP error."""
        feed = Feed(call, message)
        try:
            first = await feed.first(self._config.sse_handshake)
        except BaseException:
            await feed.close()
            raise
        if isinstance(first, grpc.aio.AioRpcError):
            await feed.close()
            raise self._core.rpc_error(first) from first
        return feed, first

    def respond(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        feed: Feed[M],
        first: Item[M] | _Quiet,
        to_sse: Callable[[M], SSEvent | None],
    ) -> None:
        """Answers with the stream: each message as `to_sse` makes it (None: skipped)."""
        # Outside GatewayApp nothing reports a hang-up: the next keepalive finds it.
        client_gone = req.scope.get(CLIENT_GONE) or asyncio.Event()
        resp.set_header("X-Accel-Buffering", "no")
        resp.sse = self._events(feed, first, to_sse, client_gone)

    async def _events(
        self,
        feed: Feed[M],
        first: Item[M] | _Quiet,
        to_sse: Callable[[M], SSEvent | None],
        client_gone: asyncio.Event,
    ) -> AsyncIterator[SSEvent]:
        keepalive = self._config.sse_keepalive
        # Done when the client hangs up or the gateway shuts down: the stream ends at once.
        over = asyncio.ensure_future(_until_over(client_gone, self._stopping))
        try:
            item = first
            while item is not None:
                if isinstance(item, grpc.aio.AioRpcError):
                    # The client reconnects: a card stream resumes with Last-Event-ID.
                    log.info("stream ended by core: %s", item.code().name)
                    return
                event = to_sse(item) if isinstance(item, feed.message) else None
                if event is not None:
                    yield event
                item = await feed.next(keepalive, over)
                if item is QUIET:
                    yield convert.keepalive()
        finally:
            over.cancel()
            await feed.close()


class CardsResource:
    """Delivered from the gateway's card feed (gateway.feed); relayed one by one from
    WatchCallCards when core has no feed."""

    def __init__(
        self,
        config: Config,
        core: CoreClient,
        stopping: asyncio.Event,
        router: CardRouter | None = None,
    ) -> None:
        self._config = config
        self._core = core
        self._stream = EventStream(config, core, stopping)
        self._stopping = stopping
        self._router = router

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        request_id: str = req.context.request_id
        authorization = self._stream.authorization(req)
        employee_id = _employee_id(req)
        after_seq = _after_seq(req)
        public_url = self._config.public_url_for(req.scheme)
        try:
            stream = await self._open(employee_id, after_seq, authorization, request_id, public_url)
            if stream is not None:
                self._deliver(req, resp, stream)
                return
            request = call_service_pb2.WatchCallCardsRequest(
                after_seq=after_seq, employee_id=employee_id
            )
            call = self._core.watch_cards(request, authorization, request_id)
            feed, first = await self._stream.open(call, CallCardEvent)
        except GatewayError as error:
            if error.status_code == 422 and "employee_id" in error.fields and not employee_id:
                raise GatewayError(
                    422,
                    "invalid_request",
                    "a service or admin token watches one employee's cards:"
                    " name the employee with ?employee_id=<id>",
                    {"employee_id": NAME_THE_EMPLOYEE},
                ) from error
            raise
        self._stream.respond(
            req, resp, feed, first, lambda event: convert.card_event(event, public_url)
        )

    async def _open(
        self,
        employee_id: int,
        after_seq: int,
        authorization: str | None,
        request_id: str,
        public_url: str,
    ) -> CardStream | None:
        """The stream, opened at core for the card feed; None when core has no feed."""
        if self._router is None or not self._router.supported:
            return None
        try:
            return await self._router.open(
                employee_id, after_seq, authorization, request_id, public_url
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.UNIMPLEMENTED:
                return None
            raise self._core.rpc_error(error) from error

    def _deliver(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, stream: CardStream
    ) -> None:
        assert self._router is not None
        # Outside GatewayApp nothing reports a hang-up: the next keepalive finds it.
        client_gone = req.scope.get(CLIENT_GONE) or asyncio.Event()
        over = asyncio.ensure_future(_until_over(client_gone, self._stopping))
        resp.set_header("X-Accel-Buffering", "no")
        resp.sse = self._router.events(stream, over)
