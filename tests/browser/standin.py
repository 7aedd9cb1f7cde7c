"""A stand-in for the gateway's pages and the APIs they use, driven by the test that starts it.

It serves gateway/static/ the way the gateway does (/agent, /board, /agent/vocabulary.js and
/static/..., under the gateway's Content-Security-Policy), stream tickets, the card and board
SSE streams whose events, failures and disconnects the test controls, and the history and
callback lists from data the test sets, so the pages can be tested on their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from gateway.agent_vocabulary import AGENT_VOCABULARY_PATH, MEDIA_JS, script
from gateway.security import page_policy

EMPLOYEE_TOKEN = "token-anna"
SERVICE_TOKEN = "token-service"
SUPERVISOR_TOKEN = "token-sofia"
EXPIRED_TOKEN = "token-old"
# Not a role: a token that existed and has expired.
EXPIRED = "expired"
ROLES = {
    EMPLOYEE_TOKEN: "employee",
    SERVICE_TOKEN: "service",
    SUPERVISOR_TOKEN: "supervisor",
    EXPIRED_TOKEN: EXPIRED,
}
STREAM_WAIT_S = 15.0
API = "/api/v2/telephony"
STREAM_PATH = f"{API}/cards/stream"
BOARD_STREAM_PATH = f"{API}/board/stream"
TICKETS_PATH = f"{API}/stream-tickets"
HISTORY_PATH = f"{API}/history"
CALLBACKS_PATH = f"{API}/callbacks"
RECORDING_PATH = "/recordings/"
# Who may open which stream.
STREAM_ROLES = {STREAM_PATH: {"employee"}, BOARD_STREAM_PATH: {"supervisor", "admin"}}
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
PAGES = {"/agent": "agent.html", "/board": "board.html"}
REASONS = {
    200: "OK",
    201: "Created",
    206: "Partial Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    416: "Range Not Satisfiable",
    503: "Service Unavailable",
}
_CALLED_BACK = re.compile(rf"{CALLBACKS_PATH}/([^/]+)/called-back")
_RANGE = re.compile(r"bytes=(\d+)-(\d*)")


@dataclass(frozen=True)
class Request:
    """One request a page made, as the stand-in saw it."""

    method: str
    target: str
    headers: dict[str, str]

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.target).query)

    def param(self, name: str) -> str | None:
        return self.query.get(name, [None])[0]

    @property
    def bearer(self) -> str | None:
        scheme, _, token = self.headers.get("authorization", "").partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None


@dataclass(frozen=True)
class StreamRequest:
    """One request the page made to a stream; `token` is whose it was, however it came."""

    path: str
    token: str | None
    ticket: str | None
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


def board_message(board: dict[str, Any]) -> bytes:
    return f"event: board\ndata: {json.dumps(board, ensure_ascii=False)}\n\n".encode()


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class Listing:
    """A list the stand-in pages through as the API does (page_token: an offset)."""

    items: list[dict[str, Any]] = field(default_factory=list)

    def page(self, request: Request) -> tuple[list[dict[str, Any]], str | None]:
        size = int(request.param("page_size") or 50)
        start = int(request.param("page_token") or 0)
        end = start + size
        return self.items[start:end], str(end) if end < len(self.items) else None


class StandInGateway:
    """HTTP server on 127.0.0.1 with a free port; runs on the test's event loop."""

    def __init__(self, static_dir: Path, roles: dict[str, str] | None = None) -> None:
        self._static_dir = static_dir
        self._roles = dict(ROLES if roles is None else roles)
        self._server: asyncio.Server | None = None
        self._streams: dict[asyncio.StreamWriter, str] = {}
        self._stream_opened = asyncio.Condition()
        self._handlers: set[asyncio.Task[None]] = set()
        self._log: list[LoggedEvent] = []
        self._tickets: dict[str, str] = {}
        self.requests: list[Request] = []
        self.stream_requests: list[StreamRequest] = []
        self.tickets_issued = 0
        self.refuse_streams = False
        self.accepted_streams = 0
        self.history = Listing()
        self.callbacks = Listing()
        self.called_back: list[str] = []
        self.board: dict[str, Any] | None = None
        self.recordings: dict[str, bytes] = {}
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
        """Log a card event and send it to every open card stream; returns its sequence number."""
        logged = LoggedEvent(self.last_seq + 1, event, data)
        self._log.append(logged)
        await self._send(STREAM_PATH, logged.encode())
        return logged.seq

    def revoke(self, token: str) -> None:
        """The token no longer exists: it gets no ticket, list or stream any more."""
        self._roles.pop(token, None)

    async def push_board(self, board: dict[str, Any]) -> None:
        """Make `board` the current board and send it to every open board stream."""
        self.board = board
        await self._send(BOARD_STREAM_PATH, board_message(board))

    async def _send(self, path: str, message: bytes) -> None:
        for writer, stream_path in list(self._streams.items()):
            if stream_path == path:
                writer.write(message)
                await writer.drain()

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

    def add_recording(self, name: str, data: bytes) -> str:
        """Serve `data` as a WAV recording (with Range); returns its signed-looking URL."""
        self.recordings[name] = data
        return f"{self.url}{RECORDING_PATH}{name}?signature={secrets.token_hex(4)}"

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
            self._streams.pop(writer, None)
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
        length = int(headers.get("content-length") or 0)
        if length:
            await reader.readexactly(length)
        request = Request(method, target, headers)
        self.requests.append(request)
        if request.path in STREAM_ROLES and method == "GET":
            await self._stream(reader, writer, request)
        elif request.path.startswith(API):
            await self._api(writer, request)
        elif method != "GET":
            await self._reply(writer, 405, "text/plain", b"method not allowed")
        else:
            await self._asset(writer, request)

    async def _asset(self, writer: asyncio.StreamWriter, request: Request) -> None:
        path = request.path
        if path in PAGES:
            await self._file(writer, PAGES[path])
        elif path == AGENT_VOCABULARY_PATH:
            await self._reply(writer, 200, MEDIA_JS, script())
        elif path.startswith("/static/"):
            await self._file(writer, path.removeprefix("/static/"))
        elif path.startswith(RECORDING_PATH):
            await self._recording(writer, request)
        else:
            await self._reply(writer, 404, "text/plain", b"not found")

    async def _api(self, writer: asyncio.StreamWriter, request: Request) -> None:
        token = request.bearer
        if token not in self._roles:
            await self._error(writer, 401, "unauthenticated", "unknown token")
            return
        if self._roles[token] == EXPIRED:
            await self._error(writer, 401, "token_expired", "the token has expired")
            return
        path, method = request.path, request.method
        if (method, path) == ("POST", TICKETS_PATH):
            ticket = secrets.token_urlsafe(16)
            self._tickets[ticket] = token
            self.tickets_issued += 1
            expires = iso(datetime.now(UTC) + timedelta(seconds=60))
            await self._json(writer, 201, {"ticket": ticket, "expires_at": expires})
        elif (method, path) == ("GET", HISTORY_PATH):
            items, next_token = self.history.page(request)
            await self._json(writer, 200, {"data": items, "next_page_token": next_token})
        elif (method, path) == ("GET", CALLBACKS_PATH):
            items, next_token = self.callbacks.page(request)
            body = {"data": items, "next_page_token": next_token}
            await self._json(writer, 200, {**body, "open_count": len(self.callbacks.items)})
        elif method == "POST" and (match := _CALLED_BACK.fullmatch(path)):
            await self._mark(writer, match.group(1))
        else:
            await self._error(writer, 404, "not-found", "no such resource")

    async def _mark(self, writer: asyncio.StreamWriter, callback_id: str) -> None:
        found = [c for c in self.callbacks.items if str(c["callback_id"]) == callback_id]
        if not found:
            await self._error(writer, 404, "not-found", "callback not found")
            return
        self.callbacks.items.remove(found[0])
        self.called_back.append(callback_id)
        resolved = {**found[0], "state": "resolved", "resolution": "called-back"}
        await self._json(writer, 200, {"data": resolved})

    def _stream_token(self, request: Request) -> str | None:
        ticket = request.param("ticket")
        if ticket is not None:
            return self._tickets.pop(ticket, None)  # one use only
        return request.bearer or request.param("access_token")

    async def _stream(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: Request
    ) -> None:
        token = self._stream_token(request)
        self.stream_requests.append(
            StreamRequest(
                path=request.path,
                token=token,
                ticket=request.param("ticket"),
                access_token=request.param("access_token"),
                last_event_id_header=request.headers.get("last-event-id"),
                last_event_id_query=request.param("last_event_id"),
            )
        )
        if token not in self._roles:
            await self._error(writer, 401, "unauthenticated", "unknown token or ticket")
            return
        if self._roles[token] not in STREAM_ROLES[request.path]:
            await self._error(writer, 403, "permission-denied", "not allowed")
            return
        if self.refuse_streams:
            await self._error(writer, 503, "unavailable", "core is down", retry_after=1)
            return
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Cache-Control: no-store\r\nConnection: close\r\n\r\n: connected\n\n"
        )
        if request.path == BOARD_STREAM_PATH:
            if self.board is not None:
                writer.write(board_message(self.board))
        else:
            last = request.headers.get("last-event-id") or request.param("last_event_id")
            after = int(last) if last else self.last_seq
            for logged in self._log:
                if logged.seq > after:
                    writer.write(logged.encode())
        await writer.drain()
        self._streams[writer] = request.path
        async with self._stream_opened:
            self.accepted_streams += 1
            self._stream_opened.notify_all()
        # Hold the stream open until the page goes away or the test cuts it.
        while writer in self._streams and await reader.read(1024):
            pass

    async def _recording(self, writer: asyncio.StreamWriter, request: Request) -> None:
        data = self.recordings.get(request.path.removeprefix(RECORDING_PATH))
        if data is None:
            await self._reply(writer, 404, "text/plain", b"not found")
            return
        match = _RANGE.fullmatch(request.headers.get("range", ""))
        if match is None:
            await self._reply(writer, 200, "audio/wav", data, extra={"Accept-Ranges": "bytes"})
            return
        start = int(match.group(1))
        end = min(int(match.group(2) or len(data) - 1), len(data) - 1)
        if start > end:
            await self._reply(
                writer, 416, "text/plain", b"", extra={"Content-Range": f"*/{len(data)}"}
            )
            return
        part = {"Content-Range": f"bytes {start}-{end}/{len(data)}", "Accept-Ranges": "bytes"}
        await self._reply(writer, 206, "audio/wav", data[start : end + 1], extra=part)

    async def _file(self, writer: asyncio.StreamWriter, name: str) -> None:
        path = self._static_dir / name
        if "/" in name or name.startswith(".") or not path.is_file():
            await self._reply(writer, 404, "text/plain", b"not found")
            return
        content_type = CONTENT_TYPES.get(path.suffix, "application/octet-stream")
        extra = {"Content-Security-Policy": page_policy()} if path.suffix == ".html" else {}
        await self._reply(writer, 200, content_type, path.read_bytes(), extra=extra)

    async def _json(self, writer: asyncio.StreamWriter, status: int, body: Any) -> None:
        await self._reply(writer, status, "application/json", json.dumps(body).encode())

    async def _error(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        code: str,
        message: str,
        retry_after: int | None = None,
    ) -> None:
        body = json.dumps({"error": {"code": code, "message": message}}).encode()
        extra = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        await self._reply(writer, status, "application/json", body, extra=extra)

    async def _reply(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        content_type: str,
        body: bytes,
        extra: dict[str, str] | None = None,
    ) -> None:
        more = "".join(f"{name}: {value}\r\n" for name, value in (extra or {}).items())
        head = (
            f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            f"Cache-Control: no-store\r\n{more}Connection: close\r\n\r\n"
        )
        writer.write(head.encode() + body)
        await writer.drain()
