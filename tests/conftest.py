"""Shared fixtures: a real core in-process on a free port, and the real processes."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, ClassVar

import grpc
import pytest

from core.config import CoreConfig
from core.server import Core
from vats_lifetime import launcher
from vats_lifetime.launcher import free_port

ROOT = launcher.PROJECT_DIR
DEMO_SEED = launcher.DEMO_SEED


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


@pytest.fixture
def seed() -> dict[str, object]:
    return json.loads(DEMO_SEED.read_text(encoding="utf-8"))


@contextlib.asynccontextmanager
async def running_core(
    tmp_path: Path, *, stream_token_check_seconds: float | None = None, **settings: Any
) -> AsyncIterator[Core]:
    """A real core (grpc.aio server, embedded store, demo seed) on a free port;
    `settings` override the CoreConfig fields. With `stream_token_check_seconds`, live
    streams check their tokens that often (tests then need not wait for a revocation)."""
    config = CoreConfig(
        grpc_addr="127.0.0.1:0",
        seed_path=str(DEMO_SEED),
        data_dir=str(tmp_path / "data"),
        public_url="http://vats.test",
        link_secret="test-link-secret",
        sweep_interval_seconds=3600,
    )
    server = Core(dataclasses.replace(config, **settings))
    if stream_token_check_seconds is not None:
        server.stream_token_check_seconds = stream_token_check_seconds
    await server.start()
    try:
        yield server
    finally:
        await server.stop(grace=1)


@pytest.fixture
async def core(tmp_path: Path) -> AsyncIterator[Core]:
    async with running_core(tmp_path) as server:
        yield server


@pytest.fixture
async def channel(core: Core) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{core.port}") as ch:
        yield ch


class LiveStack(launcher.Stack):
    """Core and gateway as real processes, started the way `make run` starts them, each
    logging to `<workdir>/<module>.log`."""

    channel_key = "demo-channel-key"
    admin_token = "demo-admin"
    service_token = "demo-service"
    employee_tokens: ClassVar[dict[int, str]] = {1: "demo-anna", 2: "demo-boris", 3: "demo-vera"}

    def __init__(self, workdir: Path, extra_env: dict[str, str] | None = None) -> None:
        self.grpc_port = free_port()
        self.http_port = free_port()
        self.grpc_target = f"127.0.0.1:{self.grpc_port}"
        self.http_url = f"http://127.0.0.1:{self.http_port}"
        # No vats-bridge setting of this process's environment leaks in.
        base = {k: v for k, v in os.environ.items() if not k.startswith("VATS_")}
        settings = launcher.local_settings(
            workdir,
            self.grpc_target,
            f"127.0.0.1:{self.http_port}",
            seed=DEMO_SEED,
            service_token=self.service_token,
        )
        settings |= {
            "VATS_SSE_KEEPALIVE": "1",
            "VATS_METRICS_ADDR": "off",
            "VATS_LINK_SECRET": "e2e-link-secret-0123456789",
            **(extra_env or {}),
        }
        super().__init__(workdir, launcher.stack_environment(base, settings))

    @property
    def data_dir(self) -> Path:
        return Path(self.env["VATS_DATA_DIR"])

    @property
    def calls_url(self) -> str:
        return f"{self.http_url}/api/v2/telephony/calls/{self.channel_key}"


@contextlib.contextmanager
def running_stack(workdir: Path, extra_env: dict[str, str] | None = None) -> Iterator[LiveStack]:
    """Core and gateway started in `workdir`, both stopped at the end (also when a start
    failed)."""
    stack = LiveStack(workdir, extra_env)
    try:
        stack.start_core()
        stack.start_gateway()
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def live_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    with running_stack(tmp_path_factory.mktemp("stack")) as stack:
        yield stack
