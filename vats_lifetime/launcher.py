"""Core and gateway as child processes: the one way `make run`, the end-to-end tests and the
benchmark build their environment, start core then the gateway, wait until each answers,
and stop them (the gateway first) by pid with a grace period.

Not imported by core or gateway themselves, which need only `end_with_launcher`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from vats_lifetime import LAUNCHER_PID
from vats_settings import table as t

PROJECT_DIR = Path(__file__).resolve().parent.parent
DEMO_SEED = PROJECT_DIR / "seed" / "demo.json"
# What `make run` starts with: the demo directory plus a few finished calls to look at.
DEMO_SEED_WITH_CALLS = PROJECT_DIR / "seed" / "demo-with-calls.json"
STOP_GRACE_SECONDS = 10.0
# How long one readiness probe may take.
PROBE_SECONDS = 1.0

# Why waiting for a process ended (see `wait_until_ready`).
READY, EXITED, STOPPED, TIMED_OUT = "ready", "exited", "stopped", "timed out"

# The settings that tie core and gateway together, written out in their environment as both
# will read them: what the launcher itself reads stays in step with what they read.
_WRITTEN_OUT = (t.DATA_DIR, t.GRPC_ADDR, t.HTTP_ADDR, t.CORE_TARGET)


class NotStarted(RuntimeError):
    """A process that did not come to answer: it exited, was stopped or timed out."""

    def __init__(self, module: str, why: str, log: str) -> None:
        super().__init__(f"{module} did not start ({why}):\n{log}")
        self.module = module
        self.why = why


# The environment


def stack_environment(
    base: Mapping[str, str], settings: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment core and gateway both get: `base` with `settings` over it, the
    addresses and the data directory written out, and output unbuffered (log lines arrive
    as they are written)."""
    env = {**base, **(settings or {})}
    for setting in _WRITTEN_OUT:
        env[setting.name] = setting.raw(env) or ""
    env["PYTHONUNBUFFERED"] = "1"
    return env


def local_settings(
    workdir: Path, grpc_addr: str, http_addr: str, *, seed: Path, service_token: str
) -> dict[str, str]:
    """The settings of a stack of its own on this machine: its addresses, its seed and
    token, its data under `workdir`, and no rate limit."""
    return {
        t.GRPC_ADDR.name: grpc_addr,
        t.CORE_TARGET.name: local_address(grpc_addr),
        t.HTTP_ADDR.name: http_addr,
        t.SEED.name: str(seed),
        t.SERVICE_TOKEN.name: service_token,
        t.DATA_DIR.name: str(workdir / "data"),
        t.RATE_LIMIT.name: "0",
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def local_address(addr: str) -> str:
    """An address to reach a server that listens on `addr`, which may be a wildcard."""
    host, _, port = addr.rpartition(":")
    if host in ("", "0.0.0.0"):
        return f"127.0.0.1:{port}"
    if host in ("[::]", "::"):
        return f"[::1]:{port}"
    return addr


# Starting


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def spawn(
    argv: Sequence[str],
    env: Mapping[str, str],
    output: IO[bytes] | int,
    *,
    tied: bool = False,
    cwd: Path | None = PROJECT_DIR,
) -> subprocess.Popen[bytes]:
    """Starts `argv` with its stdout and stderr to `output` (a file, or subprocess.PIPE).

    tied: in a process group of its own, so that a Ctrl-C in the terminal reaches only
    this launcher, which then stops its children in order; and ending when the thread
    that started it ends, even when the launcher is killed outright: asked through its
    environment, the child sets a parent-death signal on itself
    (`vats_lifetime.end_with_launcher`). Start tied children from the main thread. Not in a
    `preexec_fn`: that runs between fork and exec in a copy of this process whose other
    threads (output pumps, say) vanished holding whatever locks they held, and can hang.
    """
    own = {LAUNCHER_PID: str(os.getpid())} if tied else {}
    return subprocess.Popen(
        list(argv),
        cwd=cwd,
        env={**env, **own},
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT,
        process_group=0 if tied else None,
    )


# Readiness


def core_is_ready(grpc_addr: str) -> bool:
    """Core's health service answers SERVING (its storage is open and the seed applied)."""
    with grpc.insecure_channel(local_address(grpc_addr)) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=PROBE_SECONDS)
        except grpc.RpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def answers(url: str) -> bool:
    """A GET of `url` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=PROBE_SECONDS) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def gateway_is_ready(http_addr: str) -> bool:
    """The gateway answers /healthz, which it does while it reaches core."""
    return answers(f"http://{local_address(http_addr)}/healthz")


def is_ready(module: str, env: Mapping[str, str]) -> bool:
    if module == "core":
        return core_is_ready(env[t.GRPC_ADDR.name])
    return gateway_is_ready(env[t.HTTP_ADDR.name])


def wait_until_ready(
    ready: Callable[[], bool],
    running: Callable[[], bool],
    timeout: float,
    poll: float = 0.1,
    stop: threading.Event | None = None,
) -> str:
    """Asks `ready` every `poll` seconds until it holds: READY; or EXITED once `running`
    fails, STOPPED once `stop` is set, TIMED_OUT after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    pause = stop or threading.Event()
    while True:
        if not running():
            return EXITED
        if pause.is_set():
            return STOPPED
        if ready():
            return READY
        if time.monotonic() > deadline:
            return TIMED_OUT
        pause.wait(poll)


