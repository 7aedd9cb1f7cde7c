"""The supervisor board as a live stream: the board at once, then again after every change of
a call (from the event hub) or of a callback, changes close together sent as one board, and
afresh when the day turns.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import datetime

from core.app.board import Board, BoardDesk
from core.events import EventHub, StorageRun, Subscription

# Changes within this many seconds of the first one make one board: at most about four boards
# a second reach a watcher however busy the lines are.
COALESCE_SECONDS = 0.25

# Offered to the board streams when something the board shows changed without a call event.
_CHANGED = object()


class BoardFeed:
    def __init__(
        self,
        board: BoardDesk,
        hub: EventHub,
        runner: StorageRun,
        coalesce_seconds: float = COALESCE_SECONDS,
    ) -> None:
        self.board = board
        self.hub = hub
        self.runner = runner
        self.coalesce_seconds = coalesce_seconds
        self._watching: set[Subscription] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def changed(self) -> None:
        """Something the board shows changed that is no call event (a callback was marked).
        May be called from any thread."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._offer)

    def _offer(self) -> None:
        for subscription in list(self._watching):
            subscription.offer(_CHANGED)

    async def watch(self, subscription: Subscription) -> AsyncIterator[Board]:
        """Boards for one watcher, on a subscription to the hub taken by the caller; ends when
        the subscription is closed (the server stops, the token is revoked)."""
        self._loop = asyncio.get_running_loop()
        self._watching.add(subscription)
        try:
            board = await self.runner.run(self.board.snapshot)
            yield board
            while await self._next_change(subscription, board.day.end):
                await asyncio.sleep(self.coalesce_seconds)
                subscription.drain()
                if subscription.closed:
                    return
                board = await self.runner.run(self.board.snapshot)
                yield board
        finally:
            self._watching.discard(subscription)

    async def _next_change(self, subscription: Subscription, day_end: datetime) -> bool:
        """Wait for a change, or for the day to turn; False once the subscription is closed."""
        left = (day_end - self.board.clock()).total_seconds()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(subscription.get(), timeout=max(left, 0.0))
        return not subscription.closed
