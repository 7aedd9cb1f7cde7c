"""The audit log and the stream tickets on SQLite (schema migration 4).

The audit table refuses updates and deletes by trigger: nothing in core can
change an entry, not even by mistake.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from core.model import AuditEntry, AuditQuery, StreamTicket
from core.storage.sqlite.repositories import Row, Session, from_ms, to_ms

_TICKET_COLUMNS = "ticket_hash, token_id, role, employee_id, created_at, expires_at"
_ENTRY_COLUMNS = "entry_id, at, action, token_id, role, employee_id, address, target, details"
# The sequence entry ids come from.
_ENTRY_SEQUENCE = "audit_entry"


def _ticket(row: Row) -> StreamTicket:
    return StreamTicket(
        ticket_hash=row[0],
        token_id=row[1],
        role=row[2],
        employee_id=row[3],
        created_at=from_ms(row[4]),
        expires_at=from_ms(row[5]),
    )


class SqliteStreamTicketRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def add(self, ticket: StreamTicket) -> None:
        self._session.write(
            f"INSERT INTO stream_tickets ({_TICKET_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
            (
                ticket.ticket_hash,
                ticket.token_id,
                ticket.role,
                ticket.employee_id,
                to_ms(ticket.created_at),
                to_ms(ticket.expires_at),
            ),
        )

    def take(self, ticket_hash: str) -> StreamTicket | None:
        # One writer at a time holds the database: the ticket read here is removed
        # before any other unit can read it.
        row = self._session.row(
            f"SELECT {_TICKET_COLUMNS} FROM stream_tickets WHERE ticket_hash = ?", (ticket_hash,)
        )
        if row is None:
            return None
        self._session.write("DELETE FROM stream_tickets WHERE ticket_hash = ?", (ticket_hash,))
        return _ticket(row)

    def remove_expired(self, now: datetime) -> int:
        return self._session.write(
            "DELETE FROM stream_tickets WHERE expires_at <= ?", (to_ms(now),)
        )


def _entry(row: Row) -> AuditEntry:
    return AuditEntry(
        entry_id=row[0],
        at=from_ms(row[1]),
        action=row[2],
        token_id=row[3],
        role=row[4],
        employee_id=row[5],
        address=row[6],
        target=row[7],
        details=json.loads(row[8]),
    )


def _where(query: AuditQuery) -> tuple[list[str], list[Any]]:
    """The conditions of `query` (AND-ed) and their parameters."""
    wanted: list[tuple[str, Any]] = [
        ("action = ?", query.action),
        ("token_id = ?", query.token_id),
        ("employee_id = ?", query.employee_id),
        ("at >= ?", None if query.since is None else to_ms(query.since)),
        ("at < ?", None if query.until is None else to_ms(query.until)),
    ]
    given = [(condition, value) for condition, value in wanted if value is not None]
    return [condition for condition, _ in given], [value for _, value in given]


class SqliteAuditLog:
    def __init__(self, session: Session) -> None:
        self._session = session

    def next_id(self) -> int:
        return self._session.next_value(_ENTRY_SEQUENCE)

    def add(self, entry: AuditEntry) -> None:
        self._session.write(
            f"INSERT INTO audit_entries ({_ENTRY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                entry.entry_id,
                to_ms(entry.at),
                entry.action,
                entry.token_id,
                entry.role,
                entry.employee_id,
                entry.address,
                entry.target,
                json.dumps(entry.details, separators=(",", ":"), ensure_ascii=False),
            ),
        )

    def newest(self, query: AuditQuery, before: int | None, limit: int) -> list[AuditEntry]:
        conditions, params = _where(query)
        if before is not None:
            conditions.append("entry_id < ?")
            params.append(before)
        return self._select(conditions, params, "DESC", limit)

    def oldest(self, query: AuditQuery, after: int, limit: int) -> list[AuditEntry]:
        conditions, params = _where(query)
        conditions.append("entry_id > ?")
        params.append(after)
        return self._select(conditions, params, "ASC", limit)

    def _select(
        self, conditions: list[str], params: list[Any], order: str, limit: int
    ) -> list[AuditEntry]:
        where = f"WHERE {' AND '.join(conditions)} " if conditions else ""
        rows = self._session.rows(
            f"SELECT {_ENTRY_COLUMNS} FROM audit_entries {where}ORDER BY entry_id {order} LIMIT ?",
            [*params, limit],
        )
        return [_entry(row) for row in rows]
