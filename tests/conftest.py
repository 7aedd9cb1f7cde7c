"""Shared fixtures: a real core in-process on a free port, and the real processes."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, ClassVar

import grpc
import httpx
import pytest

from core.config import CoreConfig
from core.server import Core

ROOT = Path(__file__).resolve().parent.parent
DEMO_SEED = ROOT / "seed" / "demo.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


@pytest.fixture
def seed() -> dict[str, object]:
    return json.loads(DEMO_SEED.read_text(encoding="utf-8"))


@contextlib.asynccontextmanager
async def running_core(tmp_path: Path, **settings: Any) -> AsyncIterator[Core]:
    """A real core (grpc.aio server, embedded store, demo seed) on a free port;
    `settings` override the CoreConfig fields."""
    config = CoreConfig(
        grpc_addr="127.0.0.1:0",
        seed_path=str(DEMO_SEED),
        data_dir=str(tmp_path / "data"),
        public_url="http://vats.test",
        link_secret="test-link-secret",
        sweep_interval_seconds=3600,
    )
    server = Core(dataclasses.replace(config, **settings))
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


class LiveStack:
    """Core and gateway as real processes, started the way `make run` starts them."""

    channel_key = "demo-channel-key"
    admin_token = "demo-admin"
    service_token = "demo-service"
    employee_tokens: ClassVar[dict[int, str]] = {1: "demo-anna", 2: "demo-boris", 3: "demo-vera"}

    def __init__(self, workdir: Path, extra_env: dict[str, str] | None = None) -> None:
        self.grpc_port = free_port()
        self.http_port = free_port()
        self.grpc_target = f"127.0.0.1:{self.grpc_port}"
        self.http_url = f"http://127.0.0.1:{self.http_port}"
        self.workdir = workdir
        self.env = {
            # No vats-bridge setting of this process's environment leaks in.
            **{k: v for k, v in os.environ.items() if not k.startswith("VATS_")},
            "VATS_GRPC_ADDR": self.grpc_target,
            "VATS_CORE_TARGET": self.grpc_target,
            "VATS_HTTP_ADDR": f"127.0.0.1:{self.http_port}",
            "VATS_SEED": str(DEMO_SEED),
            "VATS_SERVICE_TOKEN": self.service_token,
            "VATS_DATA_DIR": str(workdir / "data"),
            "VATS_RATE_LIMIT": "0",
            "VATS_SSE_KEEPALIVE": "1",
            "VATS_METRICS_ADDR": "off",
            "VATS_LINK_SECRET": "e2e-link-secret-0123456789",
            "PYTHONUNBUFFERED": "1",
            **(extra_env or {}),
        }
        self.core: subprocess.Popen[bytes] | None = None
        self.gateway: subprocess.Popen[bytes] | None = None

    def _spawn(self, module: str) -> subprocess.Popen[bytes]:
        # The child keeps its own copy of the log's file descriptor.
        with open(self.workdir / f"{module}.log", "ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", module], cwd=ROOT, env=self.env, stdout=log, stderr=log
            )

    def start_core(self) -> None:
        self.core = self._spawn("core")
        deadline = time.monotonic() + 30
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        with grpc.insecure_channel(self.grpc_target) as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            while True:
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                if self.core.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("core did not start:\n" + self.log("core"))
                time.sleep(0.1)

    def start_gateway(self) -> None:
        self.gateway = self._spawn("gateway")
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(self.http_url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.gateway.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("gateway did not start:\n" + self.log("gateway"))
            time.sleep(0.1)

    def stop_core(self) -> None:
        _stop(self.core)
        self.core = None

    def kill_core(self) -> None:
        """SIGKILL: core gets no chance to finish anything, as in a crash or an OOM kill."""
        if self.core is not None and self.core.poll() is None:
            self.core.kill()
            self.core.wait()
        self.core = None

    def stop_gateway(self) -> None:
        _stop(self.gateway)
        self.gateway = None

    def stop(self) -> None:
        _stop(self.gateway)
        _stop(self.core)

    @property
    def data_dir(self) -> Path:
        return Path(self.env["VATS_DATA_DIR"])

    def log(self, module: str) -> str:
        path = self.workdir / f"{module}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    @property
    def calls_url(self) -> str:
        return f"{self.http_url}/api/v2/telephony/calls/{self.channel_key}"


def _stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def live_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    stack = LiveStack(tmp_path_factory.mktemp("stack"))
    try:
        stack.start_core()
        stack.start_gateway()
        yield stack
    finally:
        stack.stop()
