"""Tokens and roles: who may do what (SPEC 6).

Secrets (tokens and channel keys) are stored only as SHA-256 hashes; a lookup
by hash means no secret is ever compared byte by byte.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import secrets

from core.errors import PermissionDenied


class Role(enum.StrEnum):
    ADMIN = "admin"
    SERVICE = "service"
    EMPLOYEE = "employee"
    # Reads every call, card, callback and the board; changes nothing but marking callbacks.
    SUPERVISOR = "supervisor"


@dataclasses.dataclass(frozen=True)
class Principal:
    token_id: str
    role: Role
    employee_id: int | None = None
    # Where the request came from, as the audit log records it ("" when unknown).
    address: str = ""

    def require(self, *roles: Role) -> None:
        # Admins may do everything.
        if self.role is Role.ADMIN or self.role in roles:
            return
        raise PermissionDenied(f"the {self.role.value} role may not do this")

    @property
    def is_employee(self) -> bool:
        return self.role is Role.EMPLOYEE


class Scheme(enum.StrEnum):
    """How a request proves who sent it, in `authorization: <scheme> <secret>`."""

    BEARER = "bearer"
    # A one-time stream ticket: opens one live stream, nothing else.
    TICKET = "ticket"


@dataclasses.dataclass(frozen=True)
class Credentials:
    scheme: Scheme
    secret: str


def credentials_of(authorization: str | None) -> Credentials | None:
    """The credentials of an `authorization` value, None when it names no known scheme."""
    scheme, _, secret = (authorization or "").partition(" ")
    secret = secret.strip()
    if not secret or scheme.lower() not in {s.value for s in Scheme}:
        return None
    return Credentials(Scheme(scheme.lower()), secret)


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_secret() -> str:
    """A URL-safe secret of 192 random bits."""
    return secrets.token_urlsafe(24)


def new_token_id() -> str:
    return "tok_" + secrets.token_hex(8)
