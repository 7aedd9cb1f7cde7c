"""Processes the benchmark starts: core, gateway, ceiling servers and load generators.

Every process is started here and stopped by its own pid; nothing else is touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from vats_lifetime import launcher
from vats_lifetime.launcher import free_port, python_module

ROOT = launcher.PROJECT_DIR
DEMO_SEED = launcher.DEMO_SEED
CHANNEL_KEY = "demo-channel-key"
ADMIN_TOKEN = "demo-admin"
SERVICE_TOKEN = "demo-service"


class Proc:
    """One child process with its log file; stopped by pid (SIGTERM, then SIGKILL)."""

    _running: set[Proc] = set()  # noqa: RUF012 (process-wide registry, for cleanup)

    def __init__(
        self, name: str, argv: Sequence[str], log_dir: Path, env: dict[str, str] | None = None
    ) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        with open(self.log_path, "ab") as log:
            self.popen = launcher.spawn(argv, env or dict(os.environ), log)
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
        launcher.stop_process(self.popen, timeout)

    @classmethod
    def stop_all(cls) -> None:
        for proc in list(cls._running):
            proc.stop(timeout=5)


def _wait(ready: Callable[[], bool], proc: Proc, timeout: float, poll: float) -> None:
    if launcher.wait_until_ready(ready, proc.alive, timeout, poll) != launcher.READY:
        raise RuntimeError(f"{proc.name} did not start:\n{proc.log()[-3000:]}")


def wait_grpc(target: str, proc: Proc, timeout: float = 60.0, poll: float = 0.05) -> None:
    _wait(lambda: launcher.core_is_ready(target), proc, timeout, poll)


def wait_http(url: str, proc: Proc, timeout: float = 60.0) -> None:
    _wait(lambda: launcher.answers(url), proc, timeout, 0.05)


class Stack(launcher.Stack):
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
        workdir.mkdir(parents=True, exist_ok=True)
        self.grpc_target = core_target or f"127.0.0.1:{free_port()}"
        self.with_core = core_target is None
        self.http_port = free_port()
        self.http_url = f"http://127.0.0.1:{self.http_port}"
        settings = launcher.local_settings(
            workdir,
            self.grpc_target,
            f"127.0.0.1:{self.http_port}",
            seed=seed,
            service_token=SERVICE_TOKEN,
        )
        settings |= {"VATS_LINK_SECRET": "bench-link-secret-0123456789", **(extra_env or {})}
        env = launcher.stack_environment(os.environ, settings)
        # Measured on the default store (SQLite in the data directory), whatever the shell says.
        env.pop("VATS_MONGODB_URI", None)
        super().__init__(workdir, env)
        self.with_gateway = gateway

    @property
    def calls_url(self) -> str:
        return f"{self.http_url}/api/v2/telephony/calls/{CHANNEL_KEY}"

    @property
    def history_url(self) -> str:
        return f"{self.http_url}/api/v2/telephony/history"

    def start_core(
        self, timeout: float = 300.0, poll: float = 0.01, stop: threading.Event | None = None
    ) -> float:
        """Start core; seconds from starting the process to its health check answering
        SERVING (imports, opening and migrating the store, the seed, binding the port)."""
        return super().start_core(timeout, poll, stop)

    def start_gateway(
        self, timeout: float = 60.0, poll: float = 0.05, stop: threading.Event | None = None
    ) -> float:
        return super().start_gateway(timeout, poll, stop)

    def start(self) -> Stack:
        if self.with_core:
            self.start_core()
        if self.with_gateway:
            self.start_gateway()
        return self

    def stop(self) -> None:
        super().stop()
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
