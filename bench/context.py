"""What every scenario gets (settings, a work folder, the clock of the whole run) and gives
back (a Section of the report)."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.procs import Proc, free_port, python_module, wait_grpc, wait_http
from bench.profile import Profile


@dataclass(frozen=True)
class Settings:
    http_seconds: float = 6.0  # each wrk window
    grpc_seconds: float = 5.0  # each gRPC load window
    warmup_seconds: float = 1.0
    connections: int = 32
    grpc_concurrency: tuple[int, ...] = (1, 32)
    card_levels: tuple[int, ...] = (10, 100, 1000, 5000)
    upload_mb: int = 200
    scale_sizes: tuple[int, ...] = (1_000, 10_000, 100_000)
    scale_probe_seconds: float = 1.0  # each probe window, in each of the rounds
    # The whole run stays under this (about 20 min with the report); seeding for the scale
    # scenario gets what is left.
    total_budget_seconds: float = 1080.0
    profile_seconds: float = 4.0
    profile: bool = True


@dataclass
class Verdict:
    measure: str
    value: str
    goal: str
    met: bool | None  # None: no goal, reported only


@dataclass
class Section:
    key: str
    title: str
    headers: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    profiles: list[Profile] = field(default_factory=list)
    # What the profiles were taken during.
    profile_caption: str = "during an extra create + update window"
    seconds: float = 0.0
    error: str = ""


class Context:
    def __init__(self, settings: Settings, workdir: Path, wrk: str | None) -> None:
        self.settings = settings
        self.workdir = workdir
        self.wrk = wrk
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def remaining(self) -> float:
        return self.settings.total_budget_seconds - self.elapsed()

    def folder(self, name: str) -> Path:
        path = self.workdir / name
        path.mkdir(parents=True, exist_ok=True)
        return path


@dataclass(frozen=True)
class Ceilings:
    echo_target: str
    bare_url: str
    relay_url: str
    pids: dict[str, int]


@contextlib.contextmanager
def ceiling_servers(folder: Path, *, durable: bool = False) -> Iterator[Ceilings]:
    """The grpc.aio echo server, the bare Falcon app and the relay app in front of the echo;
    `durable`: the echo server commits each call to a file in `folder` first."""
    echo_port, bare_port, relay_port = free_port(), free_port(), free_port()
    echo_target = f"127.0.0.1:{echo_port}"
    echo_argv = python_module("bench.ceilings", "echo", "--port", str(echo_port))
    if durable:
        store = folder / "echo.db"
        for leftover in folder.glob("echo.db*"):
            leftover.unlink()
        echo_argv += ["--store", str(store)]
    procs: list[Proc] = []
    try:
        echo = Proc("echo", echo_argv, folder)
        procs.append(echo)
        bare = Proc(
            "bare", python_module("bench.ceilings", "bare", "--port", str(bare_port)), folder
        )
        procs.append(bare)
        relay_argv = python_module(
            "bench.ceilings", "relay", "--port", str(relay_port), "--target", echo_target
        )
        relay = Proc("relay", relay_argv, folder)
        procs.append(relay)
        wait_grpc(echo_target, echo)
        wait_http(f"http://127.0.0.1:{bare_port}/healthz", bare)
        wait_http(f"http://127.0.0.1:{relay_port}/healthz", relay)
        yield Ceilings(
            echo_target,
            f"http://127.0.0.1:{bare_port}",
            f"http://127.0.0.1:{relay_port}",
            {"echo": echo.pid, "bare": bare.pid, "relay": relay.pid},
        )
    finally:
        for proc in reversed(procs):
            proc.stop()


def ratio(value: float, ceiling: float) -> float:
    return value / ceiling if ceiling and not math.isnan(ceiling) else math.nan


def fmt(value: float, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"
