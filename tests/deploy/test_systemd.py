"""The shipped systemd units (deploy/systemd/): systemd-analyze verify accepts them as
installed, the settings the operations guide promises are in them, their environment file
names every setting, and core and gateway serve under the units' seccomp sandbox."""

from __future__ import annotations

import ctypes.util
import inspect
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from core.server import Core
from gateway.config import Config
from tests.conftest import DEMO_SEED, ROOT, LiveStack, free_port
from tests.e2e.sse import SSEReader
from tests.ops.test_settings_table import readme_defaults

from .conftest import unavailable
from .systemd_sandbox import read_unit

pytestmark = pytest.mark.deploy

UNITS_DIR = ROOT / "deploy" / "systemd"
ENV_EXAMPLE = UNITS_DIR / "vats.env.example"
SANDBOX = Path(__file__).with_name("systemd_sandbox.py")
CORE_UNIT = "vats-core.service"
GATEWAY_UNIT = "vats-gateway.service"
# The install layout the README documents; tests put a real install in its place.
PREFIX = "/opt/vats-bridge"
STATE_DIR = "/var/lib/vats-bridge"
ENV_FILE = "/etc/vats-bridge/vats.env"
SEED_CREDENTIAL = "seed.json:/etc/vats-bridge/seed.json"
SANDBOXING = {
    "DynamicUser": "yes",
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
    "RestrictNamespaces": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "SystemCallArchitectures": "native",
    "CapabilityBoundingSet": "",
}


@pytest.fixture(scope="module")
def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        unavailable("systemd-analyze is missing (apt-get install systemd)")
    return path


def settings(unit: str, section: str = "Service") -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for key, value in read_unit(UNITS_DIR / unit).get(section, []):
        found.setdefault(key, []).append(value)
    return found


def one(found: dict[str, list[str]], key: str) -> str:
    values = found.get(key, [])
    assert len(values) == 1, f"{key}= should be set once, is {values}"
    return values[0]


def seconds(value: str) -> float:
    """A systemd time span such as `30s`, `1min 30s` or `90` (seconds)."""
    units = {"": 1, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value)
    assert parts, value
    return sum(float(number) * units[unit] for number, unit in parts)


def install_prefix(tmp_path: Path) -> Path:
    """An install at the documented layout: PREFIX/.venv is this test run's virtualenv."""
    prefix = tmp_path / "vats-bridge"
    prefix.mkdir()
    (prefix / ".venv").symlink_to(sys.prefix, target_is_directory=True)
    return prefix


def render(target: Path, prefix: str, edit: dict[str, str] | None = None) -> list[Path]:
    """The shipped units with the install prefix moved to `prefix` (and each `edit`
    replacement made), written to `target` as unit files."""
    target.mkdir(parents=True, exist_ok=True)
    rendered = []
    for name in (CORE_UNIT, GATEWAY_UNIT):
        text = (UNITS_DIR / name).read_text(encoding="utf-8")
        assert f"ExecStart={PREFIX}/" in text, f"{name} no longer runs from {PREFIX}"
        text = text.replace(PREFIX, prefix)
        for old, new in (edit or {}).items():
            if old in text:
                text = text.replace(old, new)
        (target / name).write_text(text, encoding="utf-8")
        rendered.append(target / name)
    return rendered


