"""The storage port's contract for token lifetimes, stream tickets and the audit log,
held against every adapter (SQLite, mongomock, and MongoDB when configured)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest

from core.app import units
from core.model import AuditEntry, AuditQuery, StreamTicket, Token, utc_now
from core.recordings.blobs import FileBlobStore
from core.storage.port import StorageConflict, Store, UnitOfWork
from tests.storage.storage_marks import ON_ATOMIC_BACKENDS

T = TypeVar("T")


def write(store: Store, work: Callable[[UnitOfWork], T]) -> T:
    with store.unit_of_work() as uow:
        result = work(uow)
        uow.commit()
        return result


def read(store: Store, work: Callable[[UnitOfWork], T]) -> T:
    with store.reading() as uow:
        return work(uow)


def make_token(token_id: str, expires_at: datetime | None = None) -> Token:
    return Token(
        token_id=token_id,
        secret_hash=f"hash-of-{token_id}",
        role="employee",
        created_at=utc_now(),
        employee_id=1,
        description="desk",
        expires_at=expires_at,
    )


def make_ticket(ticket_hash: str, expires_at: datetime, token_id: str = "tok_a") -> StreamTicket:
    return StreamTicket(
        ticket_hash=ticket_hash,
        token_id=token_id,
        role="employee",
        employee_id=1,
        created_at=expires_at - timedelta(seconds=60),
        expires_at=expires_at,
    )


def add_tokens(store: Store, *tokens: Token) -> None:
    with store.unit_of_work() as uow:
        for token in tokens:
            uow.tokens.add(token)
        uow.commit()


# --- tokens ------------------------------------------------------------------------------------


def test_a_token_keeps_its_expiry(store: Store) -> None:
    expires = utc_now() + timedelta(days=30)
    lasting, expiring = make_token("tok_lasting"), make_token("tok_expiring", expires)
    add_tokens(store, lasting, expiring)
    assert read(store, lambda uow: uow.tokens.get("tok_expiring")) == expiring
    assert read(store, lambda uow: uow.tokens.by_secret_hash("hash-of-tok_lasting")) == lasting
    listed = read(store, lambda uow: uow.tokens.list_active())
    assert sorted(listed, key=lambda t: t.token_id) == [expiring, lasting]


def test_tokens_are_read_many_at_once(store: Store) -> None:
    first, second = make_token("tok_1"), make_token("tok_2", utc_now())
    add_tokens(store, first, second)
    found = read(store, lambda uow: uow.tokens.get_many(["tok_2", "tok_unknown", "tok_1"]))
    assert found == {"tok_1": first, "tok_2": second}
    assert read(store, lambda uow: uow.tokens.get_many([])) == {}


# --- stream tickets ----------------------------------------------------------------------------


def test_a_ticket_is_taken_once(store: Store) -> None:
    ticket = make_ticket("h1", utc_now() + timedelta(seconds=60))
    write(store, lambda uow: uow.stream_tickets.add(ticket))
    assert write(store, lambda uow: uow.stream_tickets.take("h1")) == ticket
    assert write(store, lambda uow: uow.stream_tickets.take("h1")) is None
    assert write(store, lambda uow: uow.stream_tickets.take("unknown")) is None


def test_a_ticket_taken_in_a_unit_that_is_not_committed_stays(store: Store) -> None:
    ticket = make_ticket("h1", utc_now() + timedelta(seconds=60))
    write(store, lambda uow: uow.stream_tickets.add(ticket))
    with store.unit_of_work() as uow:
        assert uow.stream_tickets.take("h1") == ticket
    assert write(store, lambda uow: uow.stream_tickets.take("h1")) == ticket


def test_a_ticket_hash_is_unique(store: Store) -> None:
    ticket = make_ticket("h1", utc_now() + timedelta(seconds=60))
    write(store, lambda uow: uow.stream_tickets.add(ticket))
    with pytest.raises(StorageConflict):
        write(store, lambda uow: uow.stream_tickets.add(ticket))


# Only where units of work write side by side: on SQLite one unit writes at a time, so
# two cannot take a ticket at once (test_racing_redeemers_get_a_ticket_once covers it there).
@pytest.mark.parametrize(
    "backend", ["mongomock", pytest.param("mongodb", marks=pytest.mark.mongodb)], indirect=True
)
def test_two_units_taking_one_ticket_at_once_cannot_both_have_it(store: Store) -> None:
    assert not store.single_writer
    ticket = make_ticket("h1", utc_now() + timedelta(seconds=60))
    write(store, lambda uow: uow.stream_tickets.add(ticket))
    with store.unit_of_work() as first, store.unit_of_work() as second:
        assert first.stream_tickets.take("h1") == ticket
        assert second.stream_tickets.take("h1") == ticket
        first.commit()
        with pytest.raises(StorageConflict):
            second.commit()
    assert write(store, lambda uow: uow.stream_tickets.take("h1")) is None


@ON_ATOMIC_BACKENDS
def test_racing_redeemers_get_a_ticket_once(store: Store) -> None:
    ticket = make_ticket("h1", utc_now() + timedelta(seconds=60))
    write(store, lambda uow: uow.stream_tickets.add(ticket))
    start = threading.Barrier(4)
    taken: list[StreamTicket | None] = []

    def redeem() -> None:
        start.wait()
        taken.append(units.write(store, lambda uow: uow.stream_tickets.take("h1")))

    threads = [threading.Thread(target=redeem) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(taken, key=lambda t: t is None) == [ticket, None, None, None]


def test_expired_tickets_are_removed(store: Store) -> None:
    now = utc_now()
    old, due, fresh = (
        make_ticket("old", now - timedelta(seconds=1)),
        make_ticket("due", now),
        make_ticket("fresh", now + timedelta(seconds=1)),
    )
    with store.unit_of_work() as uow:
        for ticket in (old, due, fresh):
            uow.stream_tickets.add(ticket)
        uow.commit()
    # A database with TTL indexes may have removed them already; none is left either way.
    store.remove_expired(now)
    assert write(store, lambda uow: uow.stream_tickets.take("old")) is None
    assert write(store, lambda uow: uow.stream_tickets.take("due")) is None
    assert write(store, lambda uow: uow.stream_tickets.take("fresh")) == fresh


# --- the audit log -----------------------------------------------------------------------------

T0 = datetime.fromisoformat("2026-03-02T09:00:00+00:00")


def add_entry(
    store: Store,
    action: str,
    *,
    token_id: str = "tok_admin",
    employee_id: int | None = None,
    minute: int = 0,
) -> AuditEntry:
    def work(uow: UnitOfWork) -> AuditEntry:
        entry = AuditEntry(
            entry_id=uow.audit.next_id(),
            at=T0 + timedelta(minutes=minute),
            action=action,
            token_id=token_id,
            role="employee" if employee_id else "admin",
            employee_id=employee_id,
            address="203.0.113.7",
            target="42",
            details={"name": "Ольга «Л»", "members": "1,2"},
        )
        uow.audit.add(entry)
        return entry

    return write(store, work)


def test_an_entry_reads_back_whole(store: Store) -> None:
    entry = add_entry(store, "channel.created")
    assert read(store, lambda uow: uow.audit.newest(AuditQuery(), None, 10)) == [entry]


def test_entry_ids_increase(store: Store) -> None:
    ids = [add_entry(store, "token.issued").entry_id for _ in range(3)]
    assert ids == sorted(set(ids))


def test_an_entry_is_not_kept_without_its_unit(store: Store) -> None:
    with store.unit_of_work() as uow:
        uow.audit.add(
            AuditEntry(uow.audit.next_id(), T0, "token.revoked", "tok_a", "admin", None, "")
        )
    assert read(store, lambda uow: uow.audit.newest(AuditQuery(), None, 10)) == []


def test_entries_are_paged_newest_first(store: Store) -> None:
    entries = [add_entry(store, "calls.listed", minute=i) for i in range(5)]
    first = read(store, lambda uow: uow.audit.newest(AuditQuery(), None, 2))
    assert first == [entries[4], entries[3]]
    rest = read(store, lambda uow: uow.audit.newest(AuditQuery(), first[-1].entry_id, 10))
    assert rest == [entries[2], entries[1], entries[0]]


def test_entries_are_exported_oldest_first(store: Store) -> None:
    entries = [add_entry(store, "calls.listed", minute=i) for i in range(5)]
    first = read(store, lambda uow: uow.audit.oldest(AuditQuery(), 0, 3))
    assert first == entries[:3]
    rest = read(store, lambda uow: uow.audit.oldest(AuditQuery(), first[-1].entry_id, 3))
    assert rest == entries[3:]


def test_entries_are_filtered(store: Store) -> None:
    created = add_entry(store, "channel.created", minute=0)
    listed = add_entry(store, "calls.listed", token_id="tok_anna", employee_id=1, minute=10)
    issued = add_entry(store, "token.issued", minute=20)

    def newest(query: AuditQuery) -> list[AuditEntry]:
        return read(store, lambda uow: uow.audit.newest(query, None, 10))

    assert newest(AuditQuery(action="channel.created")) == [created]
    assert newest(AuditQuery(token_id="tok_anna")) == [listed]
    assert newest(AuditQuery(employee_id=1)) == [listed]
    assert newest(AuditQuery(token_id="tok_admin")) == [issued, created]
    since, until = T0 + timedelta(minutes=10), T0 + timedelta(minutes=20)
    assert newest(AuditQuery(since=since)) == [issued, listed]
    assert newest(AuditQuery(until=until)) == [listed, created]
    assert newest(AuditQuery(since=since, until=until)) == [listed]
    assert newest(AuditQuery(action="calls.listed", token_id="tok_admin")) == []
    oldest = read(store, lambda uow: uow.audit.oldest(AuditQuery(since=since), 0, 10))
    assert oldest == [listed, issued]


def test_sqlite_refuses_changing_or_removing_an_entry(tmp_path: Path) -> None:
    from core.storage.sqlite import SqliteStore

    store = SqliteStore(tmp_path / "vats.db", FileBlobStore(tmp_path))
    store.prepare()
    try:
        add_entry(store, "token.issued")
    finally:
        store.close()
    with sqlite3.connect(tmp_path / "vats.db") as connection:
        with pytest.raises(sqlite3.IntegrityError, match="never changed"):
            connection.execute("UPDATE audit_entries SET action = 'token.revoked'")
        with pytest.raises(sqlite3.IntegrityError, match="never removed"):
            connection.execute("DELETE FROM audit_entries")
        assert connection.execute("SELECT action FROM audit_entries").fetchall() == [
            ("token.issued",)
        ]
    connection.close()
