"""Real SIP in front of the bridge: Kamailio with the connector, its relay, baresip phones.

One set per module: the live stack (core and gateway as processes, a fresh
data dir), the relay posting to the demo channel, Kamailio on a free
loopback port, and phones 101, 102, 103 (employees Anna, Boris, Vera) and
9001 (a customer: not mapped on the channel).
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from tests.conftest import ROOT, LiveStack
from tests.e2e.sse import SSEReader, SSEvent

from .phones import BARESIP, MODULE_PATH, Phone, PhoneError, release_sip_port, sip_port

CONNECTOR = ROOT / "connectors" / "kamailio"
KAMAILIO = shutil.which("kamailio") or "/usr/sbin/kamailio"
KAMAILIO_MODULES = Path("/usr/lib/x86_64-linux-gnu/kamailio/modules")
EMPLOYEES = {"101": 1, "102": 2, "103": 3}
CUSTOMER = "9001"
# Calls to this extension ring 101 and 102 at once (parallel forking).
GROUP = "100"
# Short, so that the unanswered-call scenario ends in seconds.
RING_TIMEOUT = 4


def unavailable(reason: str) -> NoReturn:
    """Skips the test; fails it when CI is set, where a missing tool is a broken machine."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so SIP tests may not be skipped)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def sip_tools() -> None:
    if not Path(KAMAILIO).exists():
        unavailable("kamailio is missing (apt-get install kamailio kamailio-utils-modules)")
    if not (KAMAILIO_MODULES / "http_client.so").exists():
        unavailable("kamailio's http_client is missing (apt-get install kamailio-utils-modules)")
    if not Path(BARESIP).exists() or not (MODULE_PATH / "ctrl_tcp.so").exists():
        unavailable("baresip is missing (apt-get install baresip)")
    if not (CONNECTOR / "kamailio.cfg").exists() or not (CONNECTOR / "relay.py").exists():
        pytest.fail("connectors/kamailio/ lacks kamailio.cfg or relay.py")


def _stop(process: subprocess.Popen[bytes] | None, timeout: float = 10) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class Relay:
    """connectors/kamailio/relay.py, posting to the stack's demo channel."""

    def __init__(self, workdir: Path, channel_url: str, recordings_dir: Path) -> None:
        self.workdir = workdir
        self.channel_url = channel_url
        self.recordings_dir = recordings_dir
        self.url = ""
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / "relay.log"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self, timeout: float = 10) -> None:
        self.recordings_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    str(CONNECTOR / "relay.py"),
                    "--listen",
                    "127.0.0.1:0",
                    "--channel-url",
                    self.channel_url,
                    "--recordings-dir",
                    str(self.recordings_dir),
                ],
                stdout=subprocess.PIPE,
                stderr=log,
                env={k: v for k, v in os.environ.items() if not k.startswith("VATS_")},
            )
        assert self.process.stdout is not None
        lines: queue.Queue[bytes] = queue.Queue()
        stdout = self.process.stdout

        def read() -> None:
            for line in iter(stdout.readline, b""):
                lines.put(line)

        # The relay announces its URL on stdout; read on a thread to bound the wait.
        threading.Thread(target=read, daemon=True).start()
        try:
            line = lines.get(timeout=timeout).decode().strip()
        except queue.Empty:
            _stop(self.process)
            raise RuntimeError("relay did not start:\n" + self.log()) from None
        prefix = "vats-relay listening on "
        if not line.startswith(prefix):
            _stop(self.process)
            raise RuntimeError(f"relay said {line!r}:\n{self.log()}")
        self.url = line.removeprefix(prefix).rstrip("/")

    def stop(self) -> None:
        _stop(self.process)
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()


