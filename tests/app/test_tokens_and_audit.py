"""Token lifetimes, stream tickets and the audit log as use cases, on SQLite and
mongomock, with a clock the tests move instead of waiting."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import mongomock
import pytest

from core.app.admin import ChannelAdmin, DirectoryAdmin
from core.app.audit import Action, AuditFilter, AuditTrail
from core.app.tokens import MAX_TTL, TICKET_TTL, KnownTokens, TokenDesk
from core.auth import Credentials, Principal, Role, Scheme
from core.errors import (
    InvalidRequest,
    PermissionDenied,
    TicketInvalid,
    TokenExpired,
    Unauthenticated,
)
from core.model import AuditEntry, AuditQuery, utc_now
from core.recordings import FileBlobStore
from core.storage.mongo import MongoStore
from core.storage.port import Store
from core.storage.sqlite import SqliteStore


class Clock:
    """Starts at the real time: MongoDB's TTL index removes tickets by the real clock."""

    def __init__(self) -> None:
        self.start = self.now = utc_now()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@pytest.fixture(params=["sqlite", "mongomock"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    blobs = FileBlobStore(tmp_path)
    opened: Store
    if request.param == "sqlite":
        opened = SqliteStore(tmp_path / "vats.db", blobs)
    else:
        opened = MongoStore(mongomock.MongoClient(tz_aware=True)["vats"], blobs=blobs)
    opened.prepare()
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def tokens(store: Store, clock: Clock) -> TokenDesk:
    DirectoryAdmin(store).upsert_employee(1, "Anna", True)
    return TokenDesk(store, clock=clock)


ADMIN = Principal("tok_admin", Role.ADMIN, address="203.0.113.7")


def bearer(secret: str) -> Credentials:
    return Credentials(Scheme.BEARER, secret)


def ticket(secret: str) -> Credentials:
    return Credentials(Scheme.TICKET, secret)


def rfc3339(moment: datetime) -> str:
    """How the log and core's messages write a (UTC) time: 2026-11-27T13:18:04.189Z."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def entries(store: Store, action: Action | None = None) -> list[AuditEntry]:
    query = AuditQuery(action=action.value if action else None)
    with store.reading() as uow:
        return uow.audit.newest(query, None, 100)


# --- tokens that expire ------------------------------------------------------------------------


def test_a_token_is_refused_once_its_lifetime_has_passed(tokens: TokenDesk, clock: Clock) -> None:
    token, secret = tokens.issue(Role.EMPLOYEE, 1, ttl=timedelta(seconds=30))
    assert token.expires_at == clock.start + timedelta(seconds=30)
    clock.advance(timedelta(seconds=29))
    assert tokens.authenticate(secret).token_id == token.token_id
    clock.advance(timedelta(seconds=1))
    with pytest.raises(TokenExpired) as refused:
        tokens.authenticate(secret)
    assert refused.value.reason == "token_expired"
    assert isinstance(refused.value, Unauthenticated)
    assert f"expired at {rfc3339(clock.start + timedelta(seconds=30))};" in str(refused.value)


# --- tokens kept by a single writer's desk ----------------------------------------------------


def revoke_behind_the_desk(store: Store, token_id: str) -> None:
    """What only another core sharing the store could do: revoke without this desk."""
    with store.unit_of_work() as uow:
        token = uow.tokens.get(token_id)
        assert token is not None
        uow.tokens.save(dataclasses.replace(token, revoked_at=utc_now()))
        uow.commit()


def test_a_token_revoked_through_the_desk_is_refused_at_once(tokens: TokenDesk) -> None:
    token, secret = tokens.issue(Role.SERVICE, None)
    for _ in range(2):
        assert tokens.authenticate(secret).token_id == token.token_id
    tokens.revoke(token.token_id)
    with pytest.raises(Unauthenticated):
        tokens.authenticate(secret)


def test_only_a_single_writer_stores_desk_keeps_the_tokens_it_read(
    store: Store, tokens: TokenDesk
) -> None:
    token, secret = tokens.issue(Role.SERVICE, None)
    tokens.authenticate(secret)
    revoke_behind_the_desk(store, token.token_id)
    if store.single_writer:
        # Nothing but this desk revokes there: a token once read is not read again.
        assert tokens.authenticate(secret).token_id == token.token_id
    else:
        # Other cores revoke there too: every request reads its token.
        with pytest.raises(Unauthenticated):
            tokens.authenticate(secret)


def test_a_read_that_a_revocation_overtook_is_not_kept(tokens: TokenDesk) -> None:
    token, _ = tokens.issue(Role.SERVICE, None)
    known = KnownTokens()
    before = known.revocations
    known.forget_all()  # committed while the read was under way
    known.keep("hash", token, before)
    assert known.get("hash") is None
    known.keep("hash", token, known.revocations)
    assert known.get("hash") is token
    known.forget_all()
    assert known.get("hash") is None


def test_a_token_without_a_lifetime_never_expires(tokens: TokenDesk, clock: Clock) -> None:
    token, secret = tokens.issue(Role.SERVICE, None)
    assert token.expires_at is None
    clock.advance(timedelta(days=36500))
    assert tokens.authenticate(secret).role is Role.SERVICE


@pytest.mark.parametrize("ttl", [timedelta(0), timedelta(seconds=-1), MAX_TTL + timedelta(1)])
def test_a_lifetime_must_be_positive_and_bounded(tokens: TokenDesk, ttl: timedelta) -> None:
    with pytest.raises(InvalidRequest) as refused:
        tokens.issue(Role.SERVICE, None, ttl=ttl)
    assert set(refused.value.fields) == {"ttl"}


def test_expired_tokens_are_listed_with_their_expiry(tokens: TokenDesk, clock: Clock) -> None:
    token, _ = tokens.issue(Role.EMPLOYEE, 1, ttl=timedelta(minutes=1))
    clock.advance(timedelta(hours=1))
    assert [t.expires_at for t in tokens.list_active() if t.token_id == token.token_id] == [
        clock.start + timedelta(minutes=1)
    ]


def test_tokens_no_longer_valid_are_named(tokens: TokenDesk, clock: Clock) -> None:
    lasting, _ = tokens.issue(Role.SERVICE, None)
    expiring, _ = tokens.issue(Role.SERVICE, None, ttl=timedelta(seconds=5))
    revoked, _ = tokens.issue(Role.SERVICE, None)
    tokens.revoke(revoked.token_id)
    ids = [lasting.token_id, expiring.token_id, revoked.token_id, "tok_unknown"]
    assert tokens.no_longer_valid(ids) == [revoked.token_id, "tok_unknown"]
    clock.advance(timedelta(seconds=5))
    assert tokens.no_longer_valid(ids) == [expiring.token_id, revoked.token_id, "tok_unknown"]


# --- signed links ------------------------------------------------------------------------------


def test_a_link_opens_as_its_token_while_the_token_is_valid(
    tokens: TokenDesk, clock: Clock
) -> None:
    lasting, _ = tokens.issue(Role.EMPLOYEE, 1)
    expiring, _ = tokens.issue(Role.SUPERVISOR, None, ttl=timedelta(seconds=5))
    revoked, _ = tokens.issue(Role.EMPLOYEE, 1)
    tokens.revoke(revoked.token_id)
    holder = tokens.link_holder(lasting.token_id, address="198.51.100.2 via ipv4:10.0.0.1:5")
    assert holder == Principal(
        lasting.token_id, Role.EMPLOYEE, 1, "198.51.100.2 via ipv4:10.0.0.1:5"
    )
    assert tokens.link_holder(expiring.token_id).role is Role.SUPERVISOR
    clock.advance(timedelta(seconds=5))
    for gone in (expiring.token_id, revoked.token_id, "tok_unknown"):
        with pytest.raises(PermissionDenied):
            tokens.link_holder(gone)


# --- stream tickets ----------------------------------------------------------------------------


def test_a_ticket_opens_one_stream_as_its_token(tokens: TokenDesk, clock: Clock) -> None:
    token, secret = tokens.issue(Role.EMPLOYEE, 1)
    principal = tokens.identify(bearer(secret))
    issued, expires_at = tokens.issue_ticket(principal)
    assert expires_at == clock.start + TICKET_TTL
    opened = tokens.identify(ticket(issued), stream=True, address="198.51.100.2")
    assert opened == Principal(token.token_id, Role.EMPLOYEE, 1, address="198.51.100.2")
    with pytest.raises(TicketInvalid) as refused:
        tokens.identify(ticket(issued), stream=True)
    assert refused.value.reason == "ticket_invalid"


def test_a_ticket_expires_after_a_minute(tokens: TokenDesk, clock: Clock) -> None:
    _, secret = tokens.issue(Role.EMPLOYEE, 1)
    fresh, _ = tokens.issue_ticket(tokens.authenticate(secret))
    late, _ = tokens.issue_ticket(tokens.authenticate(secret))
    clock.advance(TICKET_TTL - timedelta(milliseconds=1))
    assert tokens.redeem_ticket(fresh).employee_id == 1
    clock.advance(timedelta(milliseconds=1))
    with pytest.raises(TicketInvalid):
        tokens.redeem_ticket(late)


def test_a_ticket_opens_nothing_but_a_stream(tokens: TokenDesk) -> None:
    _, secret = tokens.issue(Role.ADMIN, None)
    issued, _ = tokens.issue_ticket(tokens.authenticate(secret))
    with pytest.raises(TicketInvalid):
        tokens.identify(ticket(issued))
    # Refused before it was redeemed: it still opens its stream.
    assert tokens.identify(ticket(issued), stream=True).role is Role.ADMIN


def test_a_ticket_dies_with_its_token(tokens: TokenDesk, clock: Clock) -> None:
    revoked, secret = tokens.issue(Role.EMPLOYEE, 1)
    of_revoked, _ = tokens.issue_ticket(tokens.authenticate(secret))
    tokens.revoke(revoked.token_id)
    with pytest.raises(TicketInvalid):
        tokens.redeem_ticket(of_revoked)
    _, short_lived = tokens.issue(Role.EMPLOYEE, 1, ttl=timedelta(seconds=10))
    of_expiring, _ = tokens.issue_ticket(tokens.authenticate(short_lived))
    clock.advance(timedelta(seconds=10))
    with pytest.raises(TicketInvalid):
        tokens.redeem_ticket(of_expiring)


def test_an_unknown_ticket_or_scheme_is_refused(tokens: TokenDesk) -> None:
    with pytest.raises(TicketInvalid):
        tokens.identify(ticket("made-up"), stream=True)
    with pytest.raises(Unauthenticated):
        tokens.identify(None, stream=True)


# --- the audit log -----------------------------------------------------------------------------


def test_a_change_is_noted_with_its_actor(store: Store, tokens: TokenDesk, clock: Clock) -> None:
    token, _ = tokens.issue(Role.EMPLOYEE, 1, "desk", ttl=timedelta(days=30), actor=ADMIN)
    [entry] = entries(store)
    assert entry == AuditEntry(
        entry_id=entry.entry_id,
        at=clock.start,
        action="token.issued",
        token_id="tok_admin",
        role="admin",
        employee_id=None,
        address="203.0.113.7",
        target=token.token_id,
        details={
            "role": "employee",
            "employee_id": "1",
            "description": "desk",
            "expires_at": rfc3339(clock.start + timedelta(days=30)),
        },
    )
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry.details["expires_at"])


def test_a_refused_change_leaves_no_entry(store: Store, clock: Clock) -> None:
    directory = DirectoryAdmin(store, clock=clock)
    with pytest.raises(InvalidRequest):
        directory.upsert_group(10, "Night", [99], actor=ADMIN)
    channels = ChannelAdmin(store, clock=clock)
    channels.create("Line", 0, key="a-key-in-use", actor=ADMIN)
    with pytest.raises(InvalidRequest):
        channels.create("Line 2", 0, key="a-key-in-use", actor=ADMIN)
    assert [e.action for e in entries(store)] == ["channel.created"]


def test_without_an_actor_nothing_is_noted(store: Store, tokens: TokenDesk) -> None:
    # The seed and core's own upkeep act as nobody.
    tokens.issue(Role.SERVICE, None)
    ChannelAdmin(store).create("Line", 0)
    assert entries(store) == []


def test_the_log_is_listed_in_pages_for_admins_only(store: Store, clock: Clock) -> None:
    directory = DirectoryAdmin(store, clock=clock)
    for department_id in range(1, 6):
        directory.upsert_department(department_id, f"Dept {department_id}", actor=ADMIN)
    trail = AuditTrail(store, clock=clock)
    first, token = trail.list_entries(ADMIN, AuditFilter(), 3, "")
    assert [e.target for e in first] == ["5", "4", "3"]
    rest, last = trail.list_entries(ADMIN, AuditFilter(), 3, token)
    assert ([e.target for e in rest], last) == (["2", "1"], "")
    employee = Principal("tok_anna", Role.EMPLOYEE, 1)
    with pytest.raises(Exception, match="may not"):
        trail.list_entries(employee, AuditFilter(), 3, "")


@pytest.mark.parametrize(
    ("filters", "field"),
    [
        (AuditFilter(action="channel.deleted"), "action"),
        (AuditFilter(since=utc_now(), until=utc_now() - timedelta(1)), "until"),
        (AuditFilter(employee_id=-1), "employee_id"),
    ],
)
def test_bad_filters_are_refused(store: Store, filters: AuditFilter, field: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        AuditTrail(store).list_entries(ADMIN, filters, 0, "")
    assert set(refused.value.fields) == {field}


def test_a_bad_page_token_is_refused(store: Store) -> None:
    with pytest.raises(InvalidRequest) as refused:
        AuditTrail(store).list_entries(ADMIN, AuditFilter(), 0, "bm90LWEtdG9rZW4")
    assert set(refused.value.fields) == {"page_token"}


def test_an_export_is_itself_noted_first(store: Store, clock: Clock) -> None:
    directory = DirectoryAdmin(store, clock=clock)
    directory.upsert_department(1, "Support", actor=ADMIN)
    trail = AuditTrail(store, clock=clock)
    batches = trail.export(ADMIN, AuditFilter(since=clock.start))
    exported = [entry for batch in batches for entry in batch]
    assert [e.action for e in exported] == ["department.upserted", "audit.exported"]
    assert exported[1].details == {"since": rfc3339(clock.start)}
