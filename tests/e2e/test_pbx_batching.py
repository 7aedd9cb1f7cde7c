"""Concurrent PBX requests through the real gateway and core: they reach core in batches
(SubmitCalls), and every request still gets its own answer.

Core's storage is slowed (VATS_TEST_STORAGE_DELAY_MS) so that requests are sure to queue
at the gateway while its batches are with core: batching then does not hang on how fast
this machine sends the requests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest

from telephony.v1 import call_pb2, call_service_pb2, call_service_pb2_grpc
from tests.conftest import LiveStack, bearer, running_stack
from tests.ops.ops_support import Samples, scrape, value

pytestmark = pytest.mark.e2e

VALID = 40
INVALID = 8
BATCHES = "vats_gateway_call_batch_commands"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    env = {
        "VATS_RATE_LIMIT": "0",
        "VATS_TEST_STORAGE_DELAY_MS": "300",
        "VATS_CORE_TIMEOUT": "30",
    }
    with running_stack(tmp_path_factory.mktemp("batching"), env) as stack:
        yield stack


def body(pbx_call_id: str, phone: str) -> dict[str, Any]:
    return {
        "action": "create_call",
        "direction": "incoming",
        "phone": phone,
        "pbx_call_id": pbx_call_id,
    }


async def post_all(stack: LiveStack, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    """Every body posted at once, each on a connection of its own."""
    limits = httpx.Limits(max_connections=len(bodies))
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        return await asyncio.gather(*(client.post(stack.calls_url, json=b) for b in bodies))


def batch_metrics(stack: LiveStack) -> tuple[float, float]:
    """Batches sent to core so far, and the commands they carried."""
    samples: Samples = scrape(f"{stack.http_url}/metrics")
    return value(samples, f"{BATCHES}_count"), value(samples, f"{BATCHES}_sum")


def listed_calls(stack: LiveStack) -> list[call_pb2.Call]:
    with grpc.insecure_channel(stack.grpc_target) as channel:
        reply = call_service_pb2_grpc.CallServiceStub(channel).ListCalls(
            call_service_pb2.ListCallsRequest(page_size=500),
            metadata=bearer(stack.admin_token),
            timeout=10,
        )
    assert not reply.next_page_token
    return list(reply.calls)


async def test_concurrent_pbx_requests_go_in_batches_and_each_gets_its_own_answer(
    stack: LiveStack,
) -> None:
    valid = [body(f"batched-{i}", f"+7495000{i:04d}") for i in range(VALID)]
    invalid = [body(f"refused-{i}", "no digits here") for i in range(INVALID)]
    # The refused requests are spread among the others: they share batches with them.
    bodies = [*valid]
    for i, refused in enumerate(invalid):
        bodies.insert(i * (VALID // INVALID) + i, refused)
    batches_before, commands_before = batch_metrics(stack)

    responses = await post_all(stack, bodies)

    call_ids = set()
    for sent, response in zip(bodies, responses, strict=True):
        if sent["phone"] == "no digits here":
            assert response.status_code == 422, response.text
            assert set(response.json()["error"]["fields"]) == {"phone"}, response.text
            continue
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        assert data["pbx_call_id"] == sent["pbx_call_id"]
        call_ids.add(data["call_id"])
    assert len(call_ids) == VALID

    batches_after, commands_after = batch_metrics(stack)
    batches, commands = batches_after - batches_before, commands_after - commands_before
    # Every request went to core as a command of some batch, and fewer batches than
    # requests were sent: at least one carried several.
    assert commands == len(bodies)
    assert 1 <= batches < len(bodies)

    stored = listed_calls(stack)
    assert {c.call_id for c in stored} == call_ids
    by_id = {c.call_id: c for c in stored}
    pbx_ids = {by_id[i].pbx_call_id for i in call_ids}
    assert pbx_ids == {b["pbx_call_id"] for b in valid}
    for call in stored:
        index = int(call.pbx_call_id.removeprefix("batched-"))
        assert call.phone == f"+7495000{index:04d}"
