"""Fixtures of the gateway tests: a fake core on a free port and the app driven in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from falcon.testing import ASGIConductor

from gateway.app import GatewayApp, create_app
from gateway.config import Config
from tests.gateway.gateway_fakes import SERVICE_TOKEN, FakeCore


@pytest.fixture
async def fake_core() -> AsyncIterator[FakeCore]:
    async with FakeCore() as core:
        yield core


@pytest.fixture
def config(fake_core: FakeCore) -> Config:
    return Config(
        {
            "VATS_CORE_TARGET": fake_core.target,
            "VATS_SERVICE_TOKEN": SERVICE_TOKEN,
            "VATS_PUBLIC_URL": "http://gw.test/",
            "VATS_MAX_RECORD_MB": "1",
            "VATS_MAX_BODY_KB": "16",
            "VATS_MAX_FIELD_KB": "4",
            "VATS_SSE_KEEPALIVE": "0.2",
            "VATS_CORE_TIMEOUT": "2",
        }
    )


@pytest.fixture
async def gateway(config: Config) -> AsyncIterator[ASGIConductor]:
    async with ASGIConductor(create_app(config)) as conductor:
        yield conductor


@pytest.fixture
def quiet_app(fake_core: FakeCore) -> GatewayApp:
    """The app without keepalives: only a hang-up or the shutdown can end a stream."""
    config = Config(
        {
            "VATS_CORE_TARGET": fake_core.target,
            "VATS_SERVICE_TOKEN": SERVICE_TOKEN,
            "VATS_SSE_KEEPALIVE": "3600",
        }
    )
    return create_app(config)
