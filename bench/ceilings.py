"""Ceilings: what the same transports cost with no product logic behind them.

    python -m bench.ceilings echo  --port P             # grpc.aio CallService with a dummy servicer
    python -m bench.ceilings echo  --port P --store F   # the same, each call committed to F first
    python -m bench.ceilings bare  --port P             # Falcon app: parses the form, fixed JSON
    python -m bench.ceilings relay --port P --target T  # Falcon app relaying to the echo server

The HTTP apps run on the gateway's uvicorn settings (uvloop, httptools), the echo server on
core's loop (uvloop), each with its garbage collector settled as theirs are. The echo
server answers CreateCall/UpdateCall with a fixed call, fans every call out as a
card event to its WatchCallCards streams, and swallows UploadRecord chunks. The
relay app forwards PBX posts, recordings and SSE card streams the way the gateway
does, with none of its rules.

With --store, the echo server first commits each call it answers as one row of an SQLite
file on a storage thread, as durably as core commits (WAL, synchronous FULL), then answers
and fans it out: the least a durable design pays for a request on this stack, with no rule.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import itertools
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import falcon
import falcon.asgi
import grpc
import grpc.aio
import uvicorn
import uvloop
from falcon.asgi import SSEvent
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from telephony.v1 import call_pb2, call_service_pb2, call_service_pb2_grpc
from vats_lifetime import settle_garbage_collector

CHUNK_SIZE = 64 * 1024
STATES = {"ringing": call_pb2.Call.STATE_RINGING, "answered": call_pb2.Call.STATE_ANSWERED}
EVENTS = {
    call_service_pb2.CallCardEvent.TYPE_SHOW: "show",
    call_service_pb2.CallCardEvent.TYPE_HIDE: "hide",
}


# --- gRPC echo -------------------------------------------------------------------------------


class DurableRows:
    """One row per call, committed on one storage thread as core commits (WAL, FULL)."""

    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS calls (id INTEGER PRIMARY KEY, pbx_call_id TEXT, state INT)"
        )
        self._thread = concurrent.futures.ThreadPoolExecutor(max_workers=1)

    def _commit(self, call_id: int, pbx_call_id: str, state: int) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        self._db.execute(
            "INSERT OR REPLACE INTO calls VALUES (?, ?, ?)", (call_id, pbx_call_id, state)
        )
        self._db.execute("COMMIT")

    async def commit(self, call: call_pb2.Call) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(
            self._thread, self._commit, call.call_id, call.pbx_call_id, call.state
        )


class EchoCalls(call_service_pb2_grpc.CallServiceServicer):
    def __init__(self, rows: DurableRows | None = None) -> None:
        self.ids = itertools.count(1)
        self.watchers: set[asyncio.Queue[call_service_pb2.CallCardEvent]] = set()
        self.rows = rows

    def _call(self, call_id: int, pbx_call_id: str, state: Any) -> call_pb2.Call:
        call = call_pb2.Call(call_id=call_id, channel_id=1, phone="777777777", state=state)
        call.ticket.ticket_id = call_id
        if pbx_call_id:
            call.pbx_call_id = pbx_call_id
        return call

    def _fan_out(self, kind: Any, call: call_pb2.Call) -> None:
        if not self.watchers:
            return
        event = call_service_pb2.CallCardEvent(seq=next(self.ids), type=kind, reason="")
        event.card.call_id = call.call_id
        event.card.phone = call.phone
        event.card.state = call.state
        if call.HasField("pbx_call_id"):
            event.card.pbx_call_id = call.pbx_call_id
        for queue in self.watchers:
            queue.put_nowait(event)

    async def CreateCall(
        self, request: call_service_pb2.CreateCallRequest, context: Any
    ) -> call_service_pb2.CreateCallResponse:
        call = self._call(next(self.ids), request.pbx_call_id, request.state or 1)
        if self.rows is not None:
            await self.rows.commit(call)
        self._fan_out(call_service_pb2.CallCardEvent.TYPE_SHOW, call)
        return call_service_pb2.CreateCallResponse(call=call, created=True)

    async def UpdateCall(
        self, request: call_service_pb2.UpdateCallRequest, context: Any
    ) -> call_service_pb2.UpdateCallResponse:
        call = self._call(request.call_id or 1, request.pbx_call_id, request.state)
        if self.rows is not None:
            await self.rows.commit(call)
        self._fan_out(call_service_pb2.CallCardEvent.TYPE_HIDE, call)
        return call_service_pb2.UpdateCallResponse(call=call)

    async def SubmitCalls(
        self, request: call_service_pb2.SubmitCallsRequest, context: Any
    ) -> call_service_pb2.SubmitCallsResponse:
        """Each command answered as CreateCall or UpdateCall answers it alone (the real
        gateway sends the PBX's requests in batches)."""
        response = call_service_pb2.SubmitCallsResponse()
        for command in request.commands:
            if command.HasField("create"):
                created = await self.CreateCall(command.create, context)
                response.outcomes.add(created=created)
            else:
                updated = await self.UpdateCall(command.update, context)
                response.outcomes.add(updated=updated)
        return response

    async def WatchCallCards(
        self, request: call_service_pb2.WatchCallCardsRequest, context: Any
    ) -> AsyncIterator[call_service_pb2.CallCardEvent]:
        queue: asyncio.Queue[call_service_pb2.CallCardEvent] = asyncio.Queue()
        self.watchers.add(queue)
        try:
            await context.send_initial_metadata(())
            while True:
                yield await queue.get()
        finally:
            self.watchers.discard(queue)

    async def UploadRecord(
        self, request_iterator: AsyncIterator[call_service_pb2.UploadRecordRequest], context: Any
    ) -> call_service_pb2.UploadRecordResponse:
        size = 0
        async for message in request_iterator:
            size += len(message.chunk)
        return call_service_pb2.UploadRecordResponse(
            recording=call_pb2.Recording(recording_id="echo", size_bytes=size)
        )


async def serve_echo(port: int, store: str = "") -> None:
    # core's options (core/server.py): thousands of streams may open at once.
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", 8 * 1024 * 1024),
            ("grpc.server.max_pending_requests", 20_000),
            ("grpc.server.max_pending_requests_hard_limit", 20_000),
        ]
    )
    rows = DurableRows(store) if store else None
    call_service_pb2_grpc.add_CallServiceServicer_to_server(EchoCalls(rows), server)
    checker = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    settle_garbage_collector()
    await checker.set("", health_pb2.HealthCheckResponse.SERVING)
    await server.wait_for_termination()


