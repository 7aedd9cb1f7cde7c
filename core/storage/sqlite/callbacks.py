"""Missed callbacks and the figures' reads of the calls, on SQLite (schema migration 3).

A callback's row carries its list position (core.storage.callback_order); `callback_viewers`
repeats it for each employee who may see the callback, so that every listing is one index
range in order, whatever the filters.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from core.domain import (
    Callback,
    CallbackState,
    CallFacts,
    Direction,
    Resolution,
    Status,
)
from core.model import CallbackCursor, CallbackQuery
from core.storage import callback_order
from core.storage.port import StorageConflict
from core.storage.sqlite.repositories import Row, Session, from_ms, to_ms

COLUMNS = (
    "callback_id",
    "channel_id",
    "phone_key",
    "phone",
    "phone_e164",
    "contact_id",
    "first_missed_at",
    "last_missed_at",
    "last_call_id",
    "last_status",
    "attempts",
    "audience",
    "state",
    "position",
    "resolved_at",
    "resolution",
    "resolved_by_employee_id",
    "resolved_by_call_id",
    "resolved_by_token_id",
    "version",
)
_FIELDS = ", ".join(f"b.{name}" for name in COLUMNS)
_INSERT = f"INSERT INTO callbacks ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
_UPDATE = (
    "UPDATE callbacks SET "
    + ", ".join(f"{name} = ?" for name in COLUMNS[1:])
    + " WHERE callback_id = ? AND version = ?"
)
# The sequence callback ids come from.
_SEQUENCE = "callback"

_FACT_FIELDS = (
    "c.call_id, c.channel_id, c.direction, c.status, c.created_at, c.answered_at, c.ended_at"
)


def _or_none(value: datetime | None) -> int | None:
    return None if value is None else to_ms(value)


def _values(callback: Callback) -> tuple[Any, ...]:
    return (
        callback.callback_id,
        callback.channel_id,
        callback.phone_key,
        callback.phone,
        callback.phone_e164,
        callback.contact_id,
        to_ms(callback.first_missed_at),
        to_ms(callback.last_missed_at),
        callback.last_call_id,
        callback.last_status.value,
        callback.attempts,
        json.dumps(list(callback.audience)),
        callback.state.value,
        callback_order.position_of(callback),
        _or_none(callback.resolved_at),
        None if callback.resolution is None else callback.resolution.value,
        callback.resolved_by_employee_id,
        callback.resolved_by_call_id,
        callback.resolved_by_token_id,
        callback.version,
    )


def _callback(row: Row) -> Callback:
    return Callback(
        callback_id=row[0],
        channel_id=row[1],
        phone_key=row[2],
        phone=row[3],
        phone_e164=row[4],
        contact_id=row[5],
        first_missed_at=from_ms(row[6]),
        last_missed_at=from_ms(row[7]),
        last_call_id=row[8],
        last_status=Status(row[9]),
        attempts=row[10],
        audience=tuple(json.loads(row[11])),
        state=CallbackState(row[12]),
        resolved_at=None if row[14] is None else from_ms(row[14]),
        resolution=None if row[15] is None else Resolution(row[15]),
        resolved_by_employee_id=row[16],
        resolved_by_call_id=row[17],
        resolved_by_token_id=row[18],
        version=row[19],
    )


CALLBACK_BY_ID = f"SELECT {_FIELDS} FROM callbacks AS b WHERE b.callback_id = ?"
# Must read as the callbacks_open_by_phone index's condition for the planner to use it.
OPEN_CALLBACK_FOR = (
    f"SELECT {_FIELDS} FROM callbacks AS b "
    "WHERE b.channel_id = ? AND b.phone_key = ? AND b.state = 'open'"
)
CALLS_CREATED_BETWEEN = (
    f"SELECT {_FACT_FIELDS} FROM calls AS c INDEXED BY calls_newest "
    "WHERE c.created_at >= ? AND c.created_at < ? ORDER BY c.created_at, c.call_id"
)
# Repeats the calls_answered_by_end index's condition for the planner to use it.
ANSWERED_CALLS_ENDED_BETWEEN = (
    f"SELECT {_FACT_FIELDS} FROM calls AS c INDEXED BY calls_answered_by_end "
    "WHERE c.ended_at >= ? AND c.ended_at < ? "
    "AND c.ended_at IS NOT NULL AND c.answered_at IS NOT NULL ORDER BY c.ended_at"
)


def count_statement(channel_id: int | None, employee_id: int | None) -> tuple[str, list[Any]]:
    """How many callbacks are open, on one index whatever the filters."""
    if employee_id is None:
        if channel_id is None:
            return "SELECT count(*) FROM callbacks WHERE state = 'open'", []
        return "SELECT count(*) FROM callbacks WHERE channel_id = ? AND state = 'open'", [
            channel_id
        ]
    sql = (
        "SELECT count(*) FROM callback_viewers AS v CROSS JOIN callbacks AS b "
        "ON b.callback_id = v.callback_id WHERE v.employee_id = ? AND v.state = 'open'"
    )
    if channel_id is None:
        return sql, [employee_id]
    return f"{sql} AND +b.channel_id = ?", [employee_id, channel_id]


def page_statement(
    query: CallbackQuery, state: CallbackState, after: callback_order.After, limit: int
) -> tuple[str, list[Any]]:
    """One state's part of a page: driven by the viewers' index for an employee, else by the
    channel's or the whole list's, in index order from `after`; the channel of an employee's
    callbacks is checked on the rows it yields (`+b.` keeps the planner on the viewers)."""
    key = "v" if query.employee_id is not None else "b"
    conditions: list[str] = []
    params: list[Any] = []
    if query.employee_id is not None:
        source = "callback_viewers AS v CROSS JOIN callbacks AS b ON b.callback_id = v.callback_id"
        conditions.append("v.employee_id = ?")
        params.append(query.employee_id)
    else:
        source = "callbacks AS b"
    if query.channel_id is not None:
        conditions.append(f"{'+' if key == 'v' else ''}b.channel_id = ?")
        params.append(query.channel_id)
    conditions.append(f"{key}.state = ?")
    params.append(state.value)
    if after is not None:
        conditions.append(f"({key}.position, {key}.callback_id) > (?, ?)")
        params.extend(after)
    where = " AND ".join(conditions)
    order = f"ORDER BY {key}.position, {key}.callback_id LIMIT ?"
    return f"SELECT {_FIELDS} FROM {source} WHERE {where} {order}", [*params, limit]


class SqliteCallbackRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def next_id(self) -> int:
        return self._session.next_value(_SEQUENCE)

    def add(self, callback: Callback) -> None:
        self._session.write(_INSERT, _values(callback))
        self._add_viewers(callback)

    def save(self, callback: Callback) -> None:
        values = _values(callback)
        changed = self._session.write(
            _UPDATE, (*values[1:-1], callback.version + 1, callback.callback_id, callback.version)
        )
        if changed != 1:
            self._session.fail(
                StorageConflict(
                    f"callback {callback.callback_id} changed since version {callback.version}"
                )
            )
        self._session.write(
            "DELETE FROM callback_viewers WHERE callback_id = ?", (callback.callback_id,)
        )
        self._add_viewers(callback)
        callback.version += 1

    def _add_viewers(self, callback: Callback) -> None:
        state, position = callback.state.value, callback_order.position_of(callback)
        self._session.write_many(
            "INSERT INTO callback_viewers (employee_id, state, position, callback_id) "
            "VALUES (?, ?, ?, ?)",
            ((e, state, position, callback.callback_id) for e in sorted(set(callback.audience))),
        )

    def get(self, callback_id: int) -> Callback | None:
        row = self._session.row(CALLBACK_BY_ID, (callback_id,))
        return None if row is None else _callback(row)

    def open_for(self, channel_id: int, phone_key: str) -> Callback | None:
        row = self._session.row(OPEN_CALLBACK_FOR, (channel_id, phone_key))
        return None if row is None else _callback(row)

    def page(
        self, query: CallbackQuery, after: CallbackCursor | None, limit: int
    ) -> list[Callback]:
        return callback_order.walk(query, after, limit, self._part)

    def _part(
        self, query: CallbackQuery, state: CallbackState, after: callback_order.After, limit: int
    ) -> list[Callback]:
        sql, params = page_statement(query, state, after, limit)
        return [_callback(row) for row in self._session.rows(sql, params)]

    def count_open(self, channel_id: int | None = None, employee_id: int | None = None) -> int:
        row = self._session.row(*count_statement(channel_id, employee_id))
        assert row is not None
        return int(row[0])


def _facts(rows: Iterable[Row]) -> list[CallFacts]:
    return [
        CallFacts(
            call_id=row[0],
            channel_id=row[1],
            direction=Direction(row[2]),
            status=Status(row[3]),
            created_at=from_ms(row[4]),
            answered_at=None if row[5] is None else from_ms(row[5]),
            ended_at=None if row[6] is None else from_ms(row[6]),
        )
        for row in rows
    ]


class SqliteCallFactsRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def created_between(self, start: datetime, end: datetime) -> list[CallFacts]:
        return _facts(self._session.rows(CALLS_CREATED_BETWEEN, (to_ms(start), to_ms(end))))

    def ended_between(self, start: datetime, end: datetime) -> list[CallFacts]:
        rows = self._session.rows(ANSWERED_CALLS_ENDED_BETWEEN, (to_ms(start), to_ms(end)))
        return _facts(rows)
