"""A small Server-Sent Events reader for tests: reads a stream on a thread."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Self

import httpx


@dataclass
class SSEvent:
    event: str = "message"
    id: str | None = None
    data: str = ""
    comments: list[str] = field(default_factory=list)

    @property
    def json(self) -> Any:
        return json.loads(self.data)


class SSEReader:
    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.url = url
        self.headers = headers or {}
        self.events: queue.Queue[SSEvent] = queue.Queue()
        self.comments: list[str] = []
        self.status: int | None = None
        self.response_headers: httpx.Headers | None = None
        self._opened = threading.Event()
        self._client = httpx.Client(timeout=httpx.Timeout(10, read=60))
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._opened.wait(10):
            raise TimeoutError(f"no response from {url}")

    def _run(self) -> None:
        try:
            with self._client.stream("GET", self.url, headers=self.headers) as response:
                self.status = response.status_code
                self.response_headers = response.headers
                self._opened.set()
                if response.status_code != 200:
                    self.body = response.read().decode()
                    return
                self._read(response.iter_lines())
        except httpx.HTTPError:
            pass
        finally:
            self._opened.set()

    def _read(self, lines: Iterator[str]) -> None:
        current = SSEvent()
        data_lines: list[str] = []
        for line in lines:
            if self._stop:
                return
            if line == "":
                if data_lines or current.id is not None:
                    current.data = "\n".join(data_lines)
                    self.events.put(current)
                current, data_lines = SSEvent(), []
            elif line.startswith(":"):
                self.comments.append(line[1:].strip())
            else:
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "event":
                    current.event = value
                elif name == "id":
                    current.id = value
                elif name == "data":
                    data_lines.append(value)

    def next(self, timeout: float = 10) -> SSEvent:
        return self.events.get(timeout=timeout)

    def take(self, count: int, timeout: float = 10) -> list[SSEvent]:
        return [self.next(timeout) for _ in range(count)]

    def nothing_more(self, wait: float = 0.5) -> bool:
        time.sleep(wait)
        return self.events.empty()

    def close(self) -> None:
        self._stop = True
        self._client.close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
