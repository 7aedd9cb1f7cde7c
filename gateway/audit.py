"""The audit log, for admins: GET /api/v2/telephony/audit (newest first, a page at a time)
and GET /api/v2/telephony/audit/export (every matching entry, oldest first, as JSON lines).

The caller's token goes to core as it came: core lets only admin tokens read the log, and
no API changes or removes an entry.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import falcon.asgi
import grpc.aio

from gateway import params
from gateway.auth import caller_authorization
from gateway.core_client import CoreClient
from gateway.params import Fields
from telephony.v1.directory_service_pb2 import (
    AuditFilter,
    ExportAuditEntriesRequest,
    ListAuditEntriesRequest,
)
from vats_rpc.audit import entry_json

log = logging.getLogger("gateway")

MEDIA_NDJSON = "application/x-ndjson"


def audit_filter(req: falcon.asgi.Request, fields: Fields) -> AuditFilter:
    """The filter of the query string; what is wrong with it goes in `fields`."""
    found = AuditFilter(
        action=params.text(req, "action", fields),
        token_id=params.text(req, "token_id", fields),
        employee_id=params.positive_id(req, "employee_id", fields),
    )
    params.instant(req, "since", fields, found.since)
    params.instant(req, "until", fields, found.until)
    return found


def list_request(req: falcon.asgi.Request) -> ListAuditEntriesRequest:
    fields: Fields = {}
    request = ListAuditEntriesRequest(filter=audit_filter(req, fields))
    params.read_page(req, request, fields)
    params.check(fields)
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
        params.check(fields)
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
