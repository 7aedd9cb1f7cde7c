"""The launcher behind `make run` owns core and gateway: however it ends, neither is left
running nor holding a port, and a child that dies takes the other one down with it."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from vats_lifetime import LAUNCHER_PID

from .conftest import unavailable

pytestmark = pytest.mark.deploy

PROJECT_DIR = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
# Only tells processes that stop from processes that hang on; never a performance bound.
STOP_WITHIN = 60.0
# Starts the rest of its command line with SIGHUP ignored, as `nohup` does.
SIGHUP_IGNORED = [
    PYTHON,
    "-c",
    "import os, signal, sys; signal.signal(signal.SIGHUP, signal.SIG_IGN); "
    "os.execv(sys.argv[1], sys.argv[1:])",
]


@pytest.fixture(autouse=True)
def _linux() -> None:
    if sys.platform != "linux":
        unavailable("the launcher ties its children to itself with Linux's parent-death signal")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def is_gone(pid: int) -> bool:
    """No such process, or only its exit status is left (a zombie nobody reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


def wait_until_gone(pids: list[int]) -> list[int]:
    """The pids still running once they have all ended or STOP_WITHIN has passed."""
    deadline = time.monotonic() + STOP_WITHIN
    while (alive := [pid for pid in pids if not is_gone(pid)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive


def can_listen_on(port: int) -> bool:
    with socket.socket() as sock:
        # As core and gateway do: a closed connection's TIME_WAIT does not hold the port,
        # a process still listening on it does.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError:
            return False
    return True


class Launched:
    """`python -m vats_cli.run` in a session of its own, as a terminal starts `make run`."""

    def __init__(self, tmp_path: Path, wrapper: list[str]) -> None:
        self.ports = {"grpc": free_port(), "http": free_port(), "metrics": free_port()}
        env = {name: value for name, value in os.environ.items() if not name.startswith("VATS_")}
        env |= {
            "VATS_GRPC_ADDR": f"127.0.0.1:{self.ports['grpc']}",
            "VATS_HTTP_ADDR": f"127.0.0.1:{self.ports['http']}",
            "VATS_METRICS_ADDR": f"127.0.0.1:{self.ports['metrics']}",
            "VATS_DATA_DIR": str(tmp_path / "data"),
        }
        self.process = subprocess.Popen(
            [*wrapper, PYTHON, "-m", "vats_cli.run"],
            cwd=PROJECT_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.startswith("vats-bridge is running"):
                self._ready.set()
        self._ready.set()

    def wait_until_running(self) -> None:
        assert self._ready.wait(120), f"no banner; output so far: {self.lines}"
        assert self.process.poll() is None, f"the launcher ended: {self.output()}"
        assert set(self.pids) == {"core", "gateway"}
        assert not any(can_listen_on(port) for port in self.ports.values())

    @property
    def pids(self) -> dict[str, int]:
        found = (re.fullmatch(r"started (core|gateway) \(pid (\d+)\)", line) for line in self.lines)
        return {m.group(1): int(m.group(2)) for m in found if m}

    def wait(self) -> int:
        try:
            code = self.process.wait(STOP_WITHIN)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the launcher still runs {STOP_WITHIN:g} s later: {self.output()}")
        self._reader.join(STOP_WITHIN)
        return code

    def stderr(self) -> str:
        assert self.process.stderr is not None
        return self.process.stderr.read()

    def output(self) -> str:
        return "\n".join(self.lines[-30:])

    def close(self) -> None:
        """Whatever the test did, nothing it started outlives it."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        for pid in self.pids.values():
            if not is_gone(pid):
                os.kill(pid, signal.SIGKILL)
        for pipe in (self.process.stdout, self.process.stderr):
            assert pipe is not None
            pipe.close()


@contextlib.contextmanager
def launch(tmp_path: Path, wrapper: list[str] | None = None) -> Iterator[Launched]:
    launched = Launched(tmp_path, wrapper or [])
    try:
        launched.wait_until_running()
        yield launched
    finally:
        launched.close()


def assert_nothing_left(launched: Launched) -> None:
    assert wait_until_gone(list(launched.pids.values())) == [], launched.pids
    held = [name for name, port in launched.ports.items() if not can_listen_on(port)]
    assert held == [], f"ports still held: {held}"


@pytest.mark.parametrize(
    ("signum", "whole_group"),
    [
        # A closing terminal hangs up its foreground process group: make and the launcher.
        pytest.param(signal.SIGHUP, True, id="terminal-closed"),
        pytest.param(signal.SIGTERM, False, id="kill"),
        pytest.param(signal.SIGKILL, False, id="kill-9"),
    ],
)
def test_however_the_launcher_ends_core_and_gateway_end_and_free_their_ports(
    tmp_path: Path, signum: signal.Signals, whole_group: bool
) -> None:
    with launch(tmp_path) as launched:
        if whole_group:
            os.killpg(launched.process.pid, signum)
        else:
            launched.process.send_signal(signum)

        code = launched.wait()

        assert_nothing_left(launched)
        if signum == signal.SIGKILL:
            assert code == -signal.SIGKILL
        else:
            # Asked to stop: a clean stop of both, which is a success.
            assert code == 0, launched.stderr()
            assert "stopping core and gateway" in launched.lines


def test_when_core_is_killed_the_launcher_says_so_in_one_line_stops_the_gateway_and_fails(
    tmp_path: Path,
) -> None:
    with launch(tmp_path) as launched:
        os.kill(launched.pids["core"], signal.SIGKILL)

        code = launched.wait()

        assert code != 0
        assert launched.stderr().splitlines() == [
            "error: core exited unexpectedly, killed by SIGKILL; stopping gateway"
        ]
        assert_nothing_left(launched)


def test_under_nohup_a_hangup_leaves_it_running_and_sigterm_still_stops_both(
    tmp_path: Path,
) -> None:
    with launch(tmp_path, SIGHUP_IGNORED) as launched:
        os.killpg(launched.process.pid, signal.SIGHUP)
        # A launcher that took the hangup as a stop would have begun stopping by now.
        time.sleep(1)
        health = httpx.get(f"http://127.0.0.1:{launched.ports['http']}/healthz", timeout=30)
        assert health.status_code == 200
        assert launched.process.poll() is None
        assert "stopping core and gateway" not in launched.lines

        launched.process.send_signal(signal.SIGTERM)

        assert launched.wait() == 0
        assert_nothing_left(launched)


@pytest.mark.parametrize("module", ["core", "gateway"])
def test_a_child_whose_launcher_ended_before_it_started_does_not_start(
    tmp_path: Path, module: str
) -> None:
    """The parent-death signal is set only once the child runs: a launcher that died
    before then is caught by its pid, which is no longer the child's parent."""
    ended = subprocess.Popen(["true"])
    ended.wait()
    port = free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith("VATS_")}
    env |= {
        LAUNCHER_PID: str(ended.pid),
        "VATS_GRPC_ADDR": f"127.0.0.1:{port}",
        "VATS_HTTP_ADDR": f"127.0.0.1:{port}",
        "VATS_METRICS_ADDR": "off",
        "VATS_SERVICE_TOKEN": "demo-service",
        "VATS_DATA_DIR": str(tmp_path / "data"),
    }

    done = subprocess.run(
        [PYTHON, "-m", module],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=STOP_WITHIN,
        check=False,
    )

    assert done.returncode == 1
    assert f"the launcher (pid {ended.pid}) has already ended" in done.stderr
    assert can_listen_on(port)
