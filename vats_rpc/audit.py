"""An audit entry as JSON: one shape for the HTTP API's list and export and for
`vats audit --json-lines`."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from telephony.v1.directory_service_pb2 import AuditEntry
from vocabulary import ROLE, wire_time


def entry_json(entry: AuditEntry) -> dict[str, Any]:
    return {
        "entry_id": entry.entry_id,
        # To the millisecond always, as the entries' own details.
        "at": wire_time(entry.time.ToDatetime(tzinfo=UTC)),
        "action": entry.action,
        "actor": {
            "token_id": entry.actor.token_id or None,
            "role": ROLE.name(entry.actor.role),
            "employee_id": entry.actor.employee_id or None,
        },
        "address": entry.address,
        "target": entry.target,
        "details": dict(sorted(entry.details.items())),
    }
