"""The web edge end to end, with real core and gateway processes: no software banner,
security headers, stream tickets (one use, the token's scope, ended by revocation),
expired tokens, tokens and tickets kept out of the logs, and the audit log over HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import grpc
import httpx
import pytest

from telephony.v1 import directory_service_pb2 as dr
from telephony.v1 import directory_service_pb2_grpc
from tests.conftest import LiveStack, bearer
from tests.e2e.sse import SSEReader

pytestmark = pytest.mark.e2e

TICKETS = "/api/v2/telephony/stream-tickets"
CARDS = "/api/v2/telephony/cards/stream"
BOARD = "/api/v2/telephony/board/stream"
HISTORY = "/api/v2/telephony/history"
AUDIT = "/api/v2/telephony/audit"
EXPORT = "/api/v2/telephony/audit/export"
ANNA = 1


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def directory(live_stack: LiveStack) -> Iterator[directory_service_pb2_grpc.DirectoryServiceStub]:
    with grpc.insecure_channel(live_stack.grpc_target) as channel:
        yield directory_service_pb2_grpc.DirectoryServiceStub(channel)


def issue_token(
    directory: directory_service_pb2_grpc.DirectoryServiceStub,
    ttl: timedelta | None = None,
) -> dr.IssueTokenResponse:
    """A new token of Anna's, issued by the admin over gRPC."""
    request = dr.IssueTokenRequest(role=dr.ROLE_EMPLOYEE, employee_id=ANNA, description="e2e")
    if ttl is not None:
        request.ttl.FromTimedelta(ttl)
    reply: dr.IssueTokenResponse = directory.IssueToken(
        request, metadata=bearer(LiveStack.admin_token), timeout=10
    )
    return reply


def ticket_for(stack: LiveStack, token: str) -> str:
    response = httpx.post(stack.http_url + TICKETS, headers=auth(token), timeout=10)
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"ticket", "expires_at"}
    ticket: str = body["ticket"]
    return ticket


