"""`python -m vats_cli.run` (what `make run` starts): core and gateway as real processes."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import httpx
import pytest

from tests.cli.cli_support import (
    DEMO_SEED,
    PROJECT_DIR,
    PYTHON,
    LineStream,
    clean_environ,
    free_port,
    process_is_gone,
    stop_process,
)
from vats_cli.run import SetupError, run_environment

pytestmark = pytest.mark.e2e


class Launched:
    """A running launcher, its output, and the children it reported."""

    def __init__(self, stream: LineStream, http_addr: str) -> None:
        self.stream = stream
        self.http_addr = http_addr
        self.pids: dict[str, int] = {}
        self.banner: list[str] = []

    @property
    def process(self) -> subprocess.Popen[str]:
        return self.stream.process

    def wait_for_banner(self) -> None:
        while True:
            line = self.stream.next_line(timeout=90)
            started = re.fullmatch(r"started (core|gateway) \(pid (\d+)\)", line)
            if started:
                self.pids[started.group(1)] = int(started.group(2))
            if line.startswith("vats-bridge is running"):
                break
        while line := self.stream.next_line(timeout=5).strip():
            self.banner.append(line)
        assert set(self.pids) == {"core", "gateway"}

    def banner_line(self, prefix: str) -> str:
        return next(line for line in self.banner if line.startswith(prefix))


def launcher_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    return {
        **clean_environ(),
        "VATS_GRPC_ADDR": f"127.0.0.1:{free_port()}",
        "VATS_HTTP_ADDR": f"127.0.0.1:{free_port()}",
        "VATS_DATA_DIR": str(tmp_path / "data"),
        **settings,
    }


@contextlib.contextmanager
def launch(tmp_path: Path, **settings: str) -> Iterator[Launched]:
    env = launcher_env(tmp_path, **settings)
    process = subprocess.Popen(
        [PYTHON, "-m", "vats_cli.run"],
        cwd=PROJECT_DIR,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    launched = Launched(LineStream(process), env["VATS_HTTP_ADDR"])
    try:
        launched.wait_for_banner()
        yield launched
    finally:
        stop_process(process)
        for pid in launched.pids.values():
            if not process_is_gone(pid):
                os.kill(pid, signal.SIGKILL)
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def launched(tmp_path: Path) -> Iterator[Launched]:
    with launch(tmp_path) as running:
        yield running


def write_seed(path: Path, tokens: Sequence[Mapping[str, object]]) -> Path:
    """The demo seed with other tokens and another channel key."""
    seed = json.loads(DEMO_SEED.read_text(encoding="utf-8"))
    seed["tokens"] = list(tokens)
    seed["channels"][0]["key"] = "own-channel-key"
    path.write_text(json.dumps(seed), encoding="utf-8")
    return path


def test_the_banner_curl_line_creates_a_call_and_ctrl_c_stops_both(launched: Launched) -> None:
    url = f"http://{launched.http_addr}/api/v2/telephony/calls/demo-channel-key"
    assert launched.banner_line("Channel URL:") == f"Channel URL:  {url}"
    assert launched.banner_line("Agent page:").startswith(
        f"Agent page:   http://{launched.http_addr}/agent"
    )
    assert "demo-anna" in launched.banner_line("Agent page:")
    assert launched.banner_line("Board:") == (
        f"Board:        http://{launched.http_addr}/board  (token: demo-supervisor)"
    )
    assert "VATS_ADMIN_TOKEN=demo-admin" in launched.banner_line("Admin CLI:")

    curl = launched.banner_line("curl ")
    reply = subprocess.run(
        shlex.split(curl), capture_output=True, text=True, timeout=30, check=True
    )
    data = json.loads(reply.stdout)["data"]
    assert isinstance(data["call_id"], int) and isinstance(data["ticket_id"], int)
    assert data["call_status"] == "ringing"

    admin = launched.banner_line("Admin CLI:").removeprefix("Admin CLI:").strip()
    listed = subprocess.run(
        admin, shell=True, cwd=PROJECT_DIR, capture_output=True, text=True, timeout=30
    )
    assert listed.returncode == 0, listed.stderr
    assert "+7 495 000-00-00" in listed.stdout

    launched.process.send_signal(signal.SIGINT)
    assert launched.process.wait(timeout=30) == 0
    assert process_is_gone(launched.pids["core"])
    assert process_is_gone(launched.pids["gateway"])
    assert any(
        line.startswith("[core] ") for line in launched.stream.lines + launched.stream.rest()
    )


def test_a_fresh_start_has_something_in_every_view(launched: Launched) -> None:
    """Recent, Missed and the board have the demo's calls, one with a recording that plays."""
    api = f"http://{launched.http_addr}/api/v2/telephony"
    anna = {"Authorization": "Bearer demo-anna"}
    recent = httpx.get(f"{api}/history", headers=anna, timeout=10).json()["data"]
    assert {c["call_status"] for c in recent} >= {"answered", "missed", "canceled"}
    [recorded] = [c["audio_record"] for c in recent if c["audio_record"]]
    assert httpx.get(recorded, headers={"Range": "bytes=0-99"}, timeout=10).status_code == 206
    assert httpx.get(f"{api}/callbacks", headers=anna, timeout=10).json()["open_count"] > 0
    board = httpx.get(f"{api}/board", headers={"Authorization": "Bearer demo-supervisor"})
    # (Today's counts may be nought just after midnight: the demo's calls are minutes old.)
    assert board.json()["data"]["employees"] and board.json()["data"]["figures"]


