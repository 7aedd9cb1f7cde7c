"""DirectoryService: departments, employees, groups, phone contacts and tokens."""

from __future__ import annotations

from core.rpc import decode, encode
from core.rpc.handler import ADMIN, Context, Handler
from telephony.v1 import directory_service_pb2 as pb
from telephony.v1 import directory_service_pb2_grpc


class DirectoryServicer(directory_service_pb2_grpc.DirectoryServiceServicer):
    def __init__(self, handler: Handler) -> None:
        self.h = handler
        self.directory = handler.app.directory
        self.tokens = handler.app.tokens

    async def UpsertDepartment(
        self, request: pb.UpsertDepartmentRequest, context: Context
    ) -> pb.UpsertDepartmentResponse:
        d = request.department
        return await self.h.unary(
            context,
            ADMIN,
            lambda _: self.directory.upsert_department(d.department_id, d.name),
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
            lambda _: self.directory.upsert_employee(e.employee_id, e.name, e.telephony),
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
            lambda _: self.directory.upsert_group(g.group_id, g.name, g.member_employee_ids),
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
            lambda _: self.directory.upsert_contact(request.phone, request.name),
            lambda contact: pb.UpsertContactResponse(contact=encode.contact_message(contact)),
        )

    async def ListContacts(
        self, request: pb.ListContactsRequest, context: Context
    ) -> pb.ListContactsResponse:
        return await self.h.unary(
            context,
            ADMIN,
            lambda _: self.directory.list_contacts(request.page_size, request.page_token),
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
            lambda _: self.directory.remove_contact(request.contact_id),
            lambda _: pb.RemoveContactResponse(),
        )

    async def IssueToken(
        self, request: pb.IssueTokenRequest, context: Context
    ) -> pb.IssueTokenResponse:
        return await self.h.unary(
            context,
            ADMIN,
            lambda _: self.tokens.issue(
                decode.role(request.role), request.employee_id or None, request.description
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
            lambda _: self.tokens.revoke(request.token_id),
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
