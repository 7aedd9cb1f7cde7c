"""The audit log over HTTP, against a fake core: filters and paging asked of core, the entries'
JSON, the JSON-lines export, and refusals answered before anything is sent."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import grpc
import pytest
from falcon.testing import ASGIConductor

from telephony.v1 import directory_service_pb2
from tests.gateway.edge_fakes import ADMIN_TOKEN, EdgeCore, audit_entry, edge_core
from tests.gateway.gateway_fakes import EMPLOYEE_TOKEN, Failure, FakeCore

LIST = "/api/v2/telephony/audit"
EXPORT = "/api/v2/telephony/audit/export"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
EMPLOYEE = {"Authorization": f"Bearer {EMPLOYEE_TOKEN}"}


@pytest.fixture
async def fake_core() -> AsyncIterator[FakeCore]:
    async with edge_core() as core:
        yield core


ENTRY_JSON = {
    "entry_id": 1,
    # To the millisecond, also on a whole second: as `vats audit --json-lines` writes it.
    "at": "2026-01-31T09:00:00.000Z",
    "action": "token.issued",
    "actor": {"token_id": "t-admin", "role": "admin", "employee_id": None},
    "address": "10.0.0.7",
    "target": "t-1",
    "details": {"employee_id": "1", "role": "employee"},
}


async def test_a_page_of_entries(gateway: ASGIConductor, fake_core: EdgeCore) -> None:
    fake_core.directory.entries = [audit_entry(1)]
    fake_core.directory.next_page_token = "p2"
    result = await gateway.simulate_get(LIST, headers=ADMIN)
    assert result.status_code == 200
    assert result.json == {"data": [ENTRY_JSON], "next_page_token": "p2"}
    assert result.headers["cache-control"] == "no-store"


async def test_an_actor_with_an_employee(gateway: ASGIConductor, fake_core: EdgeCore) -> None:
    entry = audit_entry(5, "callback.marked")
    entry.actor.role, entry.actor.employee_id = directory_service_pb2.ROLE_EMPLOYEE, 3
    fake_core.directory.entries = [entry]
    result = await gateway.simulate_get(LIST, headers=ADMIN)
    assert result.json["data"][0]["actor"] == {
        "token_id": "t-admin",
        "role": "employee",
        "employee_id": 3,
    }
    assert result.json["next_page_token"] is None


async def test_filters_and_paging_go_to_core(gateway: ASGIConductor, fake_core: EdgeCore) -> None:
    query = (
        "action=token.revoked&token_id=t-9&employee_id=4&since=2026-01-01"
        "&until=2026-02-01T12:00:00%2B03:00&page_size=20&page_token=p2"
    )
    result = await gateway.simulate_get(LIST, headers=ADMIN, query_string=query)
    assert result.status_code == 200
    (request,) = fake_core.directory.list_requests
    assert request.filter.action == "token.revoked"
    assert request.filter.token_id == "t-9"
    assert request.filter.employee_id == 4
    assert request.filter.since.ToJsonString() == "2026-01-01T00:00:00Z"
    assert request.filter.until.ToJsonString() == "2026-02-01T09:00:00Z"
    assert (request.page_size, request.page_token) == (20, "p2")


async def test_no_filter_asks_for_everything(gateway: ASGIConductor, fake_core: EdgeCore) -> None:
    await gateway.simulate_get(LIST, headers=ADMIN)
    (request,) = fake_core.directory.list_requests
    assert request == directory_service_pb2.ListAuditEntriesRequest(
        filter=directory_service_pb2.AuditFilter()
    )


@pytest.mark.parametrize("path", [LIST, EXPORT])
async def test_malformed_filters_are_one_422_without_asking_core(
    gateway: ASGIConductor, fake_core: EdgeCore, path: str
) -> None:
    query = "employee_id=-1&since=yesterday&until=2026-13-01&action=" + "x" * 300
    result = await gateway.simulate_get(path, headers=ADMIN, query_string=query)
    assert result.status_code == 422
    assert set(result.json["error"]["fields"]) == {"employee_id", "since", "until", "action"}
    assert fake_core.directory.metadata == []


async def test_a_bad_page_size_is_422(gateway: ASGIConductor) -> None:
    result = await gateway.simulate_get(LIST, headers=ADMIN, query_string="page_size=501")
    assert result.status_code == 422
    assert set(result.json["error"]["fields"]) == {"page_size"}


async def test_cores_refusal_of_a_filter_is_422(
    gateway: ASGIConductor, fake_core: EdgeCore
) -> None:
    fake_core.directory.failure = Failure(
        grpc.StatusCode.INVALID_ARGUMENT, "invalid_request", "bad", {"action": "unknown action"}
    )
    result = await gateway.simulate_get(LIST, headers=ADMIN, query_string="action=nope")
    assert result.status_code == 422
    assert result.json["error"]["fields"] == {"action": "unknown action"}


@pytest.mark.parametrize("path", [LIST, EXPORT])
async def test_only_admins_read_the_log(gateway: ASGIConductor, path: str) -> None:
    refused = await gateway.simulate_get(path, headers=EMPLOYEE)
    assert refused.status_code == 403
    assert refused.json["error"]["code"] == "permission_denied"
    assert refused.headers["content-type"].startswith("application/json")
    unknown = await gateway.simulate_get(path)
    assert unknown.status_code == 401


async def test_the_export_is_json_lines(gateway: ASGIConductor, fake_core: EdgeCore) -> None:
    fake_core.directory.entries = [audit_entry(n) for n in (1, 2, 3)]
    result = await gateway.simulate_get(
        EXPORT, headers=ADMIN, query_string="action=token.issued&employee_id=2"
    )
    assert result.status_code == 200
    assert result.headers["content-type"] == "application/x-ndjson"
    assert result.headers["cache-control"] == "no-store"
    assert result.text.endswith("\n")
    lines = [json.loads(line) for line in result.text.splitlines()]
    assert lines[0] == ENTRY_JSON
    assert [line["entry_id"] for line in lines] == [1, 2, 3]
    (request,) = fake_core.directory.export_requests
    assert (request.filter.action, request.filter.employee_id) == ("token.issued", 2)


async def test_an_empty_export_is_an_empty_body(
    gateway: ASGIConductor, fake_core: EdgeCore
) -> None:
    result = await gateway.simulate_get(EXPORT, headers=ADMIN)
    assert result.status_code == 200
    assert result.text == ""
