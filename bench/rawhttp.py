"""A small HTTP/1.1 client on asyncio streams: keep-alive requests, streamed bodies, SSE lines.

Load processes use it instead of a full client library so that the client's own cost stays
small and the request bodies can be streamed from a generator.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from urllib.parse import urlsplit

BOUNDARY = "----vatsbench7d1f0c2e"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def form_part(name: str, value: str) -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
    ).encode()


def file_part_head(name: str, file_name: str, content_type: str) -> bytes:
    return (
        f"--{BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="{name}"; filename="{file_name}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode()


CLOSING = f"--{BOUNDARY}--\r\n".encode()


def multipart(fields: Iterable[tuple[str, str]]) -> bytes:
    return b"".join(form_part(k, v) for k, v in fields) + CLOSING


def host_port(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80, parts.path or "/"


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str):
        self.reader = reader
        self.writer = writer
        self.host = host

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
        return cls(reader, writer, f"{host}:{port}")

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()

    def send_head(self, method: str, path: str, headers: dict[str, str]) -> None:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())

    async def read_head(self) -> tuple[int, dict[str, str]]:
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("the server closed the connection")
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                return status, headers
            key, _, value = line.decode("latin-1").partition(":")
            headers[key.strip().lower()] = value.strip()

    async def read_body(self, headers: dict[str, str]) -> bytes:
        if "content-length" in headers:
            return await self.reader.readexactly(int(headers["content-length"]))
        if headers.get("transfer-encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int((await self.reader.readline()).strip() or b"0", 16)
                if size == 0:
                    await self.reader.readline()
                    return b"".join(chunks)
                chunks.append(await self.reader.readexactly(size))
                await self.reader.readline()
        return await self.reader.read()

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        self.send_head(method, path, {**(headers or {}), "Content-Length": str(len(body))})
        self.writer.write(body)
        await self.writer.drain()
        status, reply_headers = await self.read_head()
        return status, await self.read_body(reply_headers)

    async def stream_request(
        self,
        method: str,
        path: str,
        body: AsyncIterator[bytes],
        length: int,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        """Send a body of known length from a generator, never holding more than a chunk."""
        self.send_head(method, path, {**(headers or {}), "Content-Length": str(length)})
        async for chunk in body:
            self.writer.write(chunk)
            await self.writer.drain()
        status, reply_headers = await self.read_head()
        return status, await self.read_body(reply_headers)
