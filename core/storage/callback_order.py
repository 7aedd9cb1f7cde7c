"""The order callbacks are listed in, as both adapters index it: by state (open before
resolved), then by position within the state, then by id.

The position is the time a callback is listed by (Callback.listed_at) in milliseconds, negated
for resolved ones (latest first): one ascending key serves both orders. A page is read one
state at a time, each an ordered walk of one index from where the page before ended.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from core.domain import Callback, CallbackState
from core.model import CallbackCursor, CallbackQuery

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)


def position(state: CallbackState, at: datetime) -> int:
    milliseconds = (at - _EPOCH) // _MILLISECOND
    return milliseconds if state is CallbackState.OPEN else -milliseconds


def position_of(callback: Callback) -> int:
    return position(callback.state, callback.listed_at)


# Where a walk of one state starts: after this (position, callback id), or at its start.
After = tuple[int, int] | None
# Reads up to `limit` callbacks of one state of a query, in order, after a point.
StateReader = Callable[[CallbackQuery, CallbackState, After, int], list[Callback]]


def walk(
    query: CallbackQuery, after: CallbackCursor | None, limit: int, read: StateReader
) -> list[Callback]:
    """Up to `limit` callbacks of `query` after `after`: the states in order (open first),
    each read by `read` from where the cursor left it."""
    found: list[Callback] = []
    if limit <= 0:
        # Nothing is asked for (a limit of 0 would mean "no limit" to MongoDB).
        return found
    for state in sorted(query.states):
        if after is not None and state < after.state:
            continue
        start: After = None
        if after is not None and state == after.state:
            start = (position(state, after.at), after.callback_id)
        found += read(query, state, start, limit - len(found))
        if len(found) >= limit:
            break
    return found
