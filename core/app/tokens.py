"""Tokens and who holds them: authentication, issue with an optional lifetime,
revocation, and the one-time tickets that open a live stream (SPEC 6, 10).

A token is rotated without downtime by issuing the new one, moving its holder
over, then revoking the old one: both work in between.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from core.app import units
from core.app.audit import Action, note
from core.auth import (
    Credentials,
    Principal,
    Role,
    Scheme,
    new_secret,
    new_token_id,
    secret_hash,
)
from core.errors import (
    InvalidRequest,
    NotFound,
    PermissionDenied,
    TicketInvalid,
    TokenExpired,
    Unauthenticated,
)
from core.model import StreamTicket, Token, utc_now
from core.storage.port import Store, UnitOfWork
from vocabulary import wire_time

# How long a stream ticket may wait to be redeemed.
TICKET_TTL = timedelta(seconds=60)
# The longest lifetime a token may be issued with.
MAX_TTL = timedelta(days=3650)
# Tokens kept by their secret's hash at most (see KnownTokens).
MAX_KNOWN_TOKENS = 10_000
_MILLISECOND = timedelta(milliseconds=1)


def _refusal(token: Token | None, now: datetime) -> Unauthenticated | None:
    """Why the token may not be used now; None when it may."""
    if token is None or token.revoked_at is not None:
        return Unauthenticated("unknown or revoked token")
    if token.expired(now):
        assert token.expires_at is not None
        return TokenExpired(
            f"the token expired at {wire_time(token.expires_at)}; ask for a new one"
        )
    return None


def _principal(token: Token) -> Principal:
    return Principal(token_id=token.token_id, role=Role(token.role), employee_id=token.employee_id)


def _check_issue(role: Role, employee_id: int | None, ttl: timedelta | None) -> None:
    errors = {}
    if role is not Role.EMPLOYEE and employee_id:
        errors["employee_id"] = "only employee tokens name an employee"
    if ttl is not None and not timedelta(0) < ttl <= MAX_TTL:
        errors["ttl"] = f"a positive lifetime of at most {MAX_TTL.days} days"
    if errors:
        raise InvalidRequest.of(errors)


class KnownTokens:
    """Tokens found by their secret's hash, so that a request need not read its token.

    Kept only while this process is the store's one writer: every revocation then passes
    through TokenDesk.revoke, which forgets them all once it has committed. A read that a
    revocation overtook (begun before it, finished after) is not kept: `keep` is given the
    count of revocations taken before the read. Expiry is checked at every use.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, Token] = {}
        self._revocations = 0

    def get(self, hashed: str) -> Token | None:
        return self._tokens.get(hashed)

    @property
    def revocations(self) -> int:
        return self._revocations

    def keep(self, hashed: str, token: Token, revocations: int) -> None:
        with self._lock:
            if revocations != self._revocations:
                return
            if len(self._tokens) >= MAX_KNOWN_TOKENS:
                self._tokens.clear()
            self._tokens[hashed] = token

    def forget_all(self) -> None:
        with self._lock:
            self._revocations += 1
            self._tokens.clear()