class Kamailio:
    """Kamailio with the connector's kamailio.cfg on a free loopback UDP port."""

    def __init__(self, workdir: Path, relay_url: str) -> None:
        self.workdir = workdir
        self.relay_url = relay_url
        self.port = sip_port()
        self.address = f"127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / "kamailio.log"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def defines(self) -> list[str]:
        values = {
            "VATS_LISTEN": f"udp:{self.address}",
            "VATS_DOMAIN": '"127.0.0.1"',
            "VATS_RELAY_URL": f'"{self.relay_url}/events"',
            "VATS_EMPLOYEES": '"' + ",".join(EMPLOYEES) + '"',
            "VATS_GROUPS": f'"{GROUP}=101,102"',
            "VATS_RING_TIMEOUT": str(RING_TIMEOUT),
        }
        return [arg for name, value in values.items() for arg in ("-A", f"{name}={value}")]

    def start(self, timeout: float = 15) -> None:
        runtime = self.workdir / "kamailio-run"
        runtime.mkdir(parents=True, exist_ok=True)
        config = str(CONNECTOR / "kamailio.cfg")
        check = subprocess.run(
            [KAMAILIO, "-c", "-f", config, "-Y", str(runtime), *self.defines()],
            capture_output=True,
            timeout=30,
        )
        if check.returncode != 0:
            raise RuntimeError("kamailio.cfg does not check:\n" + check.stderr.decode()[-4000:])
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [KAMAILIO, "-DD", "-E", "-f", config, "-Y", str(runtime), *self.defines()],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                # Its own process group, so that stop() can reach the workers it forks.
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not self._listening():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("kamailio did not start:\n" + self.log()[-4000:])
            time.sleep(0.1)

    def _listening(self) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("127.0.0.1", self.port))
            except OSError:
                return True
        return False

    def stop(self) -> None:
        if self.process is not None:
            group = self.process.pid
            _stop(self.process)
            # A worker stuck on a shared-memory lock outlives the main process's SIGTERM.
            deadline = time.monotonic() + 5
            while _group_alive(group) and time.monotonic() < deadline:
                time.sleep(0.1)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        release_sip_port(self.port)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def recordings_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("recordings")


@pytest.fixture(scope="module")
def relay(
    sip_tools: None,
    live_stack: LiveStack,
    tmp_path_factory: pytest.TempPathFactory,
    recordings_dir: Path,
) -> Iterator[Relay]:
    relay = Relay(tmp_path_factory.mktemp("relay"), live_stack.calls_url, recordings_dir)
    relay.start()
    try:
        yield relay
    finally:
        relay.stop()


@pytest.fixture(scope="module")
def kamailio(relay: Relay, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kamailio]:
    server = Kamailio(tmp_path_factory.mktemp("kamailio"), relay.url)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def phones(
    kamailio: Kamailio, tmp_path_factory: pytest.TempPathFactory, recordings_dir: Path
) -> Iterator[dict[str, Phone]]:
    """Registered phones by SIP user: the employees' phones publish their recordings."""
    workdir = tmp_path_factory.mktemp("phones")
    started: dict[str, Phone] = {}
    try:
        for user in [*EMPLOYEES, CUSTOMER]:
            phone = Phone(
                user,
                workdir,
                kamailio.address,
                workdir / "recorded",
                publish_dir=recordings_dir if user in EMPLOYEES else None,
            )
            started[user] = phone.start()
        for phone in started.values():
            phone.wait_registered()
        yield started
    finally:
        for phone in started.values():
            phone.stop()


@pytest.fixture
def idle_phones(phones: dict[str, Phone]) -> Iterator[dict[str, Phone]]:
    """The phones, with no call or event left over from a test that failed halfway."""
    for phone in phones.values():
        phone.forget()
    yield phones
    for phone in phones.values():
        for _ in range(4):
            with contextlib.suppress(PhoneError):
                if not phone.active_calls():
                    break
                phone.hangup()
            time.sleep(0.2)


class TimedSSEReader(SSEReader):
    """SSEReader whose events carry `received_at` (time.monotonic() on arrival)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "events":
            value = _StampingQueue()
        super().__setattr__(name, value)


class _StampingQueue(queue.Queue[SSEvent]):
    def put(self, item: SSEvent, block: bool = True, timeout: float | None = None) -> None:
        item.received_at = time.monotonic()  # type: ignore[attr-defined]
        super().put(item, block, timeout)


def received_at(event: SSEvent) -> float:
    return float(event.received_at)  # type: ignore[attr-defined]


@pytest.fixture
def cards(live_stack: LiveStack) -> Iterator[dict[int, TimedSSEReader]]:
    """Each employee's card stream, opened and drained before the call starts."""
    readers: dict[int, TimedSSEReader] = {}
    try:
        for employee, token in LiveStack.employee_tokens.items():
            reader = TimedSSEReader(
                f"{live_stack.http_url}/api/v2/telephony/cards/stream",
                {"Authorization": f"Bearer {token}"},
            )
            assert reader.status == 200, getattr(reader, "body", "")
            readers[employee] = reader
        for reader in readers.values():
            while not reader.nothing_more(0.3):
                while not reader.events.empty():
                    reader.events.get_nowait()
        yield readers
    finally:
        for reader in readers.values():
            reader.close()
