"""Card streams end when their client hangs up and when the gateway stops, whatever
the keepalive period: against a fake core, the app driven in-process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from falcon.testing import ASGIConductor

from gateway.app import GatewayApp
from telephony.v1 import call_service_pb2
from tests.gateway.gateway_fakes import EMPLOYEE_TOKEN, FakeCore, sample_card

URL = "/api/v2/telephony/cards/stream"
TOKEN = {"Authorization": f"Bearer {EMPLOYEE_TOKEN}"}
Event = call_service_pb2.CallCardEvent


@pytest.fixture
async def quiet_gateway(quiet_app: GatewayApp) -> AsyncIterator[ASGIConductor]:
    async with ASGIConductor(quiet_app) as conductor:
        yield conductor


async def test_stream_ends_with_its_client(
    quiet_gateway: ASGIConductor, fake_core: FakeCore
) -> None:
    async with asyncio.timeout(10):
        async with quiet_gateway.simulate_get_stream(URL, headers=TOKEN) as result:
            assert result.status_code == 200
        # Leaving the block hangs up; core's stream is cancelled with it.
        await fake_core.calls.watch_ended.wait()


async def test_end_streams_finishes_every_open_response(
    quiet_app: GatewayApp, quiet_gateway: ASGIConductor, fake_core: FakeCore
) -> None:
    await fake_core.calls.card_events.put(Event(seq=1, type=Event.TYPE_SHOW, card=sample_card()))
    responses = [asyncio.create_task(quiet_gateway.simulate_get(URL, headers=TOKEN))]
    responses.append(asyncio.create_task(quiet_gateway.simulate_get(URL, headers=TOKEN)))
    async with asyncio.timeout(10):
        while len(fake_core.calls.watch_requests) < 2:  # noqa: ASYNC110 (the fake sets no event)
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        quiet_app.end_streams()
        results = await asyncio.gather(*responses)
    assert [r.status_code for r in results] == [200, 200]
    assert "event: show\nid: 1\n" in results[0].text + results[1].text


async def test_stream_opened_while_stopping_ends_at_once(
    quiet_app: GatewayApp, quiet_gateway: ASGIConductor
) -> None:
    quiet_app.end_streams()
    async with asyncio.timeout(10):
        result = await quiet_gateway.simulate_get(URL, headers=TOKEN)
    assert result.status_code == 200