def post_call(stack: LiveStack, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(stack.calls_url, json=body, timeout=10)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


# Headers.


@pytest.mark.parametrize("path", ["/livez", "/agent", HISTORY, "/nowhere", "/static/agent.js"])
def test_no_answer_names_the_software(live_stack: LiveStack, path: str) -> None:
    response = httpx.get(live_stack.http_url + path, timeout=10)
    assert "server" not in response.headers
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


def test_the_agent_page_gets_the_strict_policy(live_stack: LiveStack) -> None:
    response = httpx.get(live_stack.http_url + "/agent", timeout=10)
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "style-src 'self'" in policy
    assert "unsafe-inline" not in policy


# Stream tickets.


def test_a_ticket_opens_one_stream_once(live_stack: LiveStack) -> None:
    ticket = ticket_for(live_stack, "demo-anna")
    url = f"{live_stack.http_url}{CARDS}?ticket={ticket}"
    reader = SSEReader(url)
    try:
        assert reader.status == 200, getattr(reader, "body", "")
        created = post_call(
            live_stack,
            {
                "action": "create_call",
                "direction": "incoming",
                "phone": "+74951110001",
                "user_ids": [ANNA],
            },
        )
        # Anna's cards: the ticket carries her token's identity.
        while (event := reader.next()).json.get("call_id") != created["call_id"]:
            pass
        assert event.event == "show"
    finally:
        reader.close()
    again = httpx.get(url, timeout=10)
    assert again.status_code == 401
    assert again.json()["error"]["code"] == "ticket_invalid"


def test_a_ticket_keeps_its_tokens_scope(live_stack: LiveStack) -> None:
    # An employee's ticket opens neither another employee's cards nor the board.
    other = httpx.get(
        f"{live_stack.http_url}{CARDS}",
        params={"ticket": ticket_for(live_stack, "demo-anna"), "employee_id": "2"},
        timeout=10,
    )
    assert other.status_code == 403, other.text
    board = httpx.get(
        f"{live_stack.http_url}{BOARD}",
        params={"ticket": ticket_for(live_stack, "demo-anna")},
        timeout=10,
    )
    assert board.status_code == 403, board.text
    # A supervisor's ticket opens the board.
    supervisor = SSEReader(
        f"{live_stack.http_url}{BOARD}?ticket={ticket_for(live_stack, 'demo-supervisor')}"
    )
    try:
        assert supervisor.status == 200, getattr(supervisor, "body", "")
        assert supervisor.next().event == "board"
    finally:
        supervisor.close()


@pytest.mark.parametrize("path", [HISTORY, AUDIT, TICKETS])
def test_a_ticket_opens_nothing_but_a_stream(live_stack: LiveStack, path: str) -> None:
    ticket = ticket_for(live_stack, "demo-admin")
    method = "POST" if path == TICKETS else "GET"
    response = httpx.request(
        method, live_stack.http_url + path, params={"ticket": ticket}, timeout=10
    )
    assert response.status_code == 401
    # Not spent there: it still opens a stream.
    with httpx.stream("GET", live_stack.http_url + BOARD, params={"ticket": ticket}) as stream:
        assert stream.status_code == 200


def test_revoking_the_token_ends_the_stream_its_ticket_opened(
    live_stack: LiveStack, directory: directory_service_pb2_grpc.DirectoryServiceStub
) -> None:
    issued = issue_token(directory)
    ticket = ticket_for(live_stack, issued.secret)
    url = f"{live_stack.http_url}{CARDS}?ticket={ticket}"
    with (
        httpx.Client(timeout=httpx.Timeout(10, read=20)) as client,
        client.stream("GET", url) as response,
    ):
        assert response.status_code == 200
        directory.RevokeToken(
            dr.RevokeTokenRequest(token_id=issued.token.token_id),
            metadata=bearer(LiveStack.admin_token),
            timeout=10,
        )
        # Keepalives come every second while the stream lives; it must end by itself.
        deadline = time.monotonic() + 15
        for _ in response.iter_lines():
            assert time.monotonic() < deadline, "the stream outlived its token"


# Expiring tokens.


def test_an_expired_token_is_refused_with_401_token_expired(
    live_stack: LiveStack, directory: directory_service_pb2_grpc.DirectoryServiceStub
) -> None:
    issued = issue_token(directory, ttl=timedelta(seconds=1))
    assert issued.token.HasField("expire_time")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        history = httpx.get(live_stack.http_url + HISTORY, headers=auth(issued.secret), timeout=10)
        if history.status_code != 200:
            break
        time.sleep(0.2)
    assert history.status_code == 401
    assert history.json()["error"]["code"] == "token_expired"
    assert "expired" in history.json()["error"]["message"]
    ticket = httpx.post(live_stack.http_url + TICKETS, headers=auth(issued.secret), timeout=10)
    assert (ticket.status_code, ticket.json()["error"]["code"]) == (401, "token_expired")


# Secrets in URLs.


def test_tokens_and_tickets_in_urls_never_reach_the_logs(
    live_stack: LiveStack, directory: directory_service_pb2_grpc.DirectoryServiceStub
) -> None:
    secret = issue_token(directory).secret
    ticket = ticket_for(live_stack, secret)
    base = live_stack.http_url
    assert httpx.get(f"{base}{HISTORY}?access_token={secret}", timeout=10).status_code == 200
    for query in (f"access_token={secret}", f"ticket={ticket}"):
        reader = SSEReader(f"{base}{CARDS}?{query}")
        assert reader.status == 200
        reader.close()
    # Refused ones are not logged either.
    httpx.get(f"{base}{CARDS}?ticket={ticket}&last_event_id=x", timeout=10)
    httpx.get(f"{base}{HISTORY}?access_token={secret}x&page_size=0", timeout=10)
    logs = live_stack.log("gateway") + live_stack.log("core")
    assert '"route": "/api/v2/telephony/cards/stream"' in logs
    assert secret not in logs
    assert ticket not in logs


# The audit log.


@pytest.mark.parametrize("token", ["demo-anna", "demo-supervisor", "demo-service"])
@pytest.mark.parametrize("path", [AUDIT, EXPORT])
def test_only_admins_read_the_audit_log(live_stack: LiveStack, token: str, path: str) -> None:
    response = httpx.get(live_stack.http_url + path, headers=auth(token), timeout=10)
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "permission_denied"


def test_the_audit_log_names_who_read_what_from_where(live_stack: LiveStack) -> None:
    listed = httpx.get(live_stack.http_url + HISTORY, headers=auth("demo-admin"), timeout=10)
    assert listed.status_code == 200
    page = httpx.get(
        live_stack.http_url + AUDIT,
        headers=auth("demo-admin"),
        params={"action": "calls.listed", "page_size": "1"},
        timeout=10,
    )
    assert page.status_code == 200, page.text
    assert page.headers["cache-control"] == "no-store"
    (entry,) = page.json()["data"]
    assert entry["action"] == "calls.listed"
    assert entry["actor"]["role"] == "admin"
    # The gateway's client first, then the gateway that forwarded it as core's gRPC peer.
    assert entry["address"].startswith("127.0.0.1 via ipv4:127.0.0.1:")

    export = httpx.get(
        live_stack.http_url + EXPORT,
        headers=auth("demo-admin"),
        params={"action": "calls.listed"},
        timeout=10,
    )
    assert export.status_code == 200
    assert export.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in export.text.splitlines()]
    assert lines and lines[-1]["entry_id"] == entry["entry_id"]
    assert all(line["action"] == "calls.listed" for line in lines)
    exported = httpx.get(
        live_stack.http_url + AUDIT,
        headers=auth("demo-admin"),
        params={"action": "audit.exported", "page_size": "1"},
        timeout=10,
    )
    assert exported.json()["data"][0]["address"].startswith("127.0.0.1 via ipv4:")


def test_the_audit_log_cannot_be_changed_over_http(live_stack: LiveStack) -> None:
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        for path in (AUDIT, EXPORT):
            response = httpx.request(
                method, live_stack.http_url + path, headers=auth("demo-admin"), timeout=10
            )
            assert response.status_code == 405, (method, path)
