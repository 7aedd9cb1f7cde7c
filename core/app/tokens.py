"""Tokens and who holds them: authentication, issue, revocation (SPEC 6)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from core.app import units
from core.auth import Principal, Role, new_secret, new_token_id, secret_hash
from core.errors import InvalidRequest, NotFound, Unauthenticated
from core.model import Token, utc_now
from core.storage.port import Store, UnitOfWork


class TokenDesk:
    def __init__(self, store: Store, clock: Callable[[], datetime] = utc_now) -> None:
        self.store = store
        self.clock = clock
        # Ends the open streams of a revoked token (set by the server's wiring).
        self.on_revoked: Callable[[str], None] | None = None

    def authenticate(self, secret: str | None) -> Principal:
        if not secret:
            raise Unauthenticated("missing token: send 'authorization: Bearer <token>'")
        token = units.read(self.store, lambda uow: uow.tokens.by_secret_hash(secret_hash(secret)))
        if token is None or token.revoked_at is not None:
            raise Unauthenticated("unknown or revoked token")
        return Principal(
            token_id=token.token_id, role=Role(token.role), employee_id=token.employee_id
        )

    def issue(
        self,
        role: Role,
        employee_id: int | None,
        description: str = "",
        secret: str | None = None,
    ) -> tuple[Token, str]:
        """A new token and its secret (random unless given); only its hash is stored."""
        if role is not Role.EMPLOYEE and employee_id:
            raise InvalidRequest.of({"employee_id": "only employee tokens name an employee"})
        secret = secret or new_secret()

        def work(uow: UnitOfWork) -> Token:
            if role is Role.EMPLOYEE and (
                not employee_id or not uow.employees.get_many([employee_id])
            ):
                raise InvalidRequest.of({"employee_id": "an existing employee is required"})
            token = Token(
                token_id=new_token_id(),
                secret_hash=secret_hash(secret),
                role=role.value,
                created_at=self.clock(),
                employee_id=employee_id if role is Role.EMPLOYEE else None,
                description=description,
            )
            uow.tokens.add(token)
            return token

        return units.write(self.store, work), secret

    def known(self, secret: str) -> bool:
        found = units.read(self.store, lambda uow: uow.tokens.by_secret_hash(secret_hash(secret)))
        return found is not None

    def revoke(self, token_id: str) -> None:
        def work(uow: UnitOfWork) -> None:
            token = uow.tokens.get(token_id)
            if token is None or token.revoked_at is not None:
                raise NotFound(f"token {token_id} not found")
            token.revoked_at = self.clock()
            uow.tokens.save(token)

        units.write(self.store, work)
        if self.on_revoked is not None:
            self.on_revoked(token_id)

    def list_active(self) -> list[Token]:
        return units.read(self.store, lambda uow: uow.tokens.list_active())
