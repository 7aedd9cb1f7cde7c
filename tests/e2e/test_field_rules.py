"""Core's field rules hold at both entrances, the PBX endpoint and gRPC; and phones that are no
real numbers are kept as sent, not made up into E.164 ones."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from telephony.v1 import call_pb2, call_service_pb2, call_service_pb2_grpc, directory_service_pb2
from telephony.v1 import directory_service_pb2_grpc as directory_grpc
from tests.conftest import LiveStack, bearer, running_stack

pytestmark = pytest.mark.e2e

CHANNEL = call_service_pb2.ChannelRef(channel_key=LiveStack.channel_key)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    with running_stack(tmp_path_factory.mktemp("field-rules")) as stack:
        yield stack


@pytest.fixture(scope="module")
def grpc_channel(stack: LiveStack) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(stack.grpc_target) as channel:
        yield channel


def calls_stub(channel: grpc.Channel) -> call_service_pb2_grpc.CallServiceStub:
    return call_service_pb2_grpc.CallServiceStub(channel)


def call_count(channel: grpc.Channel, stack: LiveStack) -> int:
    reply = calls_stub(channel).ListCalls(
        call_service_pb2.ListCallsRequest(page_size=500), metadata=bearer(stack.admin_token)
    )
    return len(reply.calls)


def violated_fields(error: grpc.RpcError) -> set[str]:
    status = rpc_status.from_call(error)
    assert status is not None
    fields: set[str] = set()
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            fields.update(v.field for v in bad_request.field_violations)
    return fields


CREATE_NUL = [
    ("phone", {"phone": "+7495\x001234567"}),
    ("comment", {"comment": "a\x00b"}),
    ("pbx_call_id", {"pbx_call_id": "x\x00"}),
    ("pbx_user_ids", {"pbx_user_ids": ["101\x00"]}),
]


@pytest.mark.parametrize(("field", "given"), CREATE_NUL, ids=[c[0] for c in CREATE_NUL])
def test_nul_characters_in_create_call_are_refused_at_both_entrances(
    stack: LiveStack, grpc_channel: grpc.Channel, field: str, given: dict[str, Any]
) -> None:
    before = call_count(grpc_channel, stack)
    body = {"action": "create_call", "direction": "incoming", "phone": "+74951234567", **given}
    response = httpx.post(stack.calls_url, json=body, timeout=30)
    assert response.status_code == 422, response.text
    assert set(response.json()["error"]["fields"]) == {field}

    request = call_service_pb2.CreateCallRequest(
        channel=CHANNEL, direction=call_pb2.DIRECTION_INCOMING, phone="+74951234567"
    )
    for name, value in given.items():
        if isinstance(value, list):
            getattr(request, name).extend(value)
        else:
            setattr(request, name, value)
    with pytest.raises(grpc.RpcError) as caught:
        calls_stub(grpc_channel).CreateCall(request, metadata=bearer(stack.service_token))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violated_fields(caught.value) == {field}
    assert call_count(grpc_channel, stack) == before


UPDATE_NUL = [
    ("comment", {"comment": "a\x00b"}),
    ("pbx_call_id", {"pbx_call_id": "rules-1\x00"}),
    ("pbx_user_id", {"pbx_user_id": "\x00101"}),
]


@pytest.mark.parametrize(("field", "given"), UPDATE_NUL, ids=[c[0] for c in UPDATE_NUL])
def test_nul_characters_in_update_call_are_refused_at_both_entrances(
    stack: LiveStack, grpc_channel: grpc.Channel, field: str, given: dict[str, Any]
) -> None:
    created = httpx.post(
        stack.calls_url,
        json={"action": "create_call", "direction": "incoming", "phone": "+74951234567"},
        timeout=30,
    )
    call_id = created.json()["data"]["call_id"]
    reference: dict[str, Any] = {} if "pbx_call_id" in given else {"call_id": call_id}
    body = {"action": "update_call", "call_status": "answered", **reference, **given}
    response = httpx.post(stack.calls_url, json=body, timeout=30)
    assert response.status_code == 422, response.text
    assert set(response.json()["error"]["fields"]) == {field}

    request = call_service_pb2.UpdateCallRequest(
        channel=CHANNEL, state=call_pb2.Call.STATE_ANSWERED, **reference, **given
    )
    with pytest.raises(grpc.RpcError) as caught:
        calls_stub(grpc_channel).UpdateCall(request, metadata=bearer(stack.service_token))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violated_fields(caught.value) == {field}
    got = calls_stub(grpc_channel).GetCall(
        call_service_pb2.GetCallRequest(call_id=call_id), metadata=bearer(stack.admin_token)
    )
    assert got.call.state == call_pb2.Call.STATE_RINGING


def details(stack: LiveStack, call_id: int) -> dict[str, Any]:
    response = httpx.get(
        f"{stack.http_url}/api/v2/telephony/history/{call_id}",
        headers={"Authorization": f"Bearer {stack.admin_token}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return dict(response.json()["data"])


def create(stack: LiveStack, phone: str) -> int:
    response = httpx.post(
        stack.calls_url,
        json={"action": "create_call", "direction": "incoming", "phone": phone},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return int(response.json()["data"]["call_id"])


def contacts(stack: LiveStack, grpc_channel: grpc.Channel) -> dict[int, str]:
    reply = directory_grpc.DirectoryServiceStub(grpc_channel).ListContacts(
        directory_service_pb2.ListContactsRequest(page_size=500),
        metadata=bearer(stack.admin_token),
    )
    return {c.contact_id: c.phone for c in reply.contacts}


def test_a_short_number_is_one_contact_kept_as_sent(
    stack: LiveStack, grpc_channel: grpc.Channel
) -> None:
    first, second = (
        details(stack, create(stack, "1234567")),
        details(stack, create(stack, "123-45-67")),
    )
    assert first["phone_e164"] is None and second["phone_e164"] is None
    contact_id = first["contact"]["contact_id"]
    assert contact_id is not None and second["contact"]["contact_id"] == contact_id
    assert first["contact"]["phone_e164"] is None
    assert contacts(stack, grpc_channel)[contact_id] == "1234567"
    assert "+71234567" not in contacts(stack, grpc_channel).values()


def test_a_real_moscow_number_still_normalizes(
    stack: LiveStack, grpc_channel: grpc.Channel
) -> None:
    first, second = (
        details(stack, create(stack, "8 (495) 765-43-21")),
        details(stack, create(stack, "+7 495 765 43 21")),
    )
    assert first["phone_e164"] == second["phone_e164"] == "+74957654321"
    contact_id = first["contact"]["contact_id"]
    assert second["contact"]["contact_id"] == contact_id
    assert contacts(stack, grpc_channel)[contact_id] == "+74957654321"