# --- HTTP apps -----------------------------------------------------------------------------------


async def read_form(req: falcon.asgi.Request, upload: Any = None) -> tuple[dict[str, str], int]:
    """Text fields of a multipart form; a file part goes to `upload` (or is read and dropped)."""
    fields: dict[str, str] = {}
    size = 0
    form = await req.get_media()
    async for part in form:
        if part.filename is not None:
            chunks = _chunks(part)
            if upload is not None:
                size = await upload(chunks)
            else:
                async for chunk in chunks:
                    size += len(chunk)
            continue
        fields[part.name] = (await part.stream.read()).decode()
    return fields, size


async def _chunks(part: Any) -> AsyncIterator[bytes]:
    while chunk := await part.stream.read(CHUNK_SIZE):
        yield chunk


class BareCalls:
    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, key: str) -> None:
        fields, _ = await read_form(req)
        resp.media = {
            "data": {
                "call_id": 1,
                "pbx_call_id": fields.get("pbx_call_id"),
                "user_id": None,
                "pbx_user_id": None,
                "call_status": fields.get("call_status", "ringing"),
                "audio_record": None,
                "ticket_id": 1,
            }
        }


class Relay:
    """Opens one channel to the echo server at startup (Falcon middleware hooks)."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.stub: call_service_pb2_grpc.CallServiceStub | None = None
        self.channel: grpc.aio.Channel | None = None

    async def process_startup(self, scope: Any, event: Any) -> None:
        self.channel = grpc.aio.insecure_channel(self.target)
        self.stub = call_service_pb2_grpc.CallServiceStub(self.channel)

    async def process_shutdown(self, scope: Any, event: Any) -> None:
        if self.channel is not None:
            await self.channel.close()

    async def upload(self, chunks: AsyncIterator[bytes]) -> int:
        assert self.stub is not None

        async def messages() -> AsyncIterator[call_service_pb2.UploadRecordRequest]:
            yield call_service_pb2.UploadRecordRequest(
                metadata=call_service_pb2.UploadRecordRequest.Metadata(file_name="x.wav")
            )
            async for chunk in chunks:
                yield call_service_pb2.UploadRecordRequest(chunk=chunk)

        reply = await self.stub.UploadRecord(messages(), timeout=600)
        return int(reply.recording.size_bytes)


class RelayCalls:
    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, key: str) -> None:
        stub = self.relay.stub
        assert stub is not None
        fields, _ = await read_form(req, self.relay.upload)
        state = STATES.get(fields.get("call_status", ""), call_pb2.Call.STATE_RINGING)
        channel = call_service_pb2.ChannelRef(channel_key=key)
        call: call_pb2.Call
        if fields.get("action") == "update_call":
            update = call_service_pb2.UpdateCallRequest(
                channel=channel, pbx_call_id=fields.get("pbx_call_id", ""), state=state
            )
            call = (await stub.UpdateCall(update, timeout=5)).call
        else:
            create = call_service_pb2.CreateCallRequest(
                channel=channel,
                direction=call_pb2.DIRECTION_OUTGOING,
                phone=fields.get("phone", ""),
                state=state,
                pbx_call_id=fields.get("pbx_call_id", ""),
                comment=fields.get("comment", ""),
            )
            call = (await stub.CreateCall(create, timeout=5)).call
        resp.media = {
            "data": {
                "call_id": call.call_id,
                "pbx_call_id": call.pbx_call_id,
                "user_id": None,
                "pbx_user_id": None,
                "call_status": fields.get("call_status", "ringing"),
                "audio_record": None,
                "ticket_id": call.ticket.ticket_id,
            }
        }


class RelayCards:
    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        assert self.relay.stub is not None
        stream = self.relay.stub.WatchCallCards(call_service_pb2.WatchCallCardsRequest())
        await stream.initial_metadata()
        resp.sse = self._events(stream)

    async def _events(self, stream: Any) -> AsyncIterator[SSEvent]:
        try:
            async for event in stream:
                card = event.card
                yield SSEvent(
                    event=EVENTS.get(event.type, "update"),
                    event_id=str(event.seq),
                    json={"call_id": card.call_id, "pbx_call_id": card.pbx_call_id},
                )
        finally:
            stream.cancel()


class Health:
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.media = {"status": "ok"}


class SettledCollector:
    """The garbage collector settled once the app has started, as the gateway's is."""

    async def process_startup(self, scope: dict[str, Any], event: dict[str, Any]) -> None:
        settle_garbage_collector()


def http_app(target: str | None) -> falcon.asgi.App:
    relay = Relay(target) if target else None
    middleware: list[Any] = [SettledCollector()]
    if relay is not None:
        middleware.append(relay)
    app = falcon.asgi.App(middleware=middleware)
    if relay is None:
        app.add_route("/api/v2/telephony/calls/{key}", BareCalls())
    else:
        app.add_route("/api/v2/telephony/calls/{key}", RelayCalls(relay))
        app.add_route("/api/v2/telephony/cards/stream", RelayCards(relay))
    app.add_route("/healthz", Health())
    return app


def serve_http(port: int, target: str | None) -> None:
    # The gateway's settings (gateway/__main__.py).
    uvicorn.run(
        http_app(target),
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        proxy_headers=True,
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=1,
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ceilings")
    parser.add_argument("kind", choices=("echo", "bare", "relay"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--target", default="")
    parser.add_argument("--store", default="", help="echo: commit each call to this file first")
    args = parser.parse_args()
    if args.kind == "echo":
        # core's loop (core/server.py).
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(serve_echo(args.port, args.store))
    else:
        serve_http(args.port, args.target if args.kind == "relay" else None)


if __name__ == "__main__":
    main()