def test_when_core_dies_the_gateway_is_stopped_and_run_fails(launched: Launched) -> None:
    os.kill(launched.pids["core"], signal.SIGKILL)

    assert launched.process.wait(timeout=30) != 0
    assert process_is_gone(launched.pids["gateway"])
    assert launched.process.stderr is not None
    assert "core exited" in launched.process.stderr.read()


def test_a_seed_with_one_service_token_gives_the_gateway_that_token(tmp_path: Path) -> None:
    seed = write_seed(
        tmp_path / "seed.json",
        [
            {"token": "own-admin", "role": "admin"},
            {"token": "own-gateway-secret", "role": "service"},
            {"token": "own-anna", "role": "employee", "employee_id": 1},
        ],
    )

    with launch(tmp_path, VATS_SEED=str(seed)) as launched:
        reply = httpx.post(
            f"http://{launched.http_addr}/api/v2/telephony/calls/own-channel-key",
            data={"action": "create_call", "direction": "incoming", "phone": "777777777"},
            timeout=30,
        )

    assert reply.status_code == 200, reply.text
    assert reply.json()["data"]["call_status"] == "ringing"


@pytest.mark.parametrize(
    ("service_tokens", "says"),
    [
        ([], "has no service token"),
        (["own-gateway", "own-crm"], "has 2 service tokens"),
        (None, "cannot read the seed"),
    ],
)
def test_without_exactly_one_service_token_in_the_seed_run_stops_and_says_what_to_set(
    tmp_path: Path, service_tokens: list[str] | None, says: str
) -> None:
    seed = tmp_path / "seed.json"
    if service_tokens is not None:
        tokens = [{"token": token, "role": "service"} for token in service_tokens]
        write_seed(seed, [{"token": "own-admin", "role": "admin"}, *tokens])

    process = subprocess.Popen(
        [PYTHON, "-m", "vats_cli.run"],
        cwd=PROJECT_DIR,
        env=launcher_env(tmp_path, VATS_SEED=str(seed)),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = process.communicate(timeout=60)
    finally:
        # A launcher that got as far as starting core and gateway stops them on SIGTERM.
        stop_process(process)

    assert process.returncode == 1
    (message,) = err.splitlines()
    assert message.startswith("error: ") and says in message and str(seed) in message
    assert "set VATS_SERVICE_TOKEN" in message
    assert "started" not in out
    assert not (tmp_path / "data").exists()


def test_a_service_token_that_is_set_wins_over_the_seed(tmp_path: Path) -> None:
    seed = write_seed(
        tmp_path / "seed.json",
        [{"token": "own-gateway", "role": "service"}, {"token": "own-crm", "role": "service"}],
    )
    env = {"VATS_SEED": str(seed), "VATS_SERVICE_TOKEN": "own-crm"}

    assert run_environment(env)["VATS_SERVICE_TOKEN"] == "own-crm"
    with pytest.raises(SetupError):
        run_environment({**env, "VATS_SERVICE_TOKEN": ""})
