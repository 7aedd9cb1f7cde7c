"""A fake core for the web edge's tests: the gateway fakes' CallService (plus call history and
stream tickets on the card stream) and a DirectoryService with stream tickets and the audit log."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio

from telephony.v1 import (
    call_service_pb2,
    directory_service_pb2,
    directory_service_pb2_grpc,
)
from tests.gateway.gateway_fakes import (
    EMPLOYEE_TOKEN,
    Failure,
    FakeCallService,
    FakeCore,
    rich_status,
)

ADMIN_TOKEN = "root-secret"
EMPLOYEE_BEARER = f"Bearer {EMPLOYEE_TOKEN}"
ADMIN_BEARER = f"Bearer {ADMIN_TOKEN}"
GOOD_TICKET = "one-time-ticket"
TICKET_EXPIRES = "2026-01-31T09:01:00Z"
Role = directory_service_pb2.Role


def metadata_of(context: Any) -> dict[str, str]:
    return dict(context.invocation_metadata() or ())


async def refuse(context: Any, failure: Failure) -> None:
    await context.abort_with_status(rich_status(failure))


async def refuse_strangers(context: Any, *allowed: str) -> None:
    """Core's answer to a call without one of the `allowed` credentials."""
    if metadata_of(context).get("authorization") not in (allowed or (EMPLOYEE_BEARER,)):
        await refuse(context, Failure(grpc.StatusCode.UNAUTHENTICATED, "unauthenticated", "who?"))


class EdgeCallService(FakeCallService):
    def __init__(self) -> None:
        super().__init__()
        self.tickets_taken: list[str] = []

    async def ListCalls(
        self, request: call_service_pb2.ListCallsRequest, context: Any
    ) -> call_service_pb2.ListCallsResponse:
        self._note(request, context)
        await refuse_strangers(context)
        return call_service_pb2.ListCallsResponse(calls=[self.reply])

    async def GetCall(
        self, request: call_service_pb2.GetCallRequest, context: Any
    ) -> call_service_pb2.GetCallResponse:
        self._note(request, context)
        await refuse_strangers(context)
        return call_service_pb2.GetCallResponse(call=self.reply)

    async def WatchCallCards(
        self, request: call_service_pb2.WatchCallCardsRequest, context: Any
    ) -> AsyncIterator[call_service_pb2.CallCardEvent]:
        """The fakes' card stream, also opened once with GOOD_TICKET, as core would."""
        self.metadata.append(metadata_of(context))
        authorization = self.metadata[-1].get("authorization", "")
        if authorization.startswith("Ticket "):
            self.watch_requests.append(request)
            ticket = authorization.removeprefix("Ticket ")
            if ticket != GOOD_TICKET or ticket in self.tickets_taken:
                await refuse(
                    context,
                    Failure(grpc.StatusCode.UNAUTHENTICATED, "ticket_invalid", "used ticket"),
                )
            self.tickets_taken.append(ticket)
            async for event in self.queued_card_events(context):
                yield event
            return
        async for event in super().WatchCallCards(request, context):
            yield event


class FakeDirectoryService(directory_service_pb2_grpc.DirectoryServiceServicer):
    def __init__(self) -> None:
        self.metadata: list[dict[str, str]] = []
        self.list_requests: list[directory_service_pb2.ListAuditEntriesRequest] = []
        self.export_requests: list[directory_service_pb2.ExportAuditEntriesRequest] = []
        self.entries: list[directory_service_pb2.AuditEntry] = []
        self.next_page_token = ""
        self.failure: Failure | None = None

    async def _check(self, context: Any, *allowed: str) -> None:
        self.metadata.append(metadata_of(context))
        if self.failure is not None:
            await refuse(context, self.failure)
        await refuse_strangers(context, *allowed)

    async def IssueStreamTicket(
        self, request: directory_service_pb2.IssueStreamTicketRequest, context: Any
    ) -> directory_service_pb2.IssueStreamTicketResponse:
        await self._check(context, EMPLOYEE_BEARER, ADMIN_BEARER)
        reply = directory_service_pb2.IssueStreamTicketResponse(ticket=GOOD_TICKET)
        reply.expire_time.FromJsonString(TICKET_EXPIRES)
        return reply

    async def ListAuditEntries(
        self, request: directory_service_pb2.ListAuditEntriesRequest, context: Any
    ) -> directory_service_pb2.ListAuditEntriesResponse:
        self.list_requests.append(request)
        await self._admin_only(context)
        return directory_service_pb2.ListAuditEntriesResponse(
            entries=self.entries, next_page_token=self.next_page_token
        )

    async def ExportAuditEntries(
        self, request: directory_service_pb2.ExportAuditEntriesRequest, context: Any
    ) -> AsyncIterator[directory_service_pb2.ExportAuditEntriesResponse]:
        self.export_requests.append(request)
        await self._admin_only(context)
        # Two entries a batch, as core sends them in batches.
        for start in range(0, len(self.entries), 2):
            yield directory_service_pb2.ExportAuditEntriesResponse(
                entries=self.entries[start : start + 2]
            )

    async def _admin_only(self, context: Any) -> None:
        await self._check(context, EMPLOYEE_BEARER, ADMIN_BEARER)
        if metadata_of(context).get("authorization") != ADMIN_BEARER:
            await refuse(
                context,
                Failure(grpc.StatusCode.PERMISSION_DENIED, "permission_denied", "admins only"),
            )


def audit_entry(entry_id: int, action: str = "token.issued") -> directory_service_pb2.AuditEntry:
    entry = directory_service_pb2.AuditEntry(
        entry_id=entry_id,
        action=action,
        actor=directory_service_pb2.AuditActor(token_id="t-admin", role=Role.ROLE_ADMIN),
        address="10.0.0.7",
        target=f"t-{entry_id}",
        details={"role": "employee", "employee_id": "1"},
    )
    entry.time.FromJsonString("2026-01-31T09:00:00Z")
    return entry


class EdgeCore(FakeCore):
    """The gateway fakes' core serving another CallService, and a DirectoryService."""

    def __init__(self, calls: FakeCallService | None = None) -> None:
        super().__init__(calls or EdgeCallService())
        self.directory = FakeDirectoryService()
        directory_service_pb2_grpc.add_DirectoryServiceServicer_to_server(
            self.directory, self.server
        )


def edge_core() -> EdgeCore:
    """An edge core, serving while used in `async with`."""
    return EdgeCore()
