"""Gateway readiness against an in-process core whose storage stops answering."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from falcon.testing import ASGIConductor

from core.server import Core
from gateway.app import create_app
from gateway.config import Config
from tests.conftest import running_core
from tests.ops.ops_support import database_file_gone


@pytest.fixture
async def core(tmp_path: Path) -> AsyncIterator[Core]:
    async with running_core(tmp_path, storage_check_seconds=0.05) as server:
        yield server


@pytest.fixture
async def gateway(core: Core) -> AsyncIterator[ASGIConductor]:
    config = Config(
        {"VATS_CORE_TARGET": f"127.0.0.1:{core.port}", "VATS_SERVICE_TOKEN": "demo-service"}
    )
    async with ASGIConductor(create_app(config)) as conductor:
        yield conductor


async def readiness_becomes(gateway: ASGIConductor, status: int) -> dict[str, Any]:
    for _ in range(100):
        result = await gateway.simulate_get("/readyz")
        if result.status_code == status:
            return dict(result.json)
        await asyncio.sleep(0.02)
    raise AssertionError(f"/readyz never answered {status}")


async def test_gateway_is_not_ready_while_core_cannot_reach_its_storage(
    core: Core, gateway: ASGIConductor
) -> None:
    assert await readiness_becomes(gateway, 200) == {
        "status": "ready",
        "core": "serving",
        "storage": "ok",
    }
    with database_file_gone(core):
        assert await readiness_becomes(gateway, 503) == {
            "status": "not_ready",
            "core": "not_serving",
            "storage": "unreachable",
        }
        # Liveness and the overall health check do not depend on storage.
        assert (await gateway.simulate_get("/livez")).status_code == 200
        assert (await gateway.simulate_get("/healthz")).status_code == 200
    await readiness_becomes(gateway, 200)
