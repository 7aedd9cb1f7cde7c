"""Tokens at the gateway: the gateway's own token towards core (readiness), the
callers' Authorization scheme, and whose cards a service or admin token watches.

Against a real core in-process (its token rules are the ones under test), or the
fake core where only the gateway's side matters."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from falcon.testing import ASGIConductor

from core.server import Core
from gateway.app import create_app
from gateway.config import Config
from telephony.v1 import directory_service_pb2 as dr
from telephony.v1 import directory_service_pb2_grpc
from tests.conftest import LiveStack, bearer, running_core
from tests.gateway.gateway_fakes import EMPLOYEE_TOKEN, FakeCore

STREAM = "/api/v2/telephony/cards/stream"
TOKEN_ENDPOINTS = [
    STREAM,
    "/api/v2/telephony/records/rec-1",
    "/api/v2/telephony/history",
    "/api/v2/telephony/history/1",
]


@pytest.fixture
async def real_core(tmp_path: Path) -> AsyncIterator[Core]:
    async with running_core(tmp_path) as server:
        yield server


def gateway_of(core: Core, service_token: str | None) -> ASGIConductor:
    env = {"VATS_CORE_TARGET": f"127.0.0.1:{core.port}", "VATS_SSE_KEEPALIVE": "0.2"}
    if service_token is not None:
        env["VATS_SERVICE_TOKEN"] = service_token
    return ASGIConductor(create_app(Config(env)))


# Readiness: core must accept the gateway's own token.


async def test_ready_when_core_accepts_the_service_token(real_core: Core) -> None:
    async with gateway_of(real_core, "demo-service") as gateway:
        result = await gateway.simulate_get("/readyz")
    assert (result.status_code, result.json) == (
        200,
        {"status": "ready", "core": "serving", "storage": "ok"},
    )


@pytest.mark.parametrize(
    ("service_token", "said"),
    [
        ("not-a-token", "unknown or revoked token"),
        # An employee's token is a real token, but not one that may report calls.
        ("demo-anna", "may not"),
        (None, "VATS_SERVICE_TOKEN"),
    ],
    ids=["unknown", "employee-token", "none"],
)
async def test_not_ready_while_core_refuses_the_service_token(
    real_core: Core, service_token: str | None, said: str
) -> None:
    async with gateway_of(real_core, service_token) as gateway:
        ready = await gateway.simulate_get("/readyz")
        # What readiness stands for: every PBX request would fail.
        pbx = await gateway.simulate_post(
            "/api/v2/telephony/calls/demo-channel-key",
            json={"action": "create_call", "direction": "incoming", "phone": "+74951234567"},
        )
        # Liveness does not depend on it: restarting the gateway would not help.
        live = await gateway.simulate_get("/livez")
    assert pbx.status_code == 503
    assert ready.status_code == 503, ready.text
    assert ready.headers["Retry-After"] == "1"
    body: dict[str, Any] = ready.json
    assert body["status"] == "not_ready"
    assert (body["core"], body["core_auth"]) == ("serving", "refused")
    assert "service token" in body["message"] and said in body["message"]
    assert "VATS_SERVICE_TOKEN" in body["message"]
    assert live.status_code == 200


async def test_readiness_follows_a_refusal_seen_on_a_pbx_request(real_core: Core) -> None:
    async with gateway_of(real_core, "demo-service") as gateway:
        assert (await gateway.simulate_get("/readyz")).status_code == 200
        await revoke_service_tokens(real_core)
        pbx = await gateway.simulate_post(
            "/api/v2/telephony/calls/demo-channel-key",
            json={"action": "create_call", "direction": "incoming", "phone": "+74951234567"},
        )
        assert pbx.status_code == 503
        ready = await gateway.simulate_get("/readyz")
    assert ready.status_code == 503
    assert ready.json["core_auth"] == "refused"
    assert "revoked" in ready.json["message"]


async def revoke_service_tokens(core: Core) -> None:
    admin = bearer(LiveStack.admin_token)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{core.port}") as channel:
        directory = directory_service_pb2_grpc.DirectoryServiceStub(channel)
        tokens = await directory.ListTokens(dr.ListTokensRequest(), metadata=admin)
        for token in tokens.tokens:
            if token.role == dr.ROLE_SERVICE:
                await directory.RevokeToken(
                    dr.RevokeTokenRequest(token_id=token.token_id), metadata=admin
                )


# The Authorization scheme: only Bearer tokens are tokens.


@pytest.mark.parametrize("path", TOKEN_ENDPOINTS)
@pytest.mark.parametrize(
    "header", [f"Token {EMPLOYEE_TOKEN}", "Basic YW5uYTpzZWNyZXQ=", EMPLOYEE_TOKEN]
)
async def test_another_scheme_is_told_to_use_bearer(
    gateway: ASGIConductor, fake_core: FakeCore, path: str, header: str
) -> None:
    result = await gateway.simulate_get(path, headers={"Authorization": header})
    assert result.status_code == 401
    error = result.json["error"]
    assert error["code"] == "unauthenticated"
    assert "Bearer" in error["message"] and "missing" not in error["message"]
    # Refused at the gateway: core was not asked.
    assert fake_core.calls.metadata == [] and fake_core.calls.watch_requests == []


@pytest.mark.parametrize("path", TOKEN_ENDPOINTS)
async def test_bearer_scheme_is_case_insensitive(real_core: Core, path: str) -> None:
    async with gateway_of(real_core, "demo-service") as gateway:
        result = await gateway.simulate_get(path, headers={"Authorization": "bearer demo-anna"})
    # Core took the token: what follows (a stream, a 404 or a list) is not a 401.
    assert result.status_code != 401, result.text


async def test_another_scheme_beside_access_token_is_left_aside(
    gateway: ASGIConductor, fake_core: FakeCore
) -> None:
    async with gateway.simulate_get_stream(
        STREAM,
        headers={"Authorization": "Basic cHJveHk6cGFzcw=="},
        params={"access_token": EMPLOYEE_TOKEN},
    ) as result:
        assert result.status_code == 200


async def test_signed_link_needs_no_token_whatever_the_header(
    gateway: ASGIConductor, fake_core: FakeCore
) -> None:
    # A proxy in front may add its own Authorization header.
    result = await gateway.simulate_get(
        "/api/v2/telephony/records/rec-1",
        query_string="expires=1900000000&signature=good",
        headers={"Authorization": "Basic cHJveHk6cGFzcw=="},
    )
    assert result.status_code == 200


# Whose cards: a service or admin token names the employee with ?employee_id=.


@pytest.mark.parametrize("token", ["demo-service", "demo-admin"])
async def test_stream_without_employee_id_tells_how_to_name_one(
    real_core: Core, token: str
) -> None:
    async with gateway_of(real_core, "demo-service") as gateway:
        result = await gateway.simulate_get(STREAM, headers={"Authorization": f"Bearer {token}"})
    assert result.status_code == 422
    error = result.json["error"]
    assert error["code"] == "invalid_request"
    assert "?employee_id=" in error["message"]
    assert "?employee_id=" in error["fields"]["employee_id"]


@pytest.mark.parametrize("token", ["demo-service", "demo-admin"])
async def test_stream_with_employee_id_watches_that_employee(real_core: Core, token: str) -> None:
    async with (
        gateway_of(real_core, "demo-service") as gateway,
        gateway.simulate_get_stream(
            STREAM, headers={"Authorization": f"Bearer {token}"}, params={"employee_id": "2"}
        ) as result,
    ):
        assert result.status_code == 200
        text = ""
        async with asyncio.timeout(5):
            while ": keepalive" not in text:
                text += (await result.stream.read()).decode()
                await asyncio.sleep(0.01)


async def test_employee_token_may_not_watch_another_employee(real_core: Core) -> None:
    async with gateway_of(real_core, "demo-service") as gateway:
        result = await gateway.simulate_get(
            STREAM, headers={"Authorization": "Bearer demo-anna"}, params={"employee_id": "2"}
        )
    assert result.status_code == 403


@pytest.mark.parametrize("employee_id", ["0", "-1", "x", "1.5", "9" * 19])
async def test_malformed_employee_id_is_422_without_asking_core(
    gateway: ASGIConductor, fake_core: FakeCore, employee_id: str
) -> None:
    result = await gateway.simulate_get(
        STREAM,
        headers={"Authorization": f"Bearer {EMPLOYEE_TOKEN}"},
        params={"employee_id": employee_id},
    )
    assert result.status_code == 422
    assert result.json["error"]["fields"] == {"employee_id": "a positive whole number"}
    assert fake_core.calls.watch_requests == []
