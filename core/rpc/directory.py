"""DirectoryService: departments, employees, groups, phone contacts, tokens, stream
tickets and the audit log."""

from __future__ import annotations

from collections.abc import AsyncIterator

from core.auth import Role
from core.rpc import audit, decode, encode
from core.rpc.handler import ADMIN, Context, Handler
from telephony.v1 import directory_service_pb2 as pb
from telephony.v1 import directory_service_pb2_grpc


class DirectoryServicer(directory_service_pb2_grpc.DirectoryServiceServicer):
    def __init__(self, handler: Handler) -> None:
        self.h = handler
        self.directory = handler.app.directory
        self.tokens = handler.app.tokens
        self.audit = handler.app.audit

    async def UpsertDepartment(
        self, request: pb.UpsertDepartmentRequest, context: Context
    ) -> pb.UpsertDepartmentResponse:
        d = request.department
        return await self.h.unary(
            context,
            ADMIN,
            lambda principal: self.directory.upsert_department(
                d.department_id, d.name, actor=principal
            ),
            lambda department: pb.UpsertDepartmentResponse(
                department=encode.department_message(department)
            ),
        )

    async def ListDepartments(
        self, request: pb.ListDepartmentsRequest, context: Context
    ) -> pb.ListDepartmentsResponse:
        return await self.h.unary(
            context,
            ADMIN,
            lambda _: self.directory.list_departments(),
            lambda found: pb.ListDepartmentsResponse(
                departments=[encode.department_message(d) for d in found]
            ),
        )

    async def UpsertEmployee(
        self, request: pb.UpsertEmployeeRequest, context: Context
    ) -> pb.UpsertEmployeeResponse:
        e = request.employee
        return await self.h.unary(
            context,
            ADMIN,
            lambda principal: self.directory.upsert_employee(
                e.employee_id, e.name, e.telephony, actor=principal
            ),
            lambda employee: pb.UpsertEmployeeResponse(employee=encode.employee_message(employee)),
        )

    async def ListEmployees(
        self, request: pb.ListEmployeesRequest, context: Context
    ) -> pb.ListEmployeesResponse:
        return await self.h.unary(
            context,
            ADMIN,
            lambda _: self.directory.list_employees(),
            lambda found: pb.ListEmployeesResponse(
                employees=[encode.employee_message(e) for e in found]
            ),
        )

    async def UpsertGroup(
        self, request: pb.UpsertGroupRequest, context: Context
    ) -> pb.UpsertGroupResponse:
        g = request.group
        return await self.h.unary(
            context,
            ADMIN,
            lambda principal: self.directory.upsert_group(
                g.group_id, g.name, g.member_employee_ids, actor=principal
            ),
            lambda group: pb.UpsertGroupResponse(group=encode.group_message(group)),
        )

    async def ListGroups(
        self, request: pb.ListGroupsRequest, context: Context
    ) -> pb.ListGroupsResponse:
        return await self.h.unary(
            context,
            ADMIN,
            lambda _: self.directory.list_groups(),
            lambda found: pb.ListGroupsResponse(groups=[encode.group_message(g) for g in found]),
        )

    async def UpsertContact(
        self, request: pb.UpsertContactRequest, context: Context
    ) -> pb.UpsertContactResponse:
        return await self.h.unary(
            context,
            ADMIN,
            lambda principal: self.directory.upsert_contact(
                request.phone, request.name, actor=principal
            ),
            lambda contact: pb.UpsertContactResponse(contact=encode.contact_message(contact)),
        )

    async def ListContacts(
        self, request: pb.ListContactsRequest, context: Context
    ) -> pb.ListContactsResponse:
        return await self.h.unary(
            context,
            ADMIN,
            lambda principal: self.directory.list_contacts(
                request.page_size, request.page_token, actor=principal
            ),
            lambda page: pb.ListContactsResponse(
                contacts=[encode.contact_message(c) for c in page[0]], next_page_token=page[1]
            ),
        )

    async def RemoveContact(
        self, request: pb.RemoveContactRequest, context: Context
    ) -> pb.RemoveContactResponse:
        return await self.h.unary(
            context,
            ADMIN,
            lambda principal: self.directory.remove_contact(request.contact_id, actor=principal),
            lambda _: pb.RemoveContactResponse(),
        )

    async def IssueToken(
        self, request: pb.IssueTokenRequest, context: Context
    ) -> pb.IssueTokenResponse:
        return await self.h.unary(
            context,
            ADMIN,
            lambda principal: self.tokens.issue(
                decode.role(request.role),
                request.employee_id or None,
                request.description,
                ttl=audit.ttl(request),
                actor=principal,
            ),
            lambda issued: pb.IssueTokenResponse(
                token=encode.token_message(issued[0]), secret=issued[1]
            ),
        )

    async def RevokeToken(
        self, request: pb.RevokeTokenRequest, context: Context
    ) -> pb.RevokeTokenResponse:
        return await self.h.unary(
            context,
            ADMIN,
            lambda principal: self.tokens.revoke(request.token_id, actor=principal),
            lambda _: pb.RevokeTokenResponse(),
        )

    async def ListTokens(
        self, request: pb.ListTokensRequest, context: Context
    ) -> pb.ListTokensResponse:
        return await self.h.unary(
            context,
            ADMIN,
            lambda _: self.tokens.list_active(),
            lambda found: pb.ListTokensResponse(tokens=[encode.token_message(t) for t in found]),
        )

    async def IssueStreamTicket(
        self, request: pb.IssueStreamTicketRequest, context: Context
    ) -> pb.IssueStreamTicketResponse:
        return await self.h.unary(
            context, tuple(Role), self.tokens.issue_ticket, audit.ticket_response
        )

    async def ListAuditEntries(
        self, request: pb.ListAuditEntriesRequest, context: Context
    ) -> pb.ListAuditEntriesResponse:
        return await self.h.unary(
            context,
            ADMIN,
            lambda principal: self.audit.list_entries(
                principal,
                audit.audit_filter(request.filter),
                request.page_size,
                request.page_token,
            ),
            lambda page: pb.ListAuditEntriesResponse(
                entries=[audit.entry_message(e) for e in page[0]], next_page_token=page[1]
            ),
        )

    async def ExportAuditEntries(
        self, request: pb.ExportAuditEntriesRequest, context: Context
    ) -> AsyncIterator[pb.ExportAuditEntriesResponse]:
        batches = await self.h.call(
            context,
            ADMIN,
            lambda principal: self.audit.export(principal, audit.audit_filter(request.filter)),
        )
        while batch := await self.h.runner.run(next, batches, None):
            yield pb.ExportAuditEntriesResponse(entries=[audit.entry_message(e) for e in batch])
