"""ChannelService and DirectoryService against a real grpc.aio server (admin role)."""

from __future__ import annotations

from collections.abc import Awaitable

import grpc
import pytest

from telephony.v1 import (
    call_pb2,
    call_service_pb2,
    call_service_pb2_grpc,
    channel_service_pb2_grpc,
    directory_service_pb2_grpc,
)
from telephony.v1 import (
    channel_service_pb2 as ch,
)
from telephony.v1 import (
    directory_service_pb2 as dr,
)
from tests.conftest import bearer

ADMIN = bearer("demo-admin")


@pytest.fixture
def channels(channel: grpc.aio.Channel) -> channel_service_pb2_grpc.ChannelServiceStub:
    return channel_service_pb2_grpc.ChannelServiceStub(channel)


@pytest.fixture
def directory(channel: grpc.aio.Channel) -> directory_service_pb2_grpc.DirectoryServiceStub:
    return directory_service_pb2_grpc.DirectoryServiceStub(channel)


@pytest.fixture
def calls(channel: grpc.aio.Channel) -> call_service_pb2_grpc.CallServiceStub:
    return call_service_pb2_grpc.CallServiceStub(channel)


async def create_with_key(calls: call_service_pb2_grpc.CallServiceStub, key: str) -> call_pb2.Call:
    reply = await calls.CreateCall(
        call_service_pb2.CreateCallRequest(
            channel=call_service_pb2.ChannelRef(channel_key=key),
            direction=call_pb2.DIRECTION_INCOMING,
            phone="1",
        ),
        metadata=bearer("demo-service"),
    )
    return reply.call


async def code_of(awaitable: Awaitable[object]) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await awaitable
    return caught.value.code()


async def test_create_channel_returns_key_and_url(
    channels: channel_service_pb2_grpc.ChannelServiceStub,
    calls: call_service_pb2_grpc.CallServiceStub,
) -> None:
    reply = await channels.CreateChannel(
        ch.CreateChannelRequest(name="+7 812 111-11-11", department_id=2), metadata=ADMIN
    )
    assert len(reply.key) >= 22  # at least 128 random bits, URL-safe
    assert reply.url == f"http://vats.test/api/v2/telephony/calls/{reply.key}"
    assert reply.channel.enabled and reply.channel.department_id == 2
    call = await create_with_key(calls, reply.key)
    assert call.channel_id == reply.channel.channel_id
    assert call.ticket.department_id == 2


