"""Real SIP phones for tests: baresip processes scripted over ctrl_tcp.

Each phone is one `baresip -f DIR` with a generated config: one account
registering to a registrar on loopback, a WAV file as the microphone, the
call's audio recorded by `sndfile`, and `ctrl_tcp` on a free port. Commands
and events travel as netstrings of JSON on ctrl_tcp's single connection.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import queue
import random
import re
import shutil
import socket
import struct
import subprocess
import threading
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BARESIP = shutil.which("baresip") or "/usr/bin/baresip"
MODULE_PATH = Path("/usr/lib/baresip/modules")
# g711 only: the call runs at 8 kHz mono, the rate the generated microphone WAV has.
SAMPLE_RATE = 8000

_port_lock = threading.Lock()
_ports_taken: set[int] = set()


def _bindable(port: int) -> bool:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def sip_port() -> int:
    """A loopback port for a phone's SIP listener.

    baresip also binds the next port (TLS), so the port and the one after it
    must be free on UDP and TCP, and two phones' ports are kept 10 apart.
    """
    with _port_lock:
        for _ in range(500):
            port = random.randrange(20000, 60000)
            if any(abs(port - taken) < 10 for taken in _ports_taken):
                continue
            if _bindable(port) and _bindable(port + 1):
                _ports_taken.add(port)
                return port
    raise RuntimeError("no free SIP port pair on loopback")


def release_sip_port(port: int) -> None:
    with _port_lock:
        _ports_taken.discard(port)


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_tone(path: Path, seconds: float, frequency: float = 440.0) -> Path:
    """A 16-bit mono WAV at the call's rate: baresip's aufile plays nothing else."""
    frames = int(seconds * SAMPLE_RATE)
    samples = (
        int(8000 * math.sin(2 * math.pi * frequency * n / SAMPLE_RATE)) for n in range(frames)
    )
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(b"".join(struct.pack("<h", s) for s in samples))
    return path


@dataclass
class WavInfo:
    channels: int
    rate: int
    frames: int

    @property
    def seconds(self) -> float:
        return self.frames / self.rate if self.rate else 0.0


def wav_info(data: bytes) -> WavInfo:
    """Reads the RIFF header's fmt and data chunks (sndfile writes plain PCM WAV)."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("not a RIFF/WAVE file")
    pos, channels, rate, block_align, data_size = 12, 0, 0, 0, None
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        body = data[pos + 8 : pos + 8 + size]
        if chunk == b"fmt ":
            channels, rate, _byte_rate, block_align = struct.unpack("<HIIH", body[2:14])
        elif chunk == b"data":
            # A writer killed mid-call leaves the size unset; count what is there.
            data_size = min(size, len(data) - pos - 8)
            break
        pos += 8 + size + (size & 1)
    if not rate or not block_align or data_size is None:
        raise ValueError("WAV without fmt or data chunk")
    return WavInfo(channels=channels, rate=rate, frames=data_size // block_align)


@dataclass
class PhoneEvent:
    type: str
    body: dict[str, Any]
    # time.monotonic() when the event was read off ctrl_tcp.
    at: float = field(default_factory=time.monotonic)

    @property
    def call_id(self) -> str | None:
        value = self.body.get("id")
        return str(value) if value is not None else None

    @property
    def param(self) -> str:
        return str(self.body.get("param", ""))


class PhoneError(RuntimeError):
    pass


class Phone:
    """One baresip user agent with one account on `registrar` (host:port).

    `answermode` is `manual` (answer() picks up) or `auto`. What the phone
    hears on a call is recorded in `record_dir/<user>/`, named by Call-ID
    once the call closes (`recording(call_id)`), and copied to `publish_dir`
    when one is given.
    """

    def __init__(
        self,
        user: str,
        workdir: Path,
        registrar: str,
        record_dir: Path,
        answermode: str = "manual",
        microphone_seconds: float = 30.0,
        publish_dir: Path | None = None,
        sip_trace: bool = bool(os.environ.get("SIP_TRACE")),
    ) -> None:
        self.user = user
        self.registrar = registrar
        self.answermode = answermode
        self.publish_dir = publish_dir
        self.sip_trace = sip_trace
        self.dir = workdir / f"phone-{user}"
        self.record_dir = record_dir / user
        self.sip_port = sip_port()
        self.ctrl_port = free_tcp_port()
        self.microphone = self.dir / "microphone.wav"
        # baresip ends a call when its aufile microphone runs out: this bounds every call.
        self.microphone_seconds = microphone_seconds
        self.process: subprocess.Popen[bytes] | None = None
        self.events: list[PhoneEvent] = []
        self._consumed: set[int] = set()
        self._cond = threading.Condition()
        self._responses: queue.Queue[dict[str, Any]] = queue.Queue()
        self._tokens = itertools.count(1)
        self._command_lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._reader: threading.Thread | None = None
        self._established: set[str] = set()

    @property
    def log_path(self) -> Path:
        return self.dir / "baresip.log"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def uri(self, user: str) -> str:
        """The URI this phone dials to reach `user` through the registrar."""
        return f"sip:{user}@{self.registrar}"

    def _write_config(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.record_dir.mkdir(parents=True, exist_ok=True)
        write_tone(self.microphone, self.microphone_seconds)
        modules = ["g711.so", "aufile.so", "sndfile.so", "aubridge.so"]
        app_modules = ["account.so", "menu.so", "ctrl_tcp.so"]
        config = {
            "poll_method": "epoll",
            # Media stays on loopback too: without this the SDP offers the default route's address.
            "net_interface": "127.0.0.1",
            "sip_listen": f"127.0.0.1:{self.sip_port}",
            "call_local_timeout": "120",
            "call_max_calls": "4",
            "audio_source": f"aufile,{self.microphone}",
            # No sound card: what the phone hears goes nowhere but sndfile's recording.
            "audio_player": "aubridge,speaker",
            "audio_alert": "aubridge,alert",
            "ausrc_format": "s16",
            "auplay_format": "s16",
            "auenc_format": "s16",
            "audec_format": "s16",
            "audio_buffer": "20-160",
            "rtp_ports": "10000-59999",
            "jitter_buffer_delay": "1-10",
            "rtcp_mux": "no",
            "module_path": str(MODULE_PATH),
            "ctrl_tcp_listen": f"127.0.0.1:{self.ctrl_port}",
            "snd_path": str(self.record_dir),
        }
        lines = [f"{key}\t{value}" for key, value in config.items()]
        lines += [f"module\t{m}" for m in modules]
        lines += [f"module_app\t{m}" for m in app_modules]
        (self.dir / "config").write_text("\n".join(lines) + "\n")
        (self.dir / "accounts").write_text(
            f"<sip:{self.user}@{self.registrar}>;regint=60;answermode={self.answermode}\n"
        )
        (self.dir / "contacts").write_text("")

    def start(self, timeout: float = 10, attempts: int = 3) -> Phone:
        for attempt in range(1, attempts + 1):
            if self._launch(timeout):
                break
            exited = self.process is not None and self.process.poll() is not None
            self.stop()
            if not exited or attempt == attempts:
                raise PhoneError(f"phone {self.user} did not start:\n{self.log()}")
            # Most likely a port taken between the check and baresip's bind: take others.
            self.sip_port, self.ctrl_port = sip_port(), free_tcp_port()
        assert self._sock is not None
        self._sock.settimeout(None)
        self._reader = threading.Thread(target=self._read, name=f"phone-{self.user}", daemon=True)
        self._reader.start()
        return self

    def _launch(self, timeout: float) -> bool:
        """Starts baresip; True once its ctrl_tcp port takes a connection."""
        self._write_config()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [BARESIP, "-f", str(self.dir), *(["-s"] if self.sip_trace else [])],
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env={**os.environ, "HOME": str(self.dir)},
            )
        deadline = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            try:
                self._sock = socket.create_connection(("127.0.0.1", self.ctrl_port), timeout=1)
                return True
            except OSError:
                time.sleep(0.05)
        return False

    def _read(self) -> None:
        assert self._sock is not None
        buffer = b""
        while True:
            try:
                chunk = self._sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            while True:
                length, sep, rest = buffer.partition(b":")
                if not sep or not length.isdigit():
                    break
                size = int(length)
                if len(rest) < size + 1:
                    break
                payload, buffer = rest[:size], rest[size + 1 :]
                self._dispatch(json.loads(payload))

    def _dispatch(self, message: dict[str, Any]) -> None:
        if message.get("response"):
            self._responses.put(message)
            return
        if "type" not in message:
            return
        event = PhoneEvent(type=str(message["type"]), body=message)
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()
        if event.type == "CALL_ESTABLISHED" and event.call_id:
            self._established.add(event.call_id)
        elif event.type == "CALL_CLOSED" and event.call_id in self._established:
            # Off the reader thread: the file may take a moment to be finished.
            threading.Thread(
                target=self._file_recording, args=(event.call_id,), daemon=True
            ).start()

    def command(self, name: str, params: str | None = None, timeout: float = 5) -> str:
        """Runs a ctrl_tcp command and returns its output; a refused command raises."""
        if self._sock is None:
            raise PhoneError(f"phone {self.user} is not running")
        with self._command_lock:
            token = f"{self.user}-{next(self._tokens)}"
            message: dict[str, str] = {"command": name, "token": token}
            if params is not None:
                message["params"] = params
            payload = json.dumps(message).encode()
            self._sock.sendall(b"%d:%s," % (len(payload), payload))
            deadline = time.monotonic() + timeout
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise PhoneError(f"phone {self.user}: no reply to {name!r}")
                try:
                    reply = self._responses.get(timeout=remaining)
                except queue.Empty:
                    continue
                if reply.get("token") == token:
                    break
        if not reply.get("ok"):
            raise PhoneError(f"phone {self.user}: {name!r} failed: {reply.get('data')}")
        return str(reply.get("data", ""))

    def wait_for(
        self, event_type: str, timeout: float = 10, call_id: str | None = None
    ) -> PhoneEvent:
        """The oldest event of this type (and call) not yet returned by wait_for."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for index, event in enumerate(self.events):
                    if index in self._consumed or event.type != event_type:
                        continue
                    if call_id is not None and event.call_id != call_id:
                        continue
                    self._consumed.add(index)
                    return event
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.process is not None and self.process.poll() is not None):
                    seen = [e.type for e in self.events]
                    raise PhoneError(
                        f"phone {self.user}: no {event_type} within {timeout} s; saw {seen}"
                    )
                self._cond.wait(min(remaining, 0.5))

    def active_calls(self) -> int:
        listed = re.search(r"Active calls \((\d+)\)", self.command("listcalls"))
        return int(listed.group(1)) if listed else 0

    def forget(self) -> None:
        """Marks every event so far as seen: wait_for looks only at what comes next."""
        with self._cond:
            self._consumed.update(range(len(self.events)))

    def seen(self, event_type: str, call_id: str | None = None) -> list[PhoneEvent]:
        with self._cond:
            return [
                e
                for e in self.events
                if e.type == event_type and (call_id is None or e.call_id == call_id)
            ]

    def registered(self) -> bool:
        """reginfo lists the account with OK once the registrar accepted it."""
        info = self.command("reginfo")
        return any(self.user in line and "OK" in line for line in info.splitlines())

    def wait_registered(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not self.registered():
            if time.monotonic() > deadline:
                raise PhoneError(f"phone {self.user} did not register:\n{self.log()[-3000:]}")
            time.sleep(0.1)

    def dial(self, target: str) -> None:
        """Calls `target`: a user name (through the registrar) or a full SIP URI."""
        self.command("dial", target if target.startswith("sip:") else self.uri(target))

    def answer(self) -> None:
        self.command("accept")

    def hangup(self) -> None:
        """Ends the current call: BYE when talking, CANCEL when calling, 486 when ringing."""
        self.command("hangup")

    def recording(self, call_id: str, timeout: float = 5) -> Path:
        """What this phone heard on the closed call `call_id`, as sndfile wrote it."""
        target = self.record_dir / f"{recording_name(call_id)}.wav"
        deadline = time.monotonic() + timeout
        while not target.exists():
            if time.monotonic() > deadline:
                raise PhoneError(f"phone {self.user}: no recording for {call_id}")
            time.sleep(0.05)
        return target

    def _file_recording(self, call_id: str) -> None:
        """Names the closed call's recording by its Call-ID, and publishes a copy.

        sndfile names its files by the second the audio started
        (dump-<time>-dec.wav, what the phone heard), and a phone has one
        call at a time, so the newest dump at the close is that call's. The
        copy appears in `publish_dir` at once (written aside, then renamed),
        where the connector's relay picks it up by Call-ID.
        """
        dumps = sorted(self.record_dir.glob("dump-*-dec.wav"), key=lambda p: p.stat().st_mtime)
        if not dumps:
            return
        _wait_finished(dumps[-1])
        name = f"{recording_name(call_id)}.wav"
        target = self.record_dir / name
        os.replace(dumps[-1], target)
        for stale in self.record_dir.glob("dump-*-enc.wav"):
            stale.unlink(missing_ok=True)
        if self.publish_dir is not None:
            aside = self.publish_dir / f".{name}.part"
            shutil.copyfile(target, aside)
            os.replace(aside, self.publish_dir / name)

    def stop(self, timeout: float = 5) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
            self._sock = None
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._reader is not None:
            self._reader.join(timeout=2)
        release_sip_port(self.sip_port)


def recording_name(call_id: str) -> str:
    """The file name stem the connector's relay expects for a call (its README, Recordings)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", call_id)


def _wait_finished(path: Path, timeout: float = 3) -> None:
    """Until libsndfile has closed the file: it writes the RIFF size only then."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            head = path.read_bytes()[:8]
            if len(head) == 8 and struct.unpack("<I", head[4:8])[0] + 8 == path.stat().st_size:
                return
        time.sleep(0.05)
