"""Stream tickets at the gateway, against a fake core: asking for one, opening a stream with
one, who a stream is for, expired tokens, the client's address, and secrets kept out of logs.

The ticket rules themselves (one use, 60 s, scope, revocation) are core's: see
tests/e2e/test_web_edge_e2e.py for them through the real processes."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

import grpc
import pytest
from falcon.testing import ASGIConductor
from falcon.testing.client import StreamedResult

import gateway.logs
from telephony.v1 import call_service_pb2
from tests.gateway.edge_fakes import (
    ADMIN_TOKEN,
    GOOD_TICKET,
    TICKET_EXPIRES,
    EdgeCore,
    edge_core,
)
from tests.gateway.gateway_fakes import EMPLOYEE_TOKEN, Failure, FakeCore, sample_card

TICKETS = "/api/v2/telephony/stream-tickets"
CARDS = "/api/v2/telephony/cards/stream"
TOKEN = {"Authorization": f"Bearer {EMPLOYEE_TOKEN}"}
Event = call_service_pb2.CallCardEvent


@pytest.fixture
async def fake_core() -> AsyncIterator[FakeCore]:
    async with edge_core() as core:
        yield core


async def read_until(result: StreamedResult, marker: str) -> str:
    text = ""
    async with asyncio.timeout(3):
        while marker not in text:
            text += (await result.stream.read()).decode()
            await asyncio.sleep(0.01)
    return text


# Asking for a ticket.


async def test_a_bearer_token_gets_a_ticket(gateway: ASGIConductor, fake_core: EdgeCore) -> None:
    result = await gateway.simulate_post(TICKETS, headers=TOKEN)
    assert result.status_code == 201
    assert result.json == {"ticket": GOOD_TICKET, "expires_at": TICKET_EXPIRES}
    assert fake_core.directory.metadata[-1]["authorization"] == f"Bearer {EMPLOYEE_TOKEN}"


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        ({}, f"access_token={EMPLOYEE_TOKEN}"),
        ({"Authorization": f"Ticket {GOOD_TICKET}"}, ""),
        ({"Authorization": f"Basic {EMPLOYEE_TOKEN}"}, f"access_token={EMPLOYEE_TOKEN}"),
        ({}, ""),
    ],
    ids=["token-in-url", "ticket-for-ticket", "other-scheme", "nothing"],
)
async def test_a_ticket_is_only_for_a_token_in_the_header(
    gateway: ASGIConductor, fake_core: EdgeCore, headers: dict[str, str], query: str
) -> None:
    result = await gateway.simulate_post(TICKETS, headers=headers, query_string=query)
    assert result.status_code == 401
    assert result.json["error"]["code"] == "unauthenticated"
    assert "Authorization: Bearer" in result.json["error"]["message"]
    assert fake_core.directory.metadata == []


async def test_an_unknown_token_gets_no_ticket(gateway: ASGIConductor) -> None:
    result = await gateway.simulate_post(TICKETS, headers={"Authorization": "Bearer nobody"})
    assert result.status_code == 401


async def test_an_expired_token_is_401_token_expired(
    gateway: ASGIConductor, fake_core: EdgeCore
) -> None:
    said = "the token expired at 2026-01-01T00:00:00.000Z; ask for a new one"
    fake_core.directory.failure = Failure(grpc.StatusCode.UNAUTHENTICATED, "token_expired", said)
    result = await gateway.simulate_post(TICKETS, headers=TOKEN)
    assert result.status_code == 401
    assert result.json == {"error": {"code": "token_expired", "message": said}}


# Opening a stream with one.


async def test_a_stream_opens_with_a_ticket(gateway: ASGIConductor, fake_core: EdgeCore) -> None:
    await fake_core.calls.card_events.put(Event(seq=1, type=Event.TYPE_SHOW, card=sample_card()))
    async with gateway.simulate_get_stream(CARDS, params={"ticket": GOOD_TICKET}) as result:
        assert result.status_code == 200
        await read_until(result, "event: show\nid: 1\n")
    assert fake_core.calls.metadata[-1]["authorization"] == f"Ticket {GOOD_TICKET}"
    await asyncio.wait_for(fake_core.calls.watch_ended.wait(), 3)


async def test_a_refused_ticket_is_401_ticket_invalid(gateway: ASGIConductor) -> None:
    result = await gateway.simulate_get(CARDS, params={"ticket": "spent"})
    assert result.status_code == 401
    assert result.json["error"]["code"] == "ticket_invalid"


async def test_the_header_decides_over_a_ticket(
    gateway: ASGIConductor, fake_core: EdgeCore
) -> None:
    async with gateway.simulate_get_stream(
        CARDS, headers=TOKEN, params={"ticket": "ignored", "access_token": "ignored-too"}
    ) as result:
        assert result.status_code == 200
    assert fake_core.calls.metadata[-1]["authorization"] == f"Bearer {EMPLOYEE_TOKEN}"


async def test_a_ticket_decides_over_a_token_in_the_url(
    gateway: ASGIConductor, fake_core: EdgeCore
) -> None:
    query = f"ticket={GOOD_TICKET}&access_token=nobody"
    async with gateway.simulate_get_stream(CARDS, query_string=query) as result:
        assert result.status_code == 200
    assert fake_core.calls.metadata[-1]["authorization"] == f"Ticket {GOOD_TICKET}"


async def test_the_discouraged_access_token_still_opens_a_stream(
    gateway: ASGIConductor, fake_core: EdgeCore
) -> None:
    async with gateway.simulate_get_stream(CARDS, params={"access_token": EMPLOYEE_TOKEN}) as r:
        assert r.status_code == 200
    assert fake_core.calls.metadata[-1]["authorization"] == f"Bearer {EMPLOYEE_TOKEN}"


@pytest.mark.parametrize("path", ["/api/v2/telephony/history", "/api/v2/telephony/records/rec-1"])
async def test_a_ticket_opens_streams_only(
    gateway: ASGIConductor, fake_core: EdgeCore, path: str
) -> None:
    result = await gateway.simulate_get(path, params={"ticket": GOOD_TICKET})
    assert result.status_code == 401
    # Not even passed on: core would refuse it, but it is no credential here at all.
    assert all("Ticket" not in m.get("authorization", "") for m in fake_core.calls.metadata)


@pytest.mark.parametrize("ticket", ["x" * 5000, "tïcket", "a\tb"])
async def test_a_malformed_ticket_is_401_without_asking_core(
    gateway: ASGIConductor, fake_core: EdgeCore, ticket: str
) -> None:
    result = await gateway.simulate_get(CARDS, params={"ticket": ticket})
    assert result.status_code == 401
    assert fake_core.calls.watch_requests == []


# The client's address, for core's audit log.


async def test_core_is_told_the_clients_address(
    gateway: ASGIConductor, fake_core: EdgeCore
) -> None:
    await gateway.simulate_post(TICKETS, headers=TOKEN, remote_addr="203.0.113.9")
    await gateway.simulate_get(
        "/api/v2/telephony/history", headers=TOKEN, remote_addr="198.51.100.4"
    )
    await gateway.simulate_get(
        "/api/v2/telephony/records/rec-1",
        query_string="expires=1900000000&signature=good",
        remote_addr="192.0.2.77",
    )
    assert fake_core.directory.metadata[-1]["x-client-address"] == "203.0.113.9"
    addresses = [m.get("x-client-address") for m in fake_core.calls.metadata]
    # The history as the caller; a signed link with the gateway's own token: both for a client.
    assert addresses == ["198.51.100.4", "192.0.2.77"]


# Secrets in URLs are never logged.


async def test_tokens_and_tickets_in_urls_stay_out_of_the_logs(
    gateway: ASGIConductor, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    query = f"ticket=ticket-secret-1&access_token={ADMIN_TOKEN}&employee_id=x"
    await gateway.simulate_get(CARDS, query_string=query)
    await gateway.simulate_get("/api/v2/telephony/history", query_string=query)
    # Requests are logged by route template: the secrets are not even in the records...
    said = [f"{r.getMessage()} {getattr(r, 'fields', '')}" for r in caplog.records]
    assert any("'route': '/api/v2/telephony/cards/stream'" in text for text in said)
    assert not [text for text in said if "ticket-secret-1" in text or ADMIN_TOKEN in text]
    # ...and the lines written are scrubbed of them anyway (see the next test).
    formatter = gateway_formatter()
    lines = [formatter.format(record) for record in caplog.records]
    assert not [line for line in lines if "ticket-secret-1" in line or ADMIN_TOKEN in line]


def gateway_formatter() -> logging.Formatter:
    return gateway.logs.JsonFormatter()


@pytest.mark.parametrize(
    "message",
    [
        "GET /api/v2/telephony/cards/stream?ticket=ticket-secret-1&last_event_id=4",
        "GET /api/v2/telephony/board/stream?access_token=ticket-secret-1",
        "opened with TICKET=ticket-secret-1",
    ],
)
def test_the_gateways_log_lines_scrub_tickets(message: str) -> None:
    record = logging.LogRecord("gateway", logging.WARNING, __file__, 1, message, None, None)
    line = gateway_formatter().format(record)
    assert "ticket-secret-1" not in line
    assert "[redacted]" in json.loads(line)["message"]
