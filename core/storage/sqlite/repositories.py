"""The storage port's repositories on SQLite: the SQL for every record and query path.

Each repository works inside one unit of work's `Session`, which owns the
connection and the transaction; no repository commits.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from core.domain import ACTIVE_STATUSES, CardEvent, Direction, Status, StatusChange
from core.model import (
    Call,
    CallQuery,
    CallView,
    Channel,
    Comment,
    Contact,
    Department,
    Employee,
    Group,
    IdempotencyRecord,
    PageCursor,
    PublishedEvent,
    Recording,
    Ticket,
    Token,
)
from core.storage import payloads
from core.storage.port import StorageConflict
from core.storage.sqlite import schema

Row = tuple[Any, ...]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)

# Unique and primary key violations are another writer's record in the way;
# any other constraint failing is a bug and is left to surface as it is.
_CONFLICTS = frozenset({"SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"})


def to_ms(value: datetime) -> int:
    if value.tzinfo is None:
        raise ValueError(f"a naive datetime cannot be stored: {value!r}")
    return (value - _EPOCH) // _MILLISECOND


def from_ms(value: int) -> datetime:
    return _EPOCH + value * _MILLISECOND


def _to_ms_or_none(value: datetime | None) -> int | None:
    return None if value is None else to_ms(value)


def _from_ms_or_none(value: int | None) -> datetime | None:
    return None if value is None else from_ms(value)


# One encoder for every stored payload (json.dumps with options builds one per call).
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def _json(value: Any) -> str:
    return _ENCODER.encode(value)


class Session:
    """One unit of work's connection, its open transaction and what it has done."""

    def __init__(self, connection: sqlite3.Connection, writable: bool) -> None:
        self.connection = connection
        self.writable = writable
        self.open = True
        # Set by the first conflicting write: the unit can then only roll back.
        self.conflict: StorageConflict | None = None
        # Events added in the open transaction, for the event sink after COMMIT.
        self.events: list[PublishedEvent] = []

    def _begin(self) -> None:
        if not self.open:
            raise RuntimeError("the unit of work is closed")
        if not self.connection.in_transaction:
            if self.writable:
                # The store opened the writer's transaction for this unit; SQLite ends it
                # on an error it cannot undo in part, and the unit must not go on without.
                raise sqlite3.OperationalError("the database rolled the transaction back")
            # Reads share one snapshot until the unit ends.
            self.connection.execute("BEGIN")

    def _check_writable(self) -> None:
        if not self.writable:
            raise RuntimeError("a reading unit of work cannot write; use store.unit_of_work()")

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        self._begin()
        return self.connection.execute(sql, params).fetchall()

    def row(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        self._begin()
        found: Row | None = self.connection.execute(sql, params).fetchone()
        return found

    def write(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one change; returns how many rows it changed."""
        self._check_writable()
        self._begin()
        try:
            return self.connection.execute(sql, params).rowcount
        except sqlite3.IntegrityError as error:
            self._raise_conflict_for(error)
            raise

    def write_many(self, sql: str, params: Iterable[Sequence[Any]]) -> None:
        self._check_writable()
        self._begin()
        try:
            self.connection.executemany(sql, params)
        except sqlite3.IntegrityError as error:
            self._raise_conflict_for(error)
            raise

    def _raise_conflict_for(self, error: sqlite3.IntegrityError) -> None:
        if error.sqlite_errorname in _CONFLICTS:
            self.fail(StorageConflict(str(error)), error)

    def fail(self, conflict: StorageConflict, cause: BaseException | None = None) -> None:
        """Raise `conflict` and keep it: nothing of this unit may be committed now."""
        self.conflict = conflict
        raise conflict from cause

    def next_value(self, name: str) -> int:
        if not self.writable:
            raise RuntimeError(
                "ids are given out only in a unit of work that writes; use store.unit_of_work()"
            )
        self._begin()
        row = self.connection.execute(
            "INSERT INTO sequences (name, value) VALUES (?, 1) "
            "ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING value",
            (name,),
        ).fetchone()
        return int(row[0])

    def raise_value(self, name: str, at_least: int) -> None:
        self.write(
            "INSERT INTO sequences (name, value) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = max(value, excluded.value)",
            (name, at_least),
        )

    def value(self, name: str) -> int:
        found = self.row("SELECT value FROM sequences WHERE name = ?", (name,))
        return 0 if found is None else int(found[0])


# --- calls -------------------------------------------------------------------------------------

CALL_COLUMNS = (
    "call_id",
    "channel_id",
    "direction",
    "phone",
    "status",
    "created_at",
    "updated_at",
    "pbx_call_id",
    "user_id",
    "pbx_user_id",
    "audience",
    "viewers",
    "history",
    "answered_at",
    "ended_at",
    "expired",
    "version",
    "ticket_id",
    "contact_id",
    "phone_e164",
    "phone_key",
)
_CALL_FIELDS = ", ".join(f"c.{name}" for name in CALL_COLUMNS)

# The domain's active statuses, in the order they are declared: the term must read exactly as
# in the schema's calls_live index (migration 2) for the planner to use that index.
LIVE_STATUSES = "({})".format(", ".join(f"'{s.value}'" for s in Status if s.is_active))

INSERT_CALL = (
    f"INSERT INTO calls ({', '.join(CALL_COLUMNS)}) VALUES ({', '.join('?' for _ in CALL_COLUMNS)})"
)
UPDATE_CALL = (
    "UPDATE calls SET "
    + ", ".join(f"{name} = ?" for name in CALL_COLUMNS[1:])
    + " WHERE call_id = ? AND version = ?"
)
CALL_BY_ID = f"SELECT {_CALL_FIELDS} FROM calls AS c WHERE c.call_id = ?"
CALL_BY_PBX_CALL_ID = (
    f"SELECT {_CALL_FIELDS} FROM calls AS c WHERE c.channel_id = ? AND c.pbx_call_id = ?"
)
CALLS_SHOWN_TO = (
    f"SELECT {_CALL_FIELDS} FROM call_viewers AS v CROSS JOIN calls AS c "
    "ON c.call_id = v.call_id WHERE v.employee_id = ? ORDER BY v.call_id"
)
STALE_LIVE_CALLS = (
    f"SELECT {_CALL_FIELDS} FROM calls AS c WHERE c.status IN {LIVE_STATUSES} "
    "AND c.status = ? AND c.expired = 0 AND c.updated_at <= ? ORDER BY c.updated_at"
)
STALE_FINAL_CALLS = (
    f"SELECT {_CALL_FIELDS} FROM calls AS c "
    "WHERE c.status = ? AND +c.expired = 0 AND +c.updated_at <= ?"
)
ACTIVE_CALLS = f"SELECT {_CALL_FIELDS} FROM calls AS c WHERE c.status IN {LIVE_STATUSES}"


def _call_values(call: Call) -> tuple[Any, ...]:
    return (
        call.call_id,
        call.channel_id,
        call.direction.value,
        call.phone,
        call.status.value,
        to_ms(call.created_at),
        to_ms(call.updated_at),
        call.pbx_call_id,
        call.user_id,
        call.pbx_user_id,
        _json(list(call.audience)),
        _json(list(call.viewers)),
        _json([[change.status.value, to_ms(change.at)] for change in call.history]),
        _to_ms_or_none(call.answered_at),
        _to_ms_or_none(call.ended_at),
        int(call.expired),
        call.version,
        call.ticket_id,
        call.contact_id,
        call.phone_e164,
        call.phone_key,
    )


def _call(row: Row) -> Call:
    return Call(
        call_id=row[0],
        channel_id=row[1],
        direction=Direction(row[2]),
        phone=row[3],
        status=Status(row[4]),
        created_at=from_ms(row[5]),
        updated_at=from_ms(row[6]),
        pbx_call_id=row[7],
        user_id=row[8],
        pbx_user_id=row[9],
        audience=tuple(json.loads(row[10])),
        viewers=tuple(json.loads(row[11])),
        history=[StatusChange(Status(s), from_ms(at)) for s, at in json.loads(row[12])],
        answered_at=_from_ms_or_none(row[13]),
        ended_at=_from_ms_or_none(row[14]),
        expired=bool(row[15]),
        version=row[16],
        ticket_id=row[17],
        contact_id=row[18],
        phone_e164=row[19],
        phone_key=row[20],
    )


def _concerned(audience: Iterable[int], user_id: int | None) -> set[int]:
    """Whose history a call is in: its audience and the employee it is bound to."""
    people = set(audience)
    if user_id is not None:
        people.add(user_id)
    return people


def page_statement(query: CallQuery, after: PageCursor | None, limit: int) -> tuple[str, list[Any]]:
    """The SQL and parameters of one page of the history.

    One filter drives the query through its index, whose rows come in
    (created_at, call_id) order, so a page reads about `limit` index entries
    whatever the number of calls; the other filters are checked on the rows it
    yields, written `+c.column` so that the planner cannot pick their index
    instead. Several statuses make one such branch each, merged by time.
    """
    statuses = list(dict.fromkeys(s.value for s in query.statuses))
    driver = _page_driver(query, statuses)
    where = _Conditions(driver)
    where.employee(query.employee_id)
    where.equal("phone_key", query.phone_key)
    where.equal("channel_id", query.channel_id)
    where.equal("direction", None if query.direction is None else query.direction.value)
    if statuses and driver != "status":
        where.add(f"+c.status IN ({', '.join('?' for _ in statuses)})", *statuses)
    where.time(query, after)
    order = f"ORDER BY {where.key}.created_at DESC, {where.key}.call_id DESC LIMIT ?"
    if driver == "status" and len(statuses) > 1:
        return _merged_page_statement(statuses, where, order, limit)
    if driver == "status":
        where.conditions.insert(0, "c.status = ?")
        where.params.insert(0, statuses[0])
    source = (
        "call_employees AS k CROSS JOIN calls AS c ON c.call_id = k.call_id"
        if driver == "employee"
        else "calls AS c"
    )
    clause = f"WHERE {' AND '.join(where.conditions)} " if where.conditions else ""
    return f"SELECT {_CALL_FIELDS} FROM {source} {clause}{order}", [*where.params, limit]


def _page_driver(query: CallQuery, statuses: list[str]) -> str | None:
    """The filter whose index drives a history page: the first given, the most selective."""
    given = (
        ("phone_key", query.phone_key is not None),
        ("employee", query.employee_id is not None),
        ("status", bool(statuses)),
        ("channel_id", query.channel_id is not None),
        ("direction", query.direction is not None),
    )
    return next((name for name, is_given in given if is_given), None)


class _Conditions:
    """A history page's WHERE terms and their parameters, in order."""

    def __init__(self, driver: str | None) -> None:
        self.driver = driver
        # The employee index holds created_at and call_id too: its rows come in page order.
        self.key = "k" if driver == "employee" else "c"
        self.conditions: list[str] = []
        self.params: list[Any] = []

    def add(self, condition: str, *params: Any) -> None:
        self.conditions.append(condition)
        self.params.extend(params)

    def equal(self, column: str, value: Any) -> None:
        if value is not None:
            self.add(f"c.{column} = ?" if column == self.driver else f"+c.{column} = ?", value)

    def employee(self, employee_id: int | None) -> None:
        if employee_id is None:
            return
        if self.driver == "employee":
            self.add("k.employee_id = ?", employee_id)
        else:
            self.add(
                "EXISTS (SELECT 1 FROM call_employees AS k WHERE k.employee_id = ? "
                "AND k.created_at = c.created_at AND k.call_id = c.call_id)",
                employee_id,
            )

    def time(self, query: CallQuery, after: PageCursor | None) -> None:
        key = self.key
        if query.created_from is not None:
            self.add(f"{key}.created_at >= ?", to_ms(query.created_from))
        if query.created_to is not None:
            self.add(f"{key}.created_at < ?", to_ms(query.created_to))
        if after is not None:
            self.add(
                f"({key}.created_at, {key}.call_id) < (?, ?)",
                to_ms(after.created_at),
                after.call_id,
            )


def _merged_page_statement(
    statuses: list[str], where: _Conditions, order: str, limit: int
) -> tuple[str, list[Any]]:
    """One branch per status, each through the status index, merged by time."""
    branch_where = " AND ".join(["c.status = ?", *where.conditions])
    branch = (
        f"SELECT * FROM (SELECT c.created_at, c.call_id FROM calls AS c "
        f"WHERE {branch_where} {order})"
    )
    sql = (
        f"WITH top AS ({' UNION ALL '.join(branch for _ in statuses)} "
        "ORDER BY 1 DESC, 2 DESC LIMIT ?) "
        f"SELECT {_CALL_FIELDS} FROM top CROSS JOIN calls AS c ON c.call_id = top.call_id "
        "ORDER BY top.created_at DESC, top.call_id DESC"
    )
    branch_params = [value for status in statuses for value in (status, *where.params, limit)]
    return sql, [*branch_params, limit]


class SqliteCallRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def next_id(self) -> int:
        return self._session.next_value("call")

    def add(self, call: Call) -> None:
        self._session.write(INSERT_CALL, _call_values(call))
        self._add_people(call.call_id, call.created_at, _concerned(call.audience, call.user_id))
        self._add_viewers(call.call_id, set(call.viewers))

    def save(self, call: Call) -> None:
        session = self._session
        stored = session.row(
            "SELECT audience, user_id, viewers, created_at FROM calls "
            "WHERE call_id = ? AND version = ?",
            (call.call_id, call.version),
        )
        if stored is None:
            session.fail(
                StorageConflict(f"call {call.call_id} changed since version {call.version}")
            )
            return
        values = _call_values(call)
        changed = session.write(
            UPDATE_CALL, (*values[1:16], call.version + 1, *values[17:], call.call_id, call.version)
        )
        assert changed == 1  # the version was checked under this unit's write lock
        before_people = _concerned(json.loads(stored[0]), stored[1])
        after_people = _concerned(call.audience, call.user_id)
        before_viewers = set(json.loads(stored[2]))
        after_viewers = set(call.viewers)
        if stored[3] != to_ms(call.created_at):
            self._remove_people(call.call_id, from_ms(stored[3]), before_people)
            before_people = set()
        self._remove_people(call.call_id, call.created_at, before_people - after_people)
        self._add_people(call.call_id, call.created_at, after_people - before_people)
        self._remove_viewers(call.call_id, before_viewers - after_viewers)
        self._add_viewers(call.call_id, after_viewers - before_viewers)
        call.version += 1

    def _add_people(self, call_id: int, created_at: datetime, people: set[int]) -> None:
        if people:
            at = to_ms(created_at)
            self._session.write_many(
                "INSERT INTO call_employees (employee_id, created_at, call_id) VALUES (?, ?, ?)",
                ((employee_id, at, call_id) for employee_id in sorted(people)),
            )

    def _remove_people(self, call_id: int, created_at: datetime, people: set[int]) -> None:
        if people:
            at = to_ms(created_at)
            self._session.write_many(
                "DELETE FROM call_employees "
                "WHERE employee_id = ? AND created_at = ? AND call_id = ?",
                ((employee_id, at, call_id) for employee_id in sorted(people)),
            )

    def _add_viewers(self, call_id: int, viewers: set[int]) -> None:
        if viewers:
            self._session.write_many(
                "INSERT INTO call_viewers (employee_id, call_id) VALUES (?, ?)",
                ((employee_id, call_id) for employee_id in sorted(viewers)),
            )

    def _remove_viewers(self, call_id: int, viewers: set[int]) -> None:
        if viewers:
            self._session.write_many(
                "DELETE FROM call_viewers WHERE employee_id = ? AND call_id = ?",
                ((employee_id, call_id) for employee_id in sorted(viewers)),
            )

    def get(self, call_id: int) -> Call | None:
        row = self._session.row(CALL_BY_ID, (call_id,))
        return None if row is None else _call(row)

    def by_pbx_call_id(self, channel_id: int, pbx_call_id: str) -> Call | None:
        row = self._session.row(CALL_BY_PBX_CALL_ID, (channel_id, pbx_call_id))
        return None if row is None else _call(row)

    def page(self, query: CallQuery, after: PageCursor | None, limit: int) -> list[Call]:
        if limit <= 0:
            return []
        sql, params = page_statement(query, after, limit)
        return [_call(row) for row in self._session.rows(sql, params)]

    def shown_to(self, employee_id: int) -> list[Call]:
        return [_call(row) for row in self._session.rows(CALLS_SHOWN_TO, (employee_id,))]

    def stale(self, status: Status, updated_before: datetime) -> list[Call]:
        sql = STALE_LIVE_CALLS if status in ACTIVE_STATUSES else STALE_FINAL_CALLS
        rows = self._session.rows(sql, (status.value, to_ms(updated_before)))
        return [_call(row) for row in rows]

    def active(self) -> list[Call]:
        calls = [_call(row) for row in self._session.rows(ACTIVE_CALLS)]
        return sorted(calls, key=lambda call: call.call_id)

    def count(self) -> int:
        row = self._session.row("SELECT count(*) FROM calls")
        assert row is not None
        return int(row[0])


# --- tickets and contacts ----------------------------------------------------------------------


def _comments_json(comments: Iterable[Comment]) -> str:
    return _json([{"text": c.text, "at": to_ms(c.at), "author": c.author} for c in comments])


def _comments(text: str) -> list[Comment]:
    return [Comment(c["text"], from_ms(c["at"]), c["author"]) for c in json.loads(text)]


_TICKET_COLUMNS = (
    "ticket_id, call_id, channel_id, department_id, created_at, executor_id, contact_id, comments"
)


class SqliteTicketRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def next_id(self) -> int:
        return self._session.next_value("ticket")

    def add(self, ticket: Ticket) -> None:
        self._session.write(
            f"INSERT INTO tickets ({_TICKET_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            self._values(ticket),
        )

    def save(self, ticket: Ticket) -> None:
        self._session.write(
            f"INSERT INTO tickets ({_TICKET_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (ticket_id) DO UPDATE SET call_id = excluded.call_id, "
            "channel_id = excluded.channel_id, department_id = excluded.department_id, "
            "created_at = excluded.created_at, executor_id = excluded.executor_id, "
            "contact_id = excluded.contact_id, comments = excluded.comments",
            self._values(ticket),
        )

    def get(self, ticket_id: int) -> Ticket | None:
        row = self._session.row(
            f"SELECT {_TICKET_COLUMNS} FROM tickets WHERE ticket_id = ?", (ticket_id,)
        )
        if row is None:
            return None
        return Ticket(
            ticket_id=row[0],
            call_id=row[1],
            channel_id=row[2],
            department_id=row[3],
            created_at=from_ms(row[4]),
            executor_id=row[5],
            contact_id=row[6],
            comments=_comments(row[7]),
        )

    @staticmethod
    def _values(ticket: Ticket) -> tuple[Any, ...]:
        return (
            ticket.ticket_id,
            ticket.call_id,
            ticket.channel_id,
            ticket.department_id,
            to_ms(ticket.created_at),
            ticket.executor_id,
            ticket.contact_id,
            _comments_json(ticket.comments),
        )


_CONTACT_COLUMNS = "contact_id, key, phone_e164, created_at, name"


def _contact(row: Row) -> Contact:
    return Contact(
        contact_id=row[0], key=row[1], phone_e164=row[2], created_at=from_ms(row[3]), name=row[4]
    )


class SqliteContactRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def next_id(self) -> int:
        return self._session.next_value("contact")

    def add(self, contact: Contact) -> None:
        self._session.write(
            f"INSERT INTO contacts ({_CONTACT_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
            self._values(contact),
        )

    def save(self, contact: Contact) -> None:
        self._session.write(
            f"INSERT INTO contacts ({_CONTACT_COLUMNS}) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (contact_id) DO UPDATE SET key = excluded.key, "
            "phone_e164 = excluded.phone_e164, created_at = excluded.created_at, "
            "name = excluded.name",
            self._values(contact),
        )

    def get(self, contact_id: int) -> Contact | None:
        row = self._session.row(
            f"SELECT {_CONTACT_COLUMNS} FROM contacts WHERE contact_id = ?", (contact_id,)
        )
        return None if row is None else _contact(row)

    def by_key(self, key: str) -> Contact | None:
        row = self._session.row(f"SELECT {_CONTACT_COLUMNS} FROM contacts WHERE key = ?", (key,))
        return None if row is None else _contact(row)

    def list(self, after: int = 0, limit: int | None = None) -> list[Contact]:
        if limit is not None and limit <= 0:
            return []
        rows = self._session.rows(
            f"SELECT {_CONTACT_COLUMNS} FROM contacts WHERE contact_id > ? "
            "ORDER BY contact_id LIMIT ?",
            (after, -1 if limit is None else limit),
        )
        return [_contact(row) for row in rows]

    def remove(self, contact_id: int) -> bool:
        removed = self._session.write("DELETE FROM contacts WHERE contact_id = ?", (contact_id,))
        return removed > 0

    @staticmethod
    def _values(contact: Contact) -> tuple[Any, ...]:
        return (
            contact.contact_id,
            contact.key,
            contact.phone_e164,
            to_ms(contact.created_at),
            contact.name,
        )


# --- channels and the directory ----------------------------------------------------------------

_CHANNEL_COLUMNS = "channel_id, name, department_id, key_hash, created_at, enabled, pbx_users"


def _channel(row: Row) -> Channel:
    return Channel(
        channel_id=row[0],
        name=row[1],
        department_id=row[2],
        key_hash=row[3],
        created_at=from_ms(row[4]),
        enabled=bool(row[5]),
        pbx_users={str(k): int(v) for k, v in json.loads(row[6]).items()},
    )


class SqliteChannelRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def next_id(self) -> int:
        return self._session.next_value("channel")

    def reserve_ids_through(self, channel_id: int) -> None:
        self._session.raise_value("channel", channel_id)

    def add(self, channel: Channel) -> None:
        self._session.write(
            f"INSERT INTO channels ({_CHANNEL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            self._values(channel),
        )

    def save(self, channel: Channel) -> None:
        self._session.write(
            f"INSERT INTO channels ({_CHANNEL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (channel_id) DO UPDATE SET name = excluded.name, "
            "department_id = excluded.department_id, key_hash = excluded.key_hash, "
            "created_at = excluded.created_at, enabled = excluded.enabled, "
            "pbx_users = excluded.pbx_users",
            self._values(channel),
        )

    def get(self, channel_id: int) -> Channel | None:
        row = self._session.row(
            f"SELECT {_CHANNEL_COLUMNS} FROM channels WHERE channel_id = ?", (channel_id,)
        )
        return None if row is None else _channel(row)

    def by_key_hash(self, key_hash: str) -> Channel | None:
        row = self._session.row(
            f"SELECT {_CHANNEL_COLUMNS} FROM channels WHERE key_hash = ?", (key_hash,)
        )
        return None if row is None else _channel(row)

    def list(self) -> list[Channel]:
        rows = self._session.rows(f"SELECT {_CHANNEL_COLUMNS} FROM channels ORDER BY channel_id")
        return [_channel(row) for row in rows]

    @staticmethod
    def _values(channel: Channel) -> tuple[Any, ...]:
        return (
            channel.channel_id,
            channel.name,
            channel.department_id,
            channel.key_hash,
            to_ms(channel.created_at),
            int(channel.enabled),
            _json(channel.pbx_users),
        )


class SqliteDepartmentRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def save(self, department: Department) -> None:
        self._session.write(
            "INSERT INTO departments (department_id, name) VALUES (?, ?) "
            "ON CONFLICT (department_id) DO UPDATE SET name = excluded.name",
            (department.department_id, department.name),
        )

    def get(self, department_id: int) -> Department | None:
        row = self._session.row(
            "SELECT department_id, name FROM departments WHERE department_id = ?",
            (department_id,),
        )
        return None if row is None else Department(row[0], row[1])

    def list(self) -> list[Department]:
        rows = self._session.rows(
            "SELECT department_id, name FROM departments ORDER BY department_id"
        )
        return [Department(row[0], row[1]) for row in rows]


def _employees(rows: Iterable[Row]) -> dict[int, Employee]:
    return {row[0]: Employee(row[0], row[1], bool(row[2])) for row in rows}


class SqliteEmployeeRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def save(self, employee: Employee) -> None:
        self._session.write(
            "INSERT INTO employees (employee_id, name, telephony) VALUES (?, ?, ?) "
            "ON CONFLICT (employee_id) DO UPDATE SET name = excluded.name, "
            "telephony = excluded.telephony",
            (employee.employee_id, employee.name, int(employee.telephony)),
        )

    def get_many(self, employee_ids: Iterable[int]) -> dict[int, Employee]:
        wanted = list(dict.fromkeys(employee_ids))
        if not wanted:
            return {}
        rows = self._session.rows(
            "SELECT employee_id, name, telephony FROM employees "
            "WHERE employee_id IN (SELECT value FROM json_each(?)) ORDER BY employee_id",
            (_json(wanted),),
        )
        return _employees(rows)

    def with_telephony(self) -> dict[int, Employee]:
        rows = self._session.rows(
            "SELECT employee_id, name, telephony FROM employees "
            "WHERE telephony = 1 ORDER BY employee_id"
        )
        return _employees(rows)

    def list(self) -> list[Employee]:
        rows = self._session.rows(
            "SELECT employee_id, name, telephony FROM employees ORDER BY employee_id"
        )
        return list(_employees(rows).values())


def _group(row: Row) -> Group:
    return Group(row[0], row[1], tuple(json.loads(row[2])))


class SqliteGroupRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def save(self, group: Group) -> None:
        self._session.write(
            "INSERT INTO groups (group_id, name, members) VALUES (?, ?, ?) "
            "ON CONFLICT (group_id) DO UPDATE SET name = excluded.name, "
            "members = excluded.members",
            (group.group_id, group.name, _json(list(group.members))),
        )

    def get_many(self, group_ids: Iterable[int]) -> dict[int, Group]:
        wanted = list(dict.fromkeys(group_ids))
        if not wanted:
            return {}
        rows = self._session.rows(
            "SELECT group_id, name, members FROM groups "
            "WHERE group_id IN (SELECT value FROM json_each(?)) ORDER BY group_id",
            (_json(wanted),),
        )
        return {row[0]: _group(row) for row in rows}

    def list(self) -> list[Group]:
        rows = self._session.rows("SELECT group_id, name, members FROM groups ORDER BY group_id")
        return [_group(row) for row in rows]


# --- tokens and idempotency --------------------------------------------------------------------

_TOKEN_COLUMNS = (
    "token_id, secret_hash, role, created_at, employee_id, description, revoked_at, expires_at"
)


def _token(row: Row) -> Token:
    return Token(
        token_id=row[0],
        secret_hash=row[1],
        role=row[2],
        created_at=from_ms(row[3]),
        employee_id=row[4],
        description=row[5],
        revoked_at=_from_ms_or_none(row[6]),
        expires_at=_from_ms_or_none(row[7]),
    )


class SqliteTokenRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def add(self, token: Token) -> None:
        self._session.write(
            f"INSERT INTO tokens ({_TOKEN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            self._values(token),
        )

    def save(self, token: Token) -> None:
        self._session.write(
            f"INSERT INTO tokens ({_TOKEN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (token_id) DO UPDATE SET secret_hash = excluded.secret_hash, "
            "role = excluded.role, created_at = excluded.created_at, "
            "employee_id = excluded.employee_id, description = excluded.description, "
            "revoked_at = excluded.revoked_at, expires_at = excluded.expires_at",
            self._values(token),
        )

    def get(self, token_id: str) -> Token | None:
        row = self._session.row(
            f"SELECT {_TOKEN_COLUMNS} FROM tokens WHERE token_id = ?", (token_id,)
        )
        return None if row is None else _token(row)

    def by_secret_hash(self, secret_hash: str) -> Token | None:
        row = self._session.row(
            f"SELECT {_TOKEN_COLUMNS} FROM tokens WHERE secret_hash = ?", (secret_hash,)
        )
        return None if row is None else _token(row)

    def list_active(self) -> list[Token]:
        rows = self._session.rows(
            f"SELECT {_TOKEN_COLUMNS} FROM tokens WHERE revoked_at IS NULL "
            "ORDER BY created_at, token_id"
        )
        return [_token(row) for row in rows]

    def get_many(self, token_ids: Iterable[str]) -> dict[str, Token]:
        wanted = list(dict.fromkeys(token_ids))
        if not wanted:
            return {}
        rows = self._session.rows(
            f"SELECT {_TOKEN_COLUMNS} FROM tokens "
            "WHERE token_id IN (SELECT value FROM json_each(?))",
            (_json(wanted),),
        )
        return {row[0]: _token(row) for row in rows}

    @staticmethod
    def _values(token: Token) -> tuple[Any, ...]:
        return (
            token.token_id,
            token.secret_hash,
            token.role,
            to_ms(token.created_at),
            token.employee_id,
            token.description,
            _to_ms_or_none(token.revoked_at),
            _to_ms_or_none(token.expires_at),
        )


class SqliteIdempotencyRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def add(self, record: IdempotencyRecord) -> None:
        self._session.write(
            "INSERT INTO idempotency (channel_id, key, fingerprint, created_at, reply) "
            "VALUES (?, ?, ?, ?, ?)",
            (
                record.channel_id,
                record.key,
                record.fingerprint,
                to_ms(record.created_at),
                _json(payloads.encode_reply(record.reply)),
            ),
        )

    def get(self, channel_id: int, key: str) -> IdempotencyRecord | None:
        row = self._session.row(
            "SELECT fingerprint, created_at, reply FROM idempotency "
            "WHERE channel_id = ? AND key = ?",
            (channel_id, key),
        )
        if row is None:
            return None
        return IdempotencyRecord(
            channel_id=channel_id,
            key=key,
            fingerprint=row[0],
            created_at=from_ms(row[1]),
            reply=payloads.decode_reply(json.loads(row[2])),
        )

    def remove(self, channel_id: int, key: str) -> None:
        self._session.write(
            "DELETE FROM idempotency WHERE channel_id = ? AND key = ?", (channel_id, key)
        )

    def remove_older_than(self, cutoff: datetime) -> int:
        return self._session.write("DELETE FROM idempotency WHERE created_at < ?", (to_ms(cutoff),))


# --- the event log -----------------------------------------------------------------------------

_EVENT_FIELDS = "e.seq, e.kind, e.at, e.view, e.card_events"
EVENTS_AFTER = f"SELECT {_EVENT_FIELDS} FROM events AS e WHERE e.seq > ? ORDER BY e.seq"
CARD_EVENTS_AFTER = (
    f"SELECT {_EVENT_FIELDS} FROM event_audience AS k CROSS JOIN events AS e ON e.seq = k.seq "
    f"WHERE k.bucket = ?1 >> {schema.EMPLOYEE_BUCKET_SHIFT} AND k.seq > ?2 "
    "AND EXISTS (SELECT 1 FROM json_each(k.employee_ids) WHERE value = ?1) ORDER BY k.seq"
)


def _event(row: Row) -> PublishedEvent:
    return PublishedEvent(
        seq=row[0],
        kind=row[1],
        view=payloads.decode_view(json.loads(row[3])),
        card_events=payloads.decode_card_events(json.loads(row[4])),
        at=from_ms(row[2]),
    )


class SqliteEventLog:
    def __init__(self, session: Session) -> None:
        self._session = session

    def add(
        self, kind: str, view: CallView, card_events: Iterable[CardEvent], at: datetime
    ) -> None:
        session = self._session
        seq = session.next_value("event")
        cards = tuple(card_events)
        stored_view = payloads.encode_view(view)
        stored_cards = payloads.encode_card_events(cards)
        at_ms = to_ms(at)
        session.write(
            "INSERT INTO events (seq, kind, at, view, card_events) VALUES (?, ?, ?, ?, ?)",
            (seq, kind, at_ms, _json(stored_view), _json(stored_cards)),
        )
        buckets: dict[int, list[int]] = {}
        for employee_id in sorted({card.employee_id for card in cards}):
            buckets.setdefault(employee_id >> schema.EMPLOYEE_BUCKET_SHIFT, []).append(employee_id)
        if buckets:
            session.write_many(
                "INSERT INTO event_audience (bucket, seq, employee_ids) VALUES (?, ?, ?)",
                ((bucket, seq, _json(ids)) for bucket, ids in buckets.items()),
            )
        # Live subscribers get what a replay from the log would give them (card events are
        # immutable), not the caller's objects, which it may go on changing.
        session.events.append(
            PublishedEvent(
                seq=seq, kind=kind, view=view.copy(), card_events=cards, at=from_ms(at_ms)
            )
        )

    def last_seq(self) -> int:
        return self._session.value("event")

    def oldest_seq(self) -> int | None:
        row = self._session.row("SELECT min(seq) FROM events")
        return None if row is None or row[0] is None else int(row[0])

    def after(self, seq: int, employee_id: int | None = None) -> list[PublishedEvent]:
        if employee_id is None:
            rows = self._session.rows(EVENTS_AFTER, (seq,))
        else:
            rows = self._session.rows(CARD_EVENTS_AFTER, (employee_id, seq))
        return [_event(row) for row in rows]

    def remove_older_than(self, cutoff: datetime) -> int:
        return self._session.write("DELETE FROM events WHERE at < ?", (to_ms(cutoff),))

    def remove_through(self, seq: int) -> int:
        return self._session.write("DELETE FROM events WHERE seq <= ?", (seq,))


# --- recordings --------------------------------------------------------------------------------

_RECORDING_COLUMNS = (
    "recording_id, channel_id, format, content_type, size, sha256, created_at, "
    "duration_seconds, file_name, call_id"
)


def _recording(row: Row) -> Recording:
    return Recording(
        recording_id=row[0],
        channel_id=row[1],
        format=row[2],
        content_type=row[3],
        size=row[4],
        sha256=row[5],
        created_at=from_ms(row[6]),
        duration_seconds=row[7],
        file_name=row[8],
        call_id=row[9],
    )


RECORDINGS_OF_CALL = (
    f"SELECT {_RECORDING_COLUMNS} FROM recordings WHERE call_id = ? ORDER BY created_at, rowid"
)
UNATTACHED_RECORDINGS = (
    "SELECT recording_id FROM recordings WHERE call_id IS NULL AND created_at <= ? "
    "ORDER BY created_at"
)


class SqliteRecordingRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def add(self, recording: Recording) -> None:
        self._session.write(
            f"INSERT INTO recordings ({_RECORDING_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            self._values(recording),
        )

    def save(self, recording: Recording) -> None:
        self._session.write(
            f"INSERT INTO recordings ({_RECORDING_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (recording_id) DO UPDATE SET channel_id = excluded.channel_id, "
            "format = excluded.format, content_type = excluded.content_type, "
            "size = excluded.size, sha256 = excluded.sha256, "
            "created_at = excluded.created_at, duration_seconds = excluded.duration_seconds, "
            "file_name = excluded.file_name, call_id = excluded.call_id",
            self._values(recording),
        )

    def get(self, recording_id: str) -> Recording | None:
        row = self._session.row(
            f"SELECT {_RECORDING_COLUMNS} FROM recordings WHERE recording_id = ?",
            (recording_id,),
        )
        return None if row is None else _recording(row)

    def of_call(self, call_id: int) -> list[Recording]:
        return [_recording(row) for row in self._session.rows(RECORDINGS_OF_CALL, (call_id,))]

    def remove(self, recording_id: str) -> bool:
        removed = self._session.write(
            "DELETE FROM recordings WHERE recording_id = ?", (recording_id,)
        )
        return removed > 0

    def unattached_before(self, cutoff: datetime) -> list[str]:
        rows = self._session.rows(UNATTACHED_RECORDINGS, (to_ms(cutoff),))
        return [row[0] for row in rows]

    def ids(self) -> Iterator[str]:
        # Read whole: the unit's transaction ends before the caller is done iterating.
        rows = self._session.rows("SELECT recording_id FROM recordings ORDER BY recording_id")
        return iter([row[0] for row in rows])

    @staticmethod
    def _values(recording: Recording) -> tuple[Any, ...]:
        return (
            recording.recording_id,
            recording.channel_id,
            recording.format,
            recording.content_type,
            recording.size,
            recording.sha256,
            to_ms(recording.created_at),
            recording.duration_seconds,
            recording.file_name,
            recording.call_id,
        )
