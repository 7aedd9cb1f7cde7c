"""Processes the benchmark starts: core, gateway, ceiling servers and load generators.

Every process is started here and stopped by its own pid; nothing else is touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
DEMO_SEED = ROOT / "seed" / "demo.json"
CHANNEL_KEY = "demo-channel-key"
ADMIN_TOKEN = "demo-admin"
SERVICE_TOKEN = "demo-service"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proc:
    """One child process with its log file; stopped by pid (SIGTERM, then SIGKILL)."""

    _running: set[Proc] = set()  # noqa: RUF012 (process-wide registry, for cleanup)

    def __init__(
        self, name: str, argv: Sequence[str], log_dir: Path, env: dict[str, str] | None = None
    ) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(
                list(argv), cwd=ROOT, env=env or dict(os.environ), stdout=log, stderr=log
            )
        Proc._running.add(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 10.0) -> None:
        Proc._running.discard(self)
        if self.popen.poll() is not None:
            return
        self.popen.terminate()
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()

    @classmethod
    def stop_all(cls) -> None:
        for proc in list(cls._running):
            proc.stop(timeout=5)


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def wait_grpc(target: str, proc: Proc, timeout: float = 60.0, poll: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        while True:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if not proc.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{proc.name} did not start:\n{proc.log()[-3000:]}")
            time.sleep(poll)


def wait_http(url: str, proc: Proc, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if not proc.alive() or time.monotonic() > deadline:
            raise RuntimeError(f"{proc.name} did not start:\n{proc.log()[-3000:]}")
        time.sleep(0.05)


class Stack:
    """The real core and gateway as processes, started the way `make run` starts them."""

    def __init__(
        self,
        workdir: Path,
        *,
        seed: Path = DEMO_SEED,
        extra_env: dict[str, str] | None = None,
        gateway: bool = True,
        core_target: str | None = None,
    ) -> None:
        """`core_target`: start no core and point the gateway at that server instead."""
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.grpc_target = core_target or f"127.0.0.1:{free_port()}"
        self.with_core = core_target is None
        self.http_port = free_port()
        self.http_url = f"http://127.0.0.1:{self.http_port}"
        self.env = {
            **os.environ,
            "VATS_GRPC_ADDR": self.grpc_target,
            "VATS_CORE_TARGET": self.grpc_target,
            "VATS_HTTP_ADDR": f"127.0.0.1:{self.http_port}",
            "VATS_SEED": str(seed),
            "VATS_SERVICE_TOKEN": SERVICE_TOKEN,
            "VATS_DATA_DIR": str(workdir / "data"),
            "VATS_RATE_LIMIT": "0",
            "VATS_LINK_SECRET": "bench-link-secret-0123456789",
            "PYTHONUNBUFFERED": "1",
            **(extra_env or {}),
        }
        # Measured on the default store (SQLite in the data directory), whatever the shell says.
        self.env.pop("VATS_MONGODB_URI", None)
        self.with_gateway = gateway
        self.core: Proc | None = None
        self.gateway: Proc | None = None

    @property
    def calls_url(self) -> str:
        return f"{self.http_url}/api/v2/telephony/calls/{CHANNEL_KEY}"

    @property
    def history_url(self) -> str:
        return f"{self.http_url}/api/v2/telephony/history"

    def start_core(self) -> float:
        """Start core; seconds from starting the process to its health check answering
        SERVING (imports, opening and migrating the store, the seed, binding the port)."""
        began = time.perf_counter()
        self.core = Proc("core", python_module("core"), self.workdir, self.env)
        wait_grpc(self.grpc_target, self.core, timeout=300, poll=0.01)
        return time.perf_counter() - began

    def stop_core(self) -> None:
        if self.core is not None:
            self.core.stop()
            self.core = None

    def start_gateway(self) -> None:
        self.gateway = Proc("gateway", python_module("gateway"), self.workdir, self.env)
        wait_http(self.http_url + "/healthz", self.gateway)

    def start(self) -> Stack:
        if self.with_core:
            self.start_core()
        if self.with_gateway:
            self.start_gateway()
        return self

    def stop(self) -> None:
        for proc in (self.gateway, self.core):
            if proc is not None:
                proc.stop()
        self.gateway = self.core = None


@contextlib.contextmanager
def running_stack(workdir: Path, **kwargs: Any) -> Iterator[Stack]:
    stack = Stack(workdir, **kwargs)
    try:
        yield stack.start()
    finally:
        stack.stop()


def run_load(
    module: str,
    args: Sequence[str],
    log_dir: Path,
    name: str,
    timeout: float,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run a load-generator process to its end; it prints one JSON object as its last line."""
    log = log_dir / f"{name}.err"
    with open(log, "ab") as err:
        done = subprocess.run(
            python_module(module, *args),
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            timeout=timeout,
            check=False,
        )
    lines = done.stdout.decode(errors="replace").strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{name} failed (exit {done.returncode}):\n{tail}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result
