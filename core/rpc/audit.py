"""Messages of token lifetimes, stream tickets and the audit log, to and from core's records."""

from __future__ import annotations

from datetime import datetime, timedelta

from core.app.audit import AuditFilter
from core.model import AuditEntry
from core.rpc.decode import from_timestamp
from core.rpc.encode import role_of, timestamp
from telephony.v1 import directory_service_pb2 as pb


def ttl(request: pb.IssueTokenRequest) -> timedelta | None:
    """The lifetime asked for; None (for ever) when unset."""
    return request.ttl.ToTimedelta() if request.HasField("ttl") else None


def _time(message: pb.AuditFilter, field: str) -> datetime | None:
    return from_timestamp(getattr(message, field)) if message.HasField(field) else None


def audit_filter(message: pb.AuditFilter) -> AuditFilter:
    return AuditFilter(
        action=message.action.strip(),
        token_id=message.token_id.strip(),
        employee_id=message.employee_id,
        since=_time(message, "since"),
        until=_time(message, "until"),
    )


def ticket_response(ticket: tuple[str, datetime]) -> pb.IssueStreamTicketResponse:
    return pb.IssueStreamTicketResponse(ticket=ticket[0], expire_time=timestamp(ticket[1]))


def entry_message(entry: AuditEntry) -> pb.AuditEntry:
    return pb.AuditEntry(
        entry_id=entry.entry_id,
        time=timestamp(entry.at),
        action=entry.action,
        actor=pb.AuditActor(
            token_id=entry.token_id,
            role=role_of(entry.role),
            employee_id=entry.employee_id or 0,
        ),
        address=entry.address,
        target=entry.target,
        details=entry.details,
    )
