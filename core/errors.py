"""Domain errors: what can go wrong with a request, in the helpdesk's terms.

Each error carries a stable `reason` (the `code` of the HTTP error body) and,
where fields are at fault, the offending fields keyed by their PBX names.
The gRPC layer maps each class to a status code in one table.
"""

from __future__ import annotations


class DomainError(Exception):
    reason = "error"

    def __init__(self, message: str, fields: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = dict(fields or {})


class InvalidRequest(DomainError):
    """A field is missing, malformed, or conflicts with another (HTTP 422)."""

    reason = "invalid_request"

    @classmethod
    def of(cls, fields: dict[str, str]) -> InvalidRequest:
        names = ", ".join(sorted(fields))
        return cls(f"invalid fields: {names}", fields)


class NotFound(DomainError):
    """Unknown or disabled channel, unknown call or recording (HTTP 404)."""

    reason = "not_found"


class FinalStatus(DomainError):
    """A status change after a final status (HTTP 409)."""

    reason = "final_status"


class IdempotencyConflict(DomainError):
    """An Idempotency-Key reused with a different request, or still in flight (HTTP 409)."""

    reason = "idempotency_conflict"


class UnsupportedMedia(DomainError):
    """A recording that is not mp3, mp4, wav or ogg (HTTP 415)."""

    reason = "unsupported_media_type"


class TooLarge(DomainError):
    """A recording over the configured limit (HTTP 413)."""

    reason = "payload_too_large"


class Unauthenticated(DomainError):
    """No token, or a token that is unknown or revoked (HTTP 401)."""

    reason = "unauthenticated"


class TokenExpired(Unauthenticated):
    """A token past the lifetime it was issued with (HTTP 401)."""

    reason = "token_expired"


class TicketInvalid(Unauthenticated):
    """A stream ticket that is unknown, used already, expired, or whose token is no
    longer valid (HTTP 401)."""

    reason = "ticket_invalid"


class PermissionDenied(DomainError):
    """A valid token whose role does not allow the request (HTTP 403)."""

    reason = "permission_denied"


class Conflict(DomainError):
    """A concurrent change won the race too many times; safe to retry (HTTP 503)."""

    reason = "conflict"


class TooLate(DomainError):
    """The caller's deadline passed before the work began: it is not done."""

    reason = "deadline_exceeded"


class ContactInUse(DomainError):
    """A contact that calls are linked to: removing it would leave their tickets
    pointing nowhere, so it stays while they do (gRPC FAILED_PRECONDITION)."""

    reason = "contact_in_use"


class RangeNotSatisfiable(DomainError):
    """A byte range that starts past the end of a recording (HTTP 416)."""

    reason = "range_not_satisfiable"
