"""Live call cards as Server-Sent Events: GET /api/v2/telephony/cards/stream."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import falcon.asgi
import grpc
import grpc.aio
from falcon.asgi import SSEvent

from gateway import convert
from gateway.auth import caller_authorization
from gateway.config import Config
from gateway.core_client import CoreClient
from gateway.errors import GatewayError, invalid_fields
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

# What the reader hands over: an event, the error that ended the stream, or None at its end.
Item: TypeAlias = CallCardEvent | grpc.aio.AioRpcError | None


class _Quiet:
    """Core accepted the stream but has nothing to say yet."""


QUIET = _Quiet()


class CardFeed:
    """Reads a card stream in a task of its own.

    Waiting for the next event can then time out (to send a keepalive) without
    cancelling the gRPC call, which cancelling a pending read would do.
    """

    def __init__(self, call: grpc.aio.UnaryStreamCall) -> None:
        self._call = call
        self._queue: asyncio.Queue[Item] = asyncio.Queue(maxsize=64)
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

    async def first(self, wait: float) -> Item | _Quiet:
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

    async def next(self, wait: float, over: asyncio.Future[Any]) -> Item | _Quiet:
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


class CardsResource:
    def __init__(self, config: Config, core: CoreClient, stopping: asyncio.Event) -> None:
        self._config = config
        self._core = core
        # Set when the gateway shuts down: streams never end by themselves.
        self._stopping = stopping

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        request_id: str = req.context.request_id
        authorization = caller_authorization(req)
        employee_id = _employee_id(req)
        request = call_service_pb2.WatchCallCardsRequest(
            after_seq=_after_seq(req), employee_id=employee_id
        )
        feed = CardFeed(self._core.watch_cards(request, authorization, request_id))
        try:
            first = await feed.first(self._config.sse_handshake)
        except BaseException:
            await feed.close()
            raise
        if isinstance(first, grpc.aio.AioRpcError):
            await feed.close()
            error = self._core.rpc_error(first)
            if error.status_code == 422 and "employee_id" in error.fields and not employee_id:
                raise GatewayError(
                    422,
                    "invalid_request",
                    "a service or admin token watches one employee's cards:"
                    " name the employee with ?employee_id=<id>",
                    {"employee_id": NAME_THE_EMPLOYEE},
                ) from first
            raise error from first
        # Outside GatewayApp nothing reports a hang-up: the next keepalive finds it.
        client_gone = req.scope.get(CLIENT_GONE) or asyncio.Event()
        resp.set_header("Cache-Control", "no-cache")
        resp.set_header("X-Accel-Buffering", "no")
        resp.sse = self._events(feed, first, client_gone, self._config.public_url_for(req.scheme))

    async def _events(
        self,
        feed: CardFeed,
        first: Item | _Quiet,
        client_gone: asyncio.Event,
        public_url: str,
    ) -> AsyncIterator[SSEvent]:
        keepalive = self._config.sse_keepalive
        # Done when the client hangs up or the gateway shuts down: the stream ends at once.
        over = asyncio.ensure_future(_until_over(client_gone, self._stopping))
        try:
            item = first
            while item is not None:
                if isinstance(item, CallCardEvent):
                    event = convert.card_event(item, public_url)
                    if event is not None:
                        yield event
                elif isinstance(item, grpc.aio.AioRpcError):
                    # The client reconnects with Last-Event-ID and resumes.
                    log.info("card stream ended by core: %s", item.code().name)
                    return
                item = await feed.next(keepalive, over)
                if item is QUIET:
                    yield convert.keepalive()
        finally:
            over.cancel()
            await feed.close()
