"""Missed-call callbacks over HTTP, against a fake core: the query string into
ListCallbacks, the caller's token passed through, the JSON, and every refusal as a 4xx."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from falcon.testing import ASGIConductor

from gateway.callbacks import callback_json
from telephony.v1.call_service_pb2 import Callback, ListCallbacksRequest, MarkCalledBackRequest
from tests.gateway.gateway_fakes import EMPLOYEE_TOKEN, FakeCore
from tests.gateway.workspace_fakes import (
    CALLBACK_ID,
    SUPERVISOR_TOKEN,
    WorkspaceCallService,
    calls_of,
    resolved_callback,
    sample_callback,
)

URL = "/api/v2/telephony/callbacks"
ANNA = {"Authorization": f"Bearer {EMPLOYEE_TOKEN}"}
SUPERVISOR = {"Authorization": f"Bearer {SUPERVISOR_TOKEN}"}

OPEN_JSON = {
    "callback_id": CALLBACK_ID,
    "channel_id": 1,
    "channel_name": "+7 495 000-00-00",
    "phone": "74951234567",
    "phone_display": "+7 495 123-45-67",
    "contact_name": "Ivan",
    "attempts": 2,
    "first_missed_at": "2026-01-31T06:00:00Z",
    "last_missed_at": "2026-01-31T06:05:00Z",
    "last_call_id": 731,
    "last_status": "busy",
    "state": "open",
    "resolved_at": None,
    "resolution": None,
    "resolved_by_employee_id": None,
    "resolved_by_name": None,
    "resolved_by_call_id": None,
}


@pytest.fixture
async def fake_core() -> AsyncIterator[FakeCore]:
    async with FakeCore(WorkspaceCallService()) as core:
        yield core


def last_list_request(fake_core: FakeCore) -> ListCallbacksRequest:
    request = fake_core.calls.received[-1]
    assert isinstance(request, ListCallbacksRequest)
    return request


def test_open_callback_json_has_nulls_for_its_resolution() -> None:
    assert callback_json(sample_callback()) == OPEN_JSON


def test_resolved_callback_json_names_how_when_and_who() -> None:
    assert callback_json(resolved_callback()) == {
        **OPEN_JSON,
        "state": "resolved",
        "resolved_at": "2026-01-31T07:00:00Z",
        "resolution": "called-back",
        "resolved_by_employee_id": 1,
        "resolved_by_name": "Anna Petrova",
    }
    answered = resolved_callback()
    answered.resolution = Callback.RESOLUTION_ANSWERED
    answered.resolved_by_call_id = 740
    data = callback_json(answered)
    assert (data["resolution"], data["resolved_by_call_id"]) == ("answered", 740)


async def test_list_is_a_page_with_the_open_count(
    gateway: ASGIConductor, fake_core: FakeCore
) -> None:
    calls_of(fake_core).callbacks_reply.next_page_token = "page-2"
    result = await gateway.simulate_get(URL, headers=ANNA)
    assert result.status_code == 200, result.text
    assert result.json == {"data": [OPEN_JSON], "next_page_token": "page-2", "open_count": 3}


async def test_list_asks_for_open_callbacks_unless_told_otherwise(
    gateway: ASGIConductor, fake_core: FakeCore
) -> None:
    expected = {
        None: [Callback.STATE_OPEN],
        "open": [Callback.STATE_OPEN],
        "resolved": [Callback.STATE_RESOLVED],
        "all": [Callback.STATE_OPEN, Callback.STATE_RESOLVED],
    }
    for state, states in expected.items():
        params = {"state": state} if state else {}
        result = await gateway.simulate_get(URL, headers=ANNA, params=params)
        assert result.status_code == 200, result.text
        assert list(last_list_request(fake_core).states) == states, state


async def test_list_passes_channel_and_paging_on(
    gateway: ASGIConductor, fake_core: FakeCore
) -> None:
    params = {"channel_id": "7", "page_size": "20", "page_token": "abc"}
    result = await gateway.simulate_get(URL, headers=ANNA, params=params)
    assert result.status_code == 200, result.text
    request = last_list_request(fake_core)
    assert (request.channel_id, request.page_size, request.page_token) == (7, 20, "abc")
    # No next page: null, not an empty string.
    assert result.json["next_page_token"] is None


async def test_the_callers_token_goes_to_core_as_it_came(
    gateway: ASGIConductor, fake_core: FakeCore
) -> None:
    await gateway.simulate_get(URL, headers={**ANNA, "X-Request-ID": "req-7"})
    await gateway.simulate_get(URL, params={"access_token": SUPERVISOR_TOKEN})
    first, second = fake_core.calls.metadata[-2:]
    assert (first["authorization"], first["x-request-id"]) == (f"Bearer {EMPLOYEE_TOKEN}", "req-7")
    assert second["authorization"] == f"Bearer {SUPERVISOR_TOKEN}"


async def test_bad_parameters_are_named_in_one_422_without_asking_core(
    gateway: ASGIConductor, fake_core: FakeCore
) -> None:
    params = {"state": "closed", "channel_id": "-1", "page_size": "0", "page_token": "x" * 2000}
    result = await gateway.simulate_get(URL, headers=ANNA, params=params)
    assert result.status_code == 422
    error = result.json["error"]
    assert error["code"] == "invalid_request"
    assert set(error["fields"]) == {"state", "channel_id", "page_size", "page_token"}
    assert "open, resolved, all" in error["fields"]["state"]
    assert fake_core.calls.received == []


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"Authorization": "Bearer wrong"}, 401), ({"Authorization": "Token x"}, 401)],
    ids=["no-token", "unknown-token", "not-bearer"],
)
async def test_list_without_a_good_token_is_401(
    gateway: ASGIConductor, headers: dict[str, str], status: int
) -> None:
    result = await gateway.simulate_get(URL, headers=headers)
    assert result.status_code == status
    assert result.json["error"]["code"] == "unauthenticated"


async def test_mark_resolves_the_callback_as_the_caller(
    gateway: ASGIConductor, fake_core: FakeCore
) -> None:
    result = await gateway.simulate_post(f"{URL}/{CALLBACK_ID}/called-back", headers=ANNA)
    assert result.status_code == 200, result.text
    assert result.json == {"data": callback_json(resolved_callback())}
    request = fake_core.calls.received[-1]
    assert isinstance(request, MarkCalledBackRequest)
    # Core marks as the token's employee: the gateway names no one.
    assert (request.callback_id, request.employee_id) == (CALLBACK_ID, 0)
    assert fake_core.calls.metadata[-1]["authorization"] == f"Bearer {EMPLOYEE_TOKEN}"


async def test_marking_an_unknown_callback_is_404(gateway: ASGIConductor) -> None:
    result = await gateway.simulate_post(f"{URL}/999/called-back", headers=ANNA)
    assert result.status_code == 404
    assert result.json["error"] == {"code": "not_found", "message": "no such callback"}


@pytest.mark.parametrize("callback_id", ["abc", "0", "-3", "1" * 30])
async def test_a_callback_id_that_is_no_id_is_404_without_asking_core(
    gateway: ASGIConductor, fake_core: FakeCore, callback_id: str
) -> None:
    result = await gateway.simulate_post(f"{URL}/{callback_id}/called-back", headers=ANNA)
    assert result.status_code == 404
    assert result.json["error"]["code"] == "not_found"
    assert fake_core.calls.received == []


async def test_marking_needs_a_token(gateway: ASGIConductor) -> None:
    result = await gateway.simulate_post(f"{URL}/{CALLBACK_ID}/called-back")
    assert result.status_code == 401


async def test_only_post_marks(gateway: ASGIConductor) -> None:
    result = await gateway.simulate_get(f"{URL}/{CALLBACK_ID}/called-back", headers=ANNA)
    assert result.status_code == 405