# Stopping


def stop_process(
    process: subprocess.Popen[bytes] | None, grace: float = STOP_GRACE_SECONDS
) -> None:
    """SIGTERM, `grace` seconds to end, then SIGKILL (see `kill_process`)."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        kill_process(process)


def kill_process(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL, to the whole process group when the process leads one of its own (nothing it
    started outlives it), and wait for it."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            if os.getpgid(process.pid) == process.pid:
                os.killpg(process.pid, signal.SIGKILL)
            else:
                process.kill()
    process.wait()


class Stack:
    """Core and gateway with one environment: core started first, each waited for until it
    answers, the gateway stopped first.

    Each process's output goes to `<workdir>/<module>.log`; override `_spawn` to start
    them another way.
    """

    def __init__(self, workdir: Path, env: Mapping[str, str]) -> None:
        self.workdir = workdir
        self.env = dict(env)
        self.core: subprocess.Popen[bytes] | None = None
        self.gateway: subprocess.Popen[bytes] | None = None

    def _spawn(self, module: str) -> subprocess.Popen[bytes]:
        # The child keeps its own copy of the log's file descriptor.
        with open(self.workdir / f"{module}.log", "ab") as log:
            return spawn(python_module(module), self.env, log)

    def start_core(
        self, timeout: float = 30.0, poll: float = 0.1, stop: threading.Event | None = None
    ) -> float:
        """Starts core and waits until it answers; the seconds that took."""
        return self._start("core", timeout, poll, stop)

    def start_gateway(
        self, timeout: float = 30.0, poll: float = 0.1, stop: threading.Event | None = None
    ) -> float:
        """Starts the gateway and waits until it answers; the seconds that took."""
        return self._start("gateway", timeout, poll, stop)

    def _start(
        self, module: str, timeout: float, poll: float, stop: threading.Event | None
    ) -> float:
        began = time.perf_counter()
        process = self._spawn(module)
        # Known before the wait, so that a failed start is still stopped.
        if module == "core":
            self.core = process
        else:
            self.gateway = process
        self._wait(module, timeout, poll, stop)
        return time.perf_counter() - began

    def _wait(self, module: str, timeout: float, poll: float, stop: threading.Event | None) -> None:
        """Raises NotStarted unless `module` comes to answer."""
        why = wait_until_ready(
            lambda: is_ready(module, self.env), lambda: self._running(module), timeout, poll, stop
        )
        if why != READY:
            raise NotStarted(module, why, self.log(module))

    def _running(self, module: str) -> bool:
        """Whether to go on waiting for `module`: it is still running."""
        process = self.core if module == "core" else self.gateway
        return process is not None and process.poll() is None

    def stop_core(self) -> None:
        stop_process(self.core)
        self.core = None

    def kill_core(self) -> None:
        """SIGKILL: core gets no chance to finish anything, as in a crash or an OOM kill."""
        if self.core is not None:
            kill_process(self.core)
        self.core = None

    def stop_gateway(self) -> None:
        stop_process(self.gateway)
        self.gateway = None

    def stop(self) -> None:
        # The gateway first, so that it does not report a core that is going away.
        stop_process(self.gateway)
        stop_process(self.core)

    def log(self, module: str) -> str:
        path = self.workdir / f"{module}.log"
        return path.read_text(errors="replace") if path.exists() else ""