async def test_channel_validation(channels: channel_service_pb2_grpc.ChannelServiceStub) -> None:
    code = await code_of(channels.CreateChannel(ch.CreateChannelRequest(name=""), metadata=ADMIN))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code = await code_of(
        channels.CreateChannel(ch.CreateChannelRequest(name="x", department_id=99), metadata=ADMIN)
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT


async def test_get_list_and_update_channel(
    channels: channel_service_pb2_grpc.ChannelServiceStub,
) -> None:
    got = await channels.GetChannel(ch.GetChannelRequest(channel_id=1), metadata=ADMIN)
    assert got.channel.name == "+7 495 000-00-00"
    assert dict(got.channel.pbx_users) == {"101": 1, "102": 2, "103": 3}
    listed = await channels.ListChannels(ch.ListChannelsRequest(), metadata=ADMIN)
    assert [c.channel_id for c in listed.channels] == [1]
    updated = await channels.UpdateChannel(
        ch.UpdateChannelRequest(channel_id=1, name="Main line", department_id=2), metadata=ADMIN
    )
    assert (updated.channel.name, updated.channel.department_id) == ("Main line", 2)
    assert updated.channel.enabled
    code = await code_of(channels.GetChannel(ch.GetChannelRequest(channel_id=42), metadata=ADMIN))
    assert code == grpc.StatusCode.NOT_FOUND


async def test_disabled_channel_is_not_found(
    channels: channel_service_pb2_grpc.ChannelServiceStub,
    calls: call_service_pb2_grpc.CallServiceStub,
) -> None:
    await channels.UpdateChannel(
        ch.UpdateChannelRequest(channel_id=1, enabled=False), metadata=ADMIN
    )
    assert await code_of(create_with_key(calls, "demo-channel-key")) == grpc.StatusCode.NOT_FOUND
    await channels.UpdateChannel(
        ch.UpdateChannelRequest(channel_id=1, enabled=True), metadata=ADMIN
    )
    await create_with_key(calls, "demo-channel-key")


async def test_rotated_key_stops_the_old_one_at_once(
    channels: channel_service_pb2_grpc.ChannelServiceStub,
    calls: call_service_pb2_grpc.CallServiceStub,
) -> None:
    rotated = await channels.RotateChannelKey(
        ch.RotateChannelKeyRequest(channel_id=1), metadata=ADMIN
    )
    assert await code_of(create_with_key(calls, "demo-channel-key")) == grpc.StatusCode.NOT_FOUND
    call = await create_with_key(calls, rotated.key)
    assert call.channel_id == 1


async def test_map_and_unmap_pbx_user(
    channels: channel_service_pb2_grpc.ChannelServiceStub,
) -> None:
    mapped = await channels.MapPbxUser(
        ch.MapPbxUserRequest(channel_id=1, pbx_user_id="200", employee_id=3), metadata=ADMIN
    )
    assert mapped.channel.pbx_users["200"] == 3
    unmapped = await channels.UnmapPbxUser(
        ch.UnmapPbxUserRequest(channel_id=1, pbx_user_id="200"), metadata=ADMIN
    )
    assert "200" not in unmapped.channel.pbx_users
    code = await code_of(
        channels.MapPbxUser(
            ch.MapPbxUserRequest(channel_id=1, pbx_user_id="201", employee_id=99), metadata=ADMIN
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code = await code_of(
        channels.MapPbxUser(
            ch.MapPbxUserRequest(channel_id=1, pbx_user_id="  ", employee_id=1), metadata=ADMIN
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT


async def test_pbx_user_ids_may_be_any_sip_user_name(
    channels: channel_service_pb2_grpc.ChannelServiceStub,
) -> None:
    # SIP user names such as "john.doe" or "$ext" are PBX user ids like any other.
    for pbx_user_id in ("john.doe", "$ext", "a.b.c"):
        mapped = await channels.MapPbxUser(
            ch.MapPbxUserRequest(channel_id=1, pbx_user_id=pbx_user_id, employee_id=2),
            metadata=ADMIN,
        )
        assert mapped.channel.pbx_users[pbx_user_id] == 2
    listed = await channels.GetChannel(ch.GetChannelRequest(channel_id=1), metadata=ADMIN)
    assert {"john.doe", "$ext", "a.b.c"} <= set(listed.channel.pbx_users)


async def test_directory_upserts_and_lists(
    directory: directory_service_pb2_grpc.DirectoryServiceStub,
) -> None:
    await directory.UpsertDepartment(
        dr.UpsertDepartmentRequest(department=dr.Department(department_id=3, name="Billing")),
        metadata=ADMIN,
    )
    await directory.UpsertEmployee(
        dr.UpsertEmployeeRequest(employee=dr.Employee(employee_id=5, name="Dina", telephony=True)),
        metadata=ADMIN,
    )
    await directory.UpsertGroup(
        dr.UpsertGroupRequest(group=dr.Group(group_id=30, name="Night", member_employee_ids=[5])),
        metadata=ADMIN,
    )
    departments = await directory.ListDepartments(dr.ListDepartmentsRequest(), metadata=ADMIN)
    assert [d.name for d in departments.departments] == ["Support", "Sales", "Billing"]
    employees = await directory.ListEmployees(dr.ListEmployeesRequest(), metadata=ADMIN)
    assert employees.employees[-1] == dr.Employee(employee_id=5, name="Dina", telephony=True)
    groups = await directory.ListGroups(dr.ListGroupsRequest(), metadata=ADMIN)
    assert list(groups.groups[-1].member_employee_ids) == [5]
    # Upsert changes in place.
    await directory.UpsertEmployee(
        dr.UpsertEmployeeRequest(employee=dr.Employee(employee_id=5, name="Dina", telephony=False)),
        metadata=ADMIN,
    )
    employees = await directory.ListEmployees(dr.ListEmployeesRequest(), metadata=ADMIN)
    assert len(employees.employees) == 5 and not employees.employees[-1].telephony


async def test_group_with_unknown_member_is_refused(
    directory: directory_service_pb2_grpc.DirectoryServiceStub,
) -> None:
    code = await code_of(
        directory.UpsertGroup(
            dr.UpsertGroupRequest(group=dr.Group(group_id=31, name="X", member_employee_ids=[77])),
            metadata=ADMIN,
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT


async def test_issued_token_works_and_revoked_token_stops_at_once(
    directory: directory_service_pb2_grpc.DirectoryServiceStub,
    calls: call_service_pb2_grpc.CallServiceStub,
) -> None:
    issued = await directory.IssueToken(
        dr.IssueTokenRequest(role=dr.ROLE_SERVICE, description="crm sync"), metadata=ADMIN
    )
    assert issued.secret and issued.token.token_id
    stream = call_service_pb2.ListCallsRequest()
    await calls.ListCalls(stream, metadata=bearer(issued.secret))
    listed = await directory.ListTokens(dr.ListTokensRequest(), metadata=ADMIN)
    assert issued.token.token_id in {t.token_id for t in listed.tokens}
    assert all(issued.secret not in str(t) for t in listed.tokens)
    await directory.RevokeToken(
        dr.RevokeTokenRequest(token_id=issued.token.token_id), metadata=ADMIN
    )
    code = await code_of(calls.ListCalls(stream, metadata=bearer(issued.secret)))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    code = await code_of(
        directory.RevokeToken(dr.RevokeTokenRequest(token_id=issued.token.token_id), metadata=ADMIN)
    )
    assert code == grpc.StatusCode.NOT_FOUND


async def test_employee_token_needs_an_existing_employee(
    directory: directory_service_pb2_grpc.DirectoryServiceStub,
) -> None:
    code = await code_of(
        directory.IssueToken(
            dr.IssueTokenRequest(role=dr.ROLE_EMPLOYEE, employee_id=99), metadata=ADMIN
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code = await code_of(directory.IssueToken(dr.IssueTokenRequest(), metadata=ADMIN))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("demo-service", grpc.StatusCode.PERMISSION_DENIED),
        ("demo-anna", grpc.StatusCode.PERMISSION_DENIED),
        ("nope", grpc.StatusCode.UNAUTHENTICATED),
        (None, grpc.StatusCode.UNAUTHENTICATED),
    ],
)
async def test_admin_services_are_for_admins(
    channels: channel_service_pb2_grpc.ChannelServiceStub,
    directory: directory_service_pb2_grpc.DirectoryServiceStub,
    token: str | None,
    expected: grpc.StatusCode,
) -> None:
    metadata = bearer(token) if token else None
    assert (
        await code_of(channels.ListChannels(ch.ListChannelsRequest(), metadata=metadata))
        == expected
    )
    assert (
        await code_of(directory.ListEmployees(dr.ListEmployeesRequest(), metadata=metadata))
        == expected
    )


async def test_admin_may_use_call_service(calls: call_service_pb2_grpc.CallServiceStub) -> None:
    listed = await calls.ListCalls(call_service_pb2.ListCallsRequest(), metadata=ADMIN)
    assert list(listed.calls) == []


async def test_health_and_reflection_are_served(channel: grpc.aio.Channel) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    health = health_pb2_grpc.HealthStub(channel)
    reply = await health.Check(health_pb2.HealthCheckRequest(service="telephony.v1.CallService"))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    stream = reflection.ServerReflectionInfo()
    await stream.write(reflection_pb2.ServerReflectionRequest(list_services=""))
    answer = await stream.read()
    names = {s.name for s in answer.list_services_response.service}
    assert {
        "telephony.v1.CallService",
        "telephony.v1.ChannelService",
        "telephony.v1.DirectoryService",
        "grpc.health.v1.Health",
    } <= names
    await stream.done_writing()
