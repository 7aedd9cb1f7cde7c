"""An event sink that keeps what a store publishes, from any thread, in order."""

from __future__ import annotations

import threading

from core.model import PublishedEvent


class Sink:
    def __init__(self) -> None:
        self.events: list[PublishedEvent] = []
        self._lock = threading.Lock()

    def publish(self, event: PublishedEvent) -> None:
        with self._lock:
            self.events.append(event)

    @property
    def seqs(self) -> list[int]:
        return [e.seq for e in self.events]

    @property
    def pbx_ids(self) -> list[str | None]:
        return [e.view.call.pbx_call_id for e in self.events]
