"""A stand-in for the gateway's agent page and card stream, driven by the test that starts it.

It serves gateway/static/ the way the gateway does (/agent, /agent/vocabulary.js and
/static/...) and an SSE card stream whose events, failures and disconnects the test controls,
so the page can be tested on its own.
"""

import asyncio
import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from gateway.agent_vocabulary import AGENT_VOCABULARY_PATH, MEDIA_JS, script

EMPLOYEE_TOKEN = "token-anna"
SERVICE_TOKEN = "token-service"
STREAM_WAIT_S = 15.0
STREAM_PATH = "/api/v2/telephony/cards/stream"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}


@dataclass(frozen=True)
class StreamRequest:
    """One request the page made to the card stream."""

    access_token: str | None
    last_event_id_header: str | None
    last_event_id_query: str | None

    @property
    def last_event_id(self) -> str | None:
        return self.last_event_id_header or self.last_event_id_query


@dataclass(frozen=True)
class LoggedEvent:
    seq: int
    event: str
    data: dict[str, Any]

    def encode(self) -> bytes:
        payload = json.dumps(self.data, ensure_ascii=False)
        return f"event: {self.event}\nid: {self.seq}\ndata: {payload}\n\n".encode()


class StandInGateway:
    """HTTP server on 127.0.0.1 with a free port; runs on the test's event loop."""

    def __init__(
        self, static_dir: Path, employee_tokens: set[str], refused_tokens: dict[str, int]
    ) -> None:
        """`refused_tokens` maps tokens that exist but may not watch cards to the HTTP status."""
        self._static_dir = static_dir
        self._tokens = employee_tokens
        self._refused = refused_tokens
        self._server: asyncio.Server | None = None
        self._streams: set[asyncio.StreamWriter] = set()
        self._stream_opened = asyncio.Condition()
        self._handlers: set[asyncio.Task[None]] = set()
        self._log: list[LoggedEvent] = []
        self.stream_requests: list[StreamRequest] = []
        self.refuse_streams = False
        self.accepted_streams = 0
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def last_seq(self) -> int:
        return self._log[-1].seq if self._log else 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        await self.drop_streams()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def push(self, event: str, data: dict[str, Any]) -> int:
        """Log an event and send it to every open stream; returns its sequence number."""
        logged = LoggedEvent(self.last_seq + 1, event, data)
        self._log.append(logged)
        for writer in list(self._streams):
            writer.write(logged.encode())
            await writer.drain()
        return logged.seq

    async def drop_streams(self) -> None:
        """Cut every open stream, as a restarting gateway or a network failure would."""
        writers = list(self._streams)
        self._streams.clear()
        for writer in writers:
            writer.close()
        for writer in writers:
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def wait_for_streams(self, count: int) -> None:
        """Wait (up to STREAM_WAIT_S) until `count` stream connections were accepted in total."""
        async with asyncio.timeout(STREAM_WAIT_S), self._stream_opened:
            await self._stream_opened.wait_for(lambda: self.accepted_streams >= count)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._handlers.discard(task)
            self._streams.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, target, _ = request_line.split(" ", 2)
        headers = {}
        for line in header_lines:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        url = urlsplit(target)
        if method != "GET":
            await self._reply(writer, 405, "text/plain", b"method not allowed")
        elif url.path == STREAM_PATH:
            await self._stream(reader, writer, parse_qs(url.query), headers)
        elif url.path == "/agent":
            await self._file(writer, "agent.html")
        elif url.path == AGENT_VOCABULARY_PATH:
            await self._reply(writer, 200, MEDIA_JS, script())
        elif url.path.startswith("/static/"):
            await self._file(writer, url.path.removeprefix("/static/"))
        else:
            await self._reply(writer, 404, "text/plain", b"not found")

    async def _file(self, writer: asyncio.StreamWriter, name: str) -> None:
        path = self._static_dir / name
        if "/" in name or name.startswith(".") or not path.is_file():
            await self._reply(writer, 404, "text/plain", b"not found")
            return
        content_type = CONTENT_TYPES.get(path.suffix, "application/octet-stream")
        await self._reply(writer, 200, content_type, path.read_bytes())

    async def _stream(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        query: dict[str, list[str]],
        headers: dict[str, str],
    ) -> None:
        token = query.get("access_token", [None])[0]
        request = StreamRequest(
            access_token=token,
            last_event_id_header=headers.get("last-event-id"),
            last_event_id_query=query.get("last_event_id", [None])[0],
        )
        self.stream_requests.append(request)
        if token in self._refused:
            body = json.dumps({"error": {"code": "permission_denied", "message": "not allowed"}})
            await self._reply(writer, self._refused[token], "application/json", body.encode())
            return
        if token not in self._tokens:
            body = json.dumps({"error": {"code": "unauthenticated", "message": "unknown token"}})
            await self._reply(writer, 401, "application/json", body.encode())
            return
        if self.refuse_streams:
            body = json.dumps({"error": {"code": "unavailable", "message": "core is down"}})
            await self._reply(writer, 503, "application/json", body.encode(), retry_after=1)
            return
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Cache-Control: no-cache\r\nConnection: close\r\n\r\n: connected\n\n"
        )
        after = int(request.last_event_id) if request.last_event_id else self.last_seq
        for logged in self._log:
            if logged.seq > after:
                writer.write(logged.encode())
        await writer.drain()
        self._streams.add(writer)
        async with self._stream_opened:
            self.accepted_streams += 1
            self._stream_opened.notify_all()
        # Hold the stream open until the page goes away or the test cuts it.
        while writer in self._streams and await reader.read(1024):
            pass

    async def _reply(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        content_type: str,
        body: bytes,
        retry_after: int | None = None,
    ) -> None:
        reasons = {
            200: "OK",
            401: "Unauthorized",
            403: "Forbidden",
            404: "Not Found",
            405: "Method Not Allowed",
            503: "Service Unavailable",
        }
        extra = f"Retry-After: {retry_after}\r\n" if retry_after is not None else ""
        head = (
            f"HTTP/1.1 {status} {reasons.get(status, 'Error')}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            f"Cache-Control: no-store\r\n{extra}Connection: close\r\n\r\n"
        )
        writer.write(head.encode() + body)
        await writer.drain()