def verify(systemd_analyze: str, units: list[Path]) -> str:
    """What `systemd-analyze verify` has to say about the units: nothing when they are
    sound. It only warns (exit code 0) about unknown settings and bad values."""
    result = subprocess.run(
        [systemd_analyze, "verify", "--man=no", "--generators=no", *map(str, units)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SYSTEMD_LOG_COLOR": "0"},
    )
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0 and not output:
        output = f"exit code {result.returncode}"
    return output


def test_units_pass_systemd_analyze_verify(systemd_analyze: str, tmp_path: Path) -> None:
    prefix = install_prefix(tmp_path)
    for script in ("vats-core", "vats-gateway"):
        assert (prefix / ".venv" / "bin" / script).exists(), (
            f"{script} is not installed in {sys.prefix}: reinstall the project (make install)"
        )
    units = render(tmp_path / "units", str(prefix))
    assert verify(systemd_analyze, units) == ""


@pytest.mark.parametrize(
    ("edit", "reported"),
    [
        ({"Restart=on-failure": "Restart=on-failure\nRestartOnFullMoon=yes"}, "RestartOnFullMoon"),
        ({"ProtectSystem=strict": "ProtectSystem=everything"}, "everything"),
        ({"/.venv/bin/vats-core": "/.venv/bin/vats-cor"}, "vats-cor"),
    ],
    ids=["unknown setting", "bad value", "missing program"],
)
def test_verify_reports_a_broken_unit(
    systemd_analyze: str, tmp_path: Path, edit: dict[str, str], reported: str
) -> None:
    """The check above would catch a broken unit: each of these is reported."""
    units = render(tmp_path / "units", str(install_prefix(tmp_path)), edit)
    output = verify(systemd_analyze, units)
    assert reported in output, output


def test_verify_checks_the_programs_exist(systemd_analyze: str, tmp_path: Path) -> None:
    """Units pointing at an install that is not there are reported, so the passing check
    did look at the real programs."""
    missing = tmp_path / "not-installed"
    output = verify(systemd_analyze, render(tmp_path / "units", str(missing)))
    for script in ("vats-core", "vats-gateway"):
        assert f"{missing}/.venv/bin/{script}" in output, output


def test_core_unit_settings() -> None:
    service = settings(CORE_UNIT)
    assert one(service, "ExecStart") == f"{PREFIX}/.venv/bin/vats-core"
    assert one(service, "StateDirectory") == "vats-bridge"
    assert f"VATS_DATA_DIR={STATE_DIR}" in service["Environment"]
    assert one(service, "LoadCredential") == SEED_CREDENTIAL
    assert "VATS_SEED=%d/seed.json" in service["Environment"]
    assert one(service, "EnvironmentFile") == ENV_FILE
    assert one(service, "Restart") == "on-failure"
    assert one(service, "KillSignal") == "SIGTERM"
    # The graceful stop must fit in before systemd sends SIGKILL.
    grace = inspect.signature(Core.stop).parameters["grace"].default
    assert seconds(one(service, "TimeoutStopSec")) >= grace + 10


def test_gateway_unit_settings() -> None:
    unit, service = settings(GATEWAY_UNIT, "Unit"), settings(GATEWAY_UNIT)
    assert CORE_UNIT in " ".join(unit["After"]).split()
    assert CORE_UNIT in " ".join(unit.get("Wants", []) + unit.get("Requires", [])).split()
    assert one(service, "ExecStart") == f"{PREFIX}/.venv/bin/vats-gateway"
    assert one(service, "EnvironmentFile") == ENV_FILE
    assert "StateDirectory" not in service, "the gateway keeps no state"
    assert one(service, "Restart") == "on-failure"
    assert one(service, "KillSignal") == "SIGTERM"
    grace = Config({}).shutdown_grace
    assert seconds(one(service, "TimeoutStopSec")) >= grace + 10


@pytest.mark.parametrize("unit", [CORE_UNIT, GATEWAY_UNIT])
def test_units_are_sandboxed(unit: str) -> None:
    service = settings(unit)
    for key, value in SANDBOXING.items():
        assert one(service, key) == value, key
    families = one(service, "RestrictAddressFamilies").split()
    assert sorted(families) == ["AF_INET", "AF_INET6", "AF_UNIX"]
    assert service["SystemCallFilter"][0] == "@system-service"
    assert settings(unit, "Install")["WantedBy"] == ["multi-user.target"]


def test_exec_start_runs_the_console_scripts() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "scripts"
    ]
    assert scripts["vats-core"] == "core.server:main"
    assert scripts["vats-gateway"] == "gateway.__main__:main"


def readme_settings() -> set[str]:
    """The VATS_ variables of the README's configuration table."""
    return set(readme_defaults())


def env_file(path: Path) -> dict[str, str]:
    """KEY=value lines as systemd's EnvironmentFile= reads them (no quoting used here)."""
    found = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";")):
            key, sep, value = line.partition("=")
            assert sep and re.fullmatch(r"[A-Z_][A-Z0-9_]*", key), line
            found[key] = value
    return found


def test_env_example_names_every_setting() -> None:
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    documented = readme_settings()
    assert {"VATS_HTTP_ADDR", "VATS_DATA_DIR", "VATS_SERVICE_TOKEN"} <= documented
    named = set(re.findall(r"VATS_[A-Z_]+", text))
    assert documented - named == set(), "settings missing from the example"
    assert named - documented == set(), "the example names settings the README does not"
    active = env_file(ENV_EXAMPLE)
    # The unit sets these from its state directory and credential; the file would override.
    assert "VATS_DATA_DIR" not in active
    assert "VATS_SEED" not in active
    # Every value the example sets is one the processes accept.
    Config(active)
    assert "VATS_SERVICE_TOKEN" in active


