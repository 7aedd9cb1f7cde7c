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


@dataclasses.dataclass(frozen=True)
class Principal:
    token_id: str
    role: Role
    employee_id: int | None = None

    def require(self, *roles: Role) -> None:
        # Admins may do everything.
        if self.role is Role.ADMIN or self.role in roles:
            return
        raise PermissionDenied(f"the {self.role.value} role may not do this")

    @property
    def is_employee(self) -> bool:
        return self.role is Role.EMPLOYEE


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_secret() -> str:
    """A URL-safe secret of 192 random bits."""
    return secrets.token_urlsafe(24)


def new_token_id() -> str:
    return "tok_" + secrets.token_hex(8)
