"""The audit log, for admins: GET /api/v2/telephony/audit (newest first, a page at a time)
and GET /api/v2/telephony/audit/export (every matching entry, oldest first, as JSON lines).

The caller's token goes to core as it came: core lets only admin tokens read the log, and
no API changes or removes an entry.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import falcon.asgi
import grpc.aio

from gateway import convert
from gateway.auth import caller_authorization
from gateway.core_client import CoreClient
from gateway.errors import invalid_fields
from gateway.history import Fields, read_page
from telephony.v1 import call_service_pb2
from telephony.v1.directory_service_pb2 import (
    AuditEntry,
    AuditFilter,
    ExportAuditEntriesRequest,
    ListAuditEntriesRequest,
)
from vocabulary import ROLE

log = logging.getLogger("gateway")

MEDIA_NDJSON = "application/x-ndjson"
_ID = re.compile(r"[1-9][0-9]{0,17}")
_MAX_FILTER_CHARS = 255
_INSTANT = "an ISO-8601 date or date-time, e.g. 2026-01-31T09:00:00Z"


def entry_json(entry: AuditEntry) -> dict[str, Any]:
    return {
        "entry_id": entry.entry_id,
        "at": convert.time_json(entry, "time"),
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


def audit_filter(req: falcon.asgi.Request, fields: Fields) -> AuditFilter:
    """The filter of the query string; what is wrong with it goes in `fields`."""
    found = AuditFilter()
    for name in ("action", "token_id"):
        raw = (req.get_param(name) or "").strip()
        if len(raw) > _MAX_FILTER_CHARS:
            fields[name] = "too long"
        else:
            setattr(found, name, raw)
    employee = (req.get_param("employee_id") or "").strip()
    if employee and not _ID.fullmatch(employee):
        fields["employee_id"] = "a positive whole number"
    elif employee:
        found.employee_id = int(employee)
    for name in ("since", "until"):
        raw = (req.get_param(name) or "").strip()
        try:
            if raw:
                getattr(found, name).FromDatetime(_instant(raw))
        except (ValueError, OverflowError):
            fields[name] = _INSTANT
    return found


def _instant(raw: str) -> datetime:
    """ISO-8601 date or date-time; one without an offset is UTC (as the history's filters)."""
    value = datetime.fromisoformat(raw)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def list_request(req: falcon.asgi.Request) -> ListAuditEntriesRequest:
    fields: Fields = {}
    request = ListAuditEntriesRequest(filter=audit_filter(req, fields))
    # Paging is read as every listing reads it.
    page = call_service_pb2.ListCallsRequest()
    read_page(req, page, fields)
    request.page_size, request.page_token = page.page_size, page.page_token
    if fields:
        raise invalid_fields(fields)
    return request


class AuditResource:
    """GET /api/v2/telephony/audit: a page of entries, newest first."""

    def __init__(self, core: CoreClient) -> None:
        self._core = core

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        req.context.action = "list_audit_entries"
        authorization = caller_authorization(req)
        request = list_request(req)
        reply = await self._core.list_audit_entries(request, authorization, req.context.request_id)
        resp.media = {
            "data": [entry_json(entry) for entry in reply.entries],
            "next_page_token": reply.next_page_token or None,
        }


class AuditExportResource:
    """GET /api/v2/telephony/audit/export: every matching entry, oldest first, one JSON
    object a line, streamed as core sends it."""

    def __init__(self, core: CoreClient) -> None:
        self._core = core

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        req.context.action = "export_audit_entries"
        authorization = caller_authorization(req)
        fields: Fields = {}
        request = ExportAuditEntriesRequest(filter=audit_filter(req, fields))
        if fields:
            raise invalid_fields(fields)
        call = self._core.export_audit_entries(request, authorization, req.context.request_id)
        try:
            # Core's refusal (a role that may not read the log, a bad filter) comes before
            # any entry: it is answered as an error, not as a 200 with an empty body.
            first = await call.read()
        except grpc.aio.AioRpcError as error:
            raise self._core.rpc_error(error) from error
        resp.content_type = MEDIA_NDJSON
        resp.stream = _lines(call, first)


async def _lines(call: grpc.aio.UnaryStreamCall, first: Any) -> AsyncIterator[bytes]:
    message = first
    try:
        while message is not grpc.aio.EOF:
            text = "".join(
                json.dumps(entry_json(entry), ensure_ascii=False) + "\n"
                for entry in message.entries
            )
            if text:
                yield text.encode("utf-8")
            message = await call.read()
    except grpc.aio.AioRpcError as error:
        # The answer has started: a cut-off export is all that can be said now.
        log.warning("audit export broke off: %s", error.code().name)
    finally:
        call.cancel()