def unit_environment(unit: str, state_dir: Path, credentials: Path) -> dict[str, str]:
    """The environment systemd gives the unit's process: its Environment= lines (with %d,
    the credentials directory), then the environment file, which overrides them."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    for assignment in settings(unit).get("Environment", []):
        key, _, value = assignment.partition("=")
        env[key] = value.replace("%d", str(credentials)).replace(STATE_DIR, str(state_dir))
    return {**env, **env_file(ENV_EXAMPLE)}


class SandboxedStack(LiveStack):
    """Core and gateway started as their units start them: the units' programs and
    environment (the example file as an operator fills it in), under the units' seccomp
    filters."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        state_dir, credentials = workdir / "state", workdir / "credentials"
        credentials.mkdir()
        shutil.copy(DEMO_SEED, credentials / "seed.json")
        seed = json.loads(DEMO_SEED.read_text(encoding="utf-8"))
        service_token = next(t["token"] for t in seed["tokens"] if t["role"] == "service")
        self.metrics_port = free_port()
        filled_in = {
            "VATS_HTTP_ADDR": f"127.0.0.1:{self.http_port}",
            "VATS_GRPC_ADDR": self.grpc_target,
            "VATS_PUBLIC_URL": self.http_url,
            "VATS_SERVICE_TOKEN": service_token,
            "VATS_METRICS_ADDR": f"127.0.0.1:{self.metrics_port}",
        }
        self.unit_env = {
            module: {**unit_environment(unit, state_dir, credentials), **filled_in}
            for module, unit in (("core", CORE_UNIT), ("gateway", GATEWAY_UNIT))
        }
        self.state_dir = state_dir

    def _spawn(self, module: str) -> subprocess.Popen[bytes]:
        unit = CORE_UNIT if module == "core" else GATEWAY_UNIT
        program = one(settings(unit), "ExecStart").replace(PREFIX + "/.venv", sys.prefix)
        if module == "core":
            # systemd makes the state directory before starting the unit.
            self.state_dir.mkdir(mode=0o700, exist_ok=True)
        with open(self.workdir / f"{module}.log", "ab") as log:
            return subprocess.Popen(
                [sys.executable, str(SANDBOX), str(UNITS_DIR / unit), "--", program],
                cwd="/",
                env=self.unit_env[module],
                stdout=log,
                stderr=log,
            )


@pytest.fixture
def sandboxed(systemd_analyze: str, tmp_path: Path) -> Iterator[SandboxedStack]:
    if ctypes.util.find_library("seccomp") is None:
        unavailable("libseccomp is missing (apt-get install libseccomp2)")
    stack = SandboxedStack(tmp_path)
    try:
        stack.start_core()
        stack.start_gateway()
        yield stack
    finally:
        stack.stop()


def seccomp_filters(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"^Seccomp_filters:\s*(\d+)", status, re.MULTILINE)
    return int(found.group(1)) if found else 0


def test_core_and_gateway_serve_under_the_units_sandbox(sandboxed: SandboxedStack) -> None:
    """MemoryDenyWriteExecute, the system call filter and the address families fit what
    grpc, uvicorn, SQLite and the metrics need: a call with its recording, its card on a
    stream, the signed link, metrics, and a clean stop."""
    stack = sandboxed
    assert stack.core is not None and stack.gateway is not None
    for process in (stack.core, stack.gateway):
        assert seccomp_filters(process.pid) >= 3
    assert httpx.get(stack.http_url + "/readyz", timeout=10).status_code == 200

    reader = SSEReader(
        stack.http_url + "/api/v2/telephony/cards/stream",
        {"Authorization": f"Bearer {stack.employee_tokens[1]}"},
    )
    try:
        assert reader.status == 200
        audio = (ROOT / "seed" / "sample-call.wav").read_bytes()
        reply = httpx.post(
            stack.calls_url,
            data={"action": "create_call", "direction": "incoming", "phone": "+74951234567"},
            files={"audio_record": ("call.wav", audio, "audio/wav")},
            timeout=30,
        )
        assert reply.status_code == 200, reply.text
        call = reply.json()["data"]
        while True:
            event = reader.next(timeout=10)
            if event.event == "show" and event.json["call_id"] == call["call_id"]:
                break
        download = httpx.get(call["audio_record"], timeout=30)
        assert download.status_code == 200
        assert download.content == audio
        metrics = httpx.get(f"http://127.0.0.1:{stack.metrics_port}/metrics", timeout=10)
        assert "vats_core_recordings_stored_total 1.0" in metrics.text
        assert (stack.state_dir / "vats.db").is_file()

        # Stopped by SIGTERM, each ends cleanly in systemd's eyes (status 0, or killed by
        # SIGTERM itself as uvicorn re-raises it), so `systemctl stop` leaves the unit
        # inactive, not failed, and on-failure does not restart it; the bound is the
        # unit's own TimeoutStopSec. The open card stream does not hold the gateway up.
        for process, unit in ((stack.gateway, GATEWAY_UNIT), (stack.core, CORE_UNIT)):
            process.send_signal(signal.SIGTERM)
            status = process.wait(timeout=seconds(one(settings(unit), "TimeoutStopSec")))
            assert status in (0, -signal.SIGTERM), stack.log("core") + stack.log("gateway")
    finally:
        reader.close()