class TokenDesk:
    def __init__(self, store: Store, clock: Callable[[], datetime] = utc_now) -> None:
        self.store = store
        self.clock = clock
        self._known = KnownTokens() if store.single_writer else None
        # Ends the open streams of a revoked token (set by the server's wiring).
        self.on_revoked: Callable[[str], None] | None = None

    def identify(
        self, credentials: Credentials | None, *, stream: bool = False, address: str = ""
    ) -> Principal:
        """Who sends a request: a bearer token for any request; a stream ticket, used up
        on the way, only for opening a live stream (`stream`). `address` is where the
        request came from, for the audit log."""
        if credentials is None:
            raise Unauthenticated("missing token: send 'authorization: Bearer <token>'")
        if credentials.scheme is Scheme.TICKET:
            if not stream:
                raise TicketInvalid("a stream ticket opens one live stream and nothing else")
            principal = self.redeem_ticket(credentials.secret)
        else:
            principal = self.authenticate(credentials.secret)
        return dataclasses.replace(principal, address=address)

    def authenticate(self, secret: str | None) -> Principal:
        """The principal of a bearer token's secret."""
        if not secret:
            raise Unauthenticated("missing token: send 'authorization: Bearer <token>'")
        token = self._by_secret_hash(secret_hash(secret))
        refusal = _refusal(token, self.clock())
        if refusal is not None:
            raise refusal
        assert token is not None
        return _principal(token)

    def _by_secret_hash(self, hashed: str) -> Token | None:
        known = self._known
        if known is None:
            return units.read(self.store, lambda uow: uow.tokens.by_secret_hash(hashed))
        token = known.get(hashed)
        if token is None:
            revocations = known.revocations
            token = units.read(self.store, lambda uow: uow.tokens.by_secret_hash(hashed))
            if token is not None and token.revoked_at is None:
                known.keep(hashed, token, revocations)
        return token

    def link_holder(self, token_id: str, *, address: str = "") -> Principal:
        """The principal of the token a signed link was made for, at `address`: the
        links of a token that was revoked or has expired stop working with it."""
        token = units.read(self.store, lambda uow: uow.tokens.get(token_id))
        if _refusal(token, self.clock()) is not None:
            raise PermissionDenied("the link's token was revoked or has expired")
        assert token is not None
        return dataclasses.replace(_principal(token), address=address)

    def issue(
        self,
        role: Role,
        employee_id: int | None,
        description: str = "",
        secret: str | None = None,
        *,
        ttl: timedelta | None = None,
        actor: Principal | None = None,
    ) -> tuple[Token, str]:
        """A new token and its secret (random unless given), valid for `ttl` (for ever
        when None); only its hash is stored."""
        _check_issue(role, employee_id, ttl)
        secret = secret or new_secret()

        def work(uow: UnitOfWork) -> Token:
            if role is Role.EMPLOYEE and (
                not employee_id or not uow.employees.get_many([employee_id])
            ):
                raise InvalidRequest.of({"employee_id": "an existing employee is required"})
            now = self.clock()
            token = Token(
                token_id=new_token_id(),
                secret_hash=secret_hash(secret),
                role=role.value,
                created_at=now,
                employee_id=employee_id if role is Role.EMPLOYEE else None,
                description=description,
                # Whole milliseconds: what every store keeps exactly.
                expires_at=None if ttl is None else now + ttl // _MILLISECOND * _MILLISECOND,
            )
            uow.tokens.add(token)
            note(
                uow,
                actor,
                Action.TOKEN_ISSUED,
                now,
                token.token_id,
                role=token.role,
                employee_id=token.employee_id,
                description=description or None,
                expires_at=token.expires_at,
            )
            return token

        return units.write(self.store, work), secret

    def known(self, secret: str) -> bool:
        found = units.read(self.store, lambda uow: uow.tokens.by_secret_hash(secret_hash(secret)))
        return found is not None

    def revoke(self, token_id: str, *, actor: Principal | None = None) -> None:
        def work(uow: UnitOfWork) -> None:
            token = uow.tokens.get(token_id)
            if token is None or token.revoked_at is not None:
                raise NotFound(f"token {token_id} not found")
            token.revoked_at = self.clock()
            uow.tokens.save(token)
            note(uow, actor, Action.TOKEN_REVOKED, token.revoked_at, token_id)

        units.write(self.store, work)
        if self._known is not None:
            self._known.forget_all()
        if self.on_revoked is not None:
            self.on_revoked(token_id)

    def list_active(self) -> list[Token]:
        """Tokens not revoked, expired ones too, oldest first."""
        return units.read(self.store, lambda uow: uow.tokens.list_active())

    def no_longer_valid(self, token_ids: Iterable[str]) -> list[str]:
        """Those of `token_ids` that were revoked or have expired (or are unknown)."""
        wanted = list(dict.fromkeys(token_ids))
        if not wanted:
            return []
        found = units.read(self.store, lambda uow: uow.tokens.get_many(wanted))
        now = self.clock()
        return [t for t in wanted if _refusal(found.get(t), now) is not None]

    # --- stream tickets ----------------------------------------------------------------------

    def issue_ticket(self, principal: Principal) -> tuple[str, datetime]:
        """A one-time ticket that opens one live stream as `principal` (its token's
        identity and scope) within TICKET_TTL, and when it expires."""
        ticket_secret = new_secret()
        now = self.clock()
        ticket = StreamTicket(
            ticket_hash=secret_hash(ticket_secret),
            token_id=principal.token_id,
            role=principal.role.value,
            employee_id=principal.employee_id,
            created_at=now,
            expires_at=now + TICKET_TTL,
        )
        units.write(self.store, lambda uow: uow.stream_tickets.add(ticket))
        return ticket_secret, ticket.expires_at

    def redeem_ticket(self, ticket_secret: str) -> Principal:
        """The principal a ticket was issued to; the ticket is used up (also when it
        turns out expired), and is refused when its token is no longer valid."""
        now = self.clock()

        def work(uow: UnitOfWork) -> tuple[StreamTicket, Token | None] | None:
            ticket = uow.stream_tickets.take(secret_hash(ticket_secret))
            if ticket is None or ticket.expires_at <= now:
                return None
            return ticket, uow.tokens.get(ticket.token_id)

        found = units.write(self.store, work)
        if found is None:
            raise TicketInvalid("unknown, used or expired stream ticket; ask for a new one")
        ticket, token = found
        if _refusal(token, now) is not None:
            raise TicketInvalid("the token this ticket was issued to is no longer valid")
        return Principal(
            token_id=ticket.token_id, role=Role(ticket.role), employee_id=ticket.employee_id
        )
