"""Live call cards as Server-Sent Events: GET /api/v2/telephony/cards/stream."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from typing import TypeAlias

import falcon.asgi
import grpc
import grpc.aio
from falcon.asgi import SSEvent

from gateway import convert
from gateway.auth import caller_authorization
from gateway.config import Config
from gateway.core_client import CoreClient
from gateway.errors import GatewayError
from telephony.v1 import call_service_pb2
from telephony.v1.call_service_pb2 import CallCardEvent

log = logging.getLogger("gateway")

_SEQ = re.compile(r"[0-9]{1,18}")
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

    async def next(self, wait: float) -> Item:
        """The next item; TimeoutError when there is none within `wait` seconds."""
        return await asyncio.wait_for(self._queue.get(), wait)

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


class CardsResource:
    def __init__(self, config: Config, core: CoreClient) -> None:
        self._config = config
        self._core = core

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        request_id: str = req.context.request_id
        authorization = caller_authorization(req)
        request = call_service_pb2.WatchCallCardsRequest(after_seq=_after_seq(req))
        feed = CardFeed(self._core.watch_cards(request, authorization, request_id))
        try:
            first = await feed.first(self._config.sse_handshake)
        except BaseException:
            await feed.close()
            raise
        if isinstance(first, grpc.aio.AioRpcError):
            await feed.close()
            raise self._core.rpc_error(first)
        resp.set_header("Cache-Control", "no-cache")
        resp.set_header("X-Accel-Buffering", "no")
        resp.sse = self._events(feed, first)

    async def _events(self, feed: CardFeed, first: Item | _Quiet) -> AsyncIterator[SSEvent]:
        keepalive = self._config.sse_keepalive
        try:
            item = first
            while item is not None:
                if isinstance(item, CallCardEvent):
                    event = convert.card_event(item, self._config.public_url)
                    if event is not None:
                        yield event
                elif isinstance(item, grpc.aio.AioRpcError):
                    # The client reconnects with Last-Event-ID and resumes.
                    log.info("card stream ended by core: %s", item.code().name)
                    return
                try:
                    item = await feed.next(keepalive)
                except TimeoutError:
                    # Falcon notices a gone client only when it writes.
                    yield convert.keepalive()
                    item = QUIET
        finally:
            await feed.close()
