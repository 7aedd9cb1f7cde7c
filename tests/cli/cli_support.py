"""Helpers of the CLI tests: the `vats` command as a
subprocess, and calls reported the way the gateway reports them."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent import futures
from pathlib import Path
from typing import IO, Any

import grpc

from telephony.v1 import call_pb2, call_service_pb2, call_service_pb2_grpc
from tests.recordings.recording_samples import pcm_wav

PROJECT_DIR = Path(__file__).resolve().parents[2]
DEMO_SEED = PROJECT_DIR / "seed" / "demo.json"
PYTHON = sys.executable
PUBLIC_URL = "http://vats.test"
ADMIN_TOKEN = "demo-admin"
SERVICE_TOKEN = "demo-service"
DEMO_CHANNEL_KEY = "demo-channel-key"
# Starts the rest of its command line with SIGINT ignored, as a shell does for a
# command started with `&` from a script (`make test &`, a CI wrapper) and as
# nohup's callers often do: the disposition survives exec.
SIGINT_IGNORED = [
    PYTHON,
    "-c",
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "os.execv(sys.argv[1], sys.argv[1:])",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_environ() -> dict[str, str]:
    """This process's environment without any vats-bridge setting that could leak in."""
    return {name: value for name, value in os.environ.items() if not name.startswith("VATS_")}


def stop_process(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def process_is_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


class Vats:
    """Runs `python -m vats_cli` against one core, as an administrator would."""

    def __init__(self, target: str) -> None:
        self.target = target

    def env(self, token: str | None = ADMIN_TOKEN) -> dict[str, str]:
        env = {**clean_environ(), "VATS_CORE_TARGET": self.target}
        if token is not None:
            env["VATS_ADMIN_TOKEN"] = token
        return env

    def __call__(
        self, *args: str, token: str | None = ADMIN_TOKEN
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PYTHON, "-m", "vats_cli", *args],
            cwd=PROJECT_DIR,
            env=self.env(token),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def json(self, *args: str, token: str | None = ADMIN_TOKEN) -> Any:
        result = self("--json", *args, token=token)
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        return json.loads(result.stdout)

    def ok(self, *args: str, token: str | None = ADMIN_TOKEN) -> str:
        result = self(*args, token=token)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def watch(self, *args: str, sigint_ignored: bool = False) -> LineStream:
        return self.start("cards", "watch", *args, sigint_ignored=sigint_ignored)

    def start(self, *args: str, sigint_ignored: bool = False) -> LineStream:
        """`vats ARGS` left running, its output read line by line."""
        wrapper = SIGINT_IGNORED if sigint_ignored else []
        process = subprocess.Popen(
            [*wrapper, PYTHON, "-m", "vats_cli", *args],
            cwd=PROJECT_DIR,
            env=self.env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        return LineStream(process)


class LineStream:
    """A running process whose stdout is read line by line with timeouts."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        assert process.stdout is not None
        self._reader = threading.Thread(target=self._read, args=(process.stdout,), daemon=True)
        self._reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def next_line(self, timeout: float = 20.0) -> str:
        try:
            line = self._queue.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no line within {timeout:g} s; so far: {self.lines!r}") from None
        if line is None:
            raise EOFError("the process closed its output")
        self.lines.append(line)
        return line

    def rest(self, timeout: float = 20.0) -> list[str]:
        """Every line until the process closes its output."""
        lines: list[str] = []
        try:
            while True:
                lines.append(self.next_line(timeout))
        except EOFError:
            return lines

    def wait_for(self, predicate: Callable[[str], bool], timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            line = self.next_line(timeout=max(0.1, deadline - time.monotonic()))
            if predicate(line):
                return line

    def interrupt(self, timeout: float = 20.0) -> tuple[int, str]:
        """Ctrl-C: returns the exit code and what went to stderr."""
        return self.stop(signal.SIGINT, timeout)

    def stop(self, signum: int, timeout: float = 20.0) -> tuple[int, str]:
        """Sends `signum` and waits for the exit: returns the exit code and what went
        to stderr. A process still running at the timeout is killed and the wait
        fails; the pipes are closed either way."""
        assert self.process.stdout is not None and self.process.stderr is not None
        try:
            self.process.send_signal(signum)
            code = self.process.wait(timeout=timeout)
            stderr = self.process.stderr.read()
        finally:
            stop_process(self.process)
            self._reader.join(timeout=5)
            self.process.stdout.close()
            self.process.stderr.close()
        return code, stderr


class Pbx:
    """Reports calls to core the way the gateway does, with the service token."""

    def __init__(self, target: str) -> None:
        self._channel = grpc.insecure_channel(target)
        self._calls = call_service_pb2_grpc.CallServiceStub(self._channel)
        self._metadata = (("authorization", f"Bearer {SERVICE_TOKEN}"),)

    def close(self) -> None:
        self._channel.close()

    def create_call(
        self,
        phone: str,
        user_ids: list[int] | None = None,
        comment: str | None = None,
        direction: call_pb2.Direction = call_pb2.DIRECTION_INCOMING,
        recording_id: str = "",
    ) -> call_pb2.Call:
        request = call_service_pb2.CreateCallRequest(
            channel=call_service_pb2.ChannelRef(channel_key=DEMO_CHANNEL_KEY),
            direction=direction,
            phone=phone,
            user_ids=user_ids or [],
            comment=comment,
            recording_id=recording_id,
        )
        reply = self._calls.CreateCall(request, metadata=self._metadata, timeout=10)
        return reply.call

    def upload_recording(self, data: bytes, file_name: str) -> call_pb2.Recording:
        first = call_service_pb2.UploadRecordRequest(
            metadata=call_service_pb2.UploadRecordRequest.Metadata(
                channel=call_service_pb2.ChannelRef(channel_key=DEMO_CHANNEL_KEY),
                file_name=file_name,
            )
        )
        parts = [first, call_service_pb2.UploadRecordRequest(chunk=data)]
        reply = self._calls.UploadRecord(iter(parts), metadata=self._metadata, timeout=10)
        return reply.recording

    def update_call(
        self, call_id: int, state: call_pb2.Call.State, comment: str | None = None
    ) -> call_pb2.Call:
        request = call_service_pb2.UpdateCallRequest(
            channel=call_service_pb2.ChannelRef(channel_key=DEMO_CHANNEL_KEY),
            call_id=call_id,
            state=state,
            comment=comment,
        )
        reply = self._calls.UpdateCall(request, metadata=self._metadata, timeout=10)
        return reply.call


def wav_bytes(seconds: float = 1.0, rate: int = 8000) -> bytes:
    """A silent mono WAV recording."""
    return pcm_wav(seconds, rate, pattern=b"\x00\x00")


def only_line(text: str) -> str:
    """The single line of `text`; fails when there is not exactly one."""
    lines = text.splitlines()
    assert len(lines) == 1, f"expected one line, got {lines!r}"
    return lines[0]


def fields_of(text: str) -> Mapping[str, str]:
    """`name: value` lines of a key/value block."""
    result: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep and name and not name.startswith(" "):
            result[name.strip()] = value.strip()
    return result


@contextlib.contextmanager
def channel_service_stand_in(list_channels: Callable[[Any, Any], bytes]) -> Iterator[str]:
    """A gRPC server whose ChannelService answers ListChannels with `list_channels`, for
    how `vats` meets a core that is slow or silent: yields its address."""
    handler = grpc.method_handlers_generic_handler(
        "telephony.v1.ChannelService",
        {"ListChannels": grpc.unary_unary_rpc_method_handler(list_channels)},
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)
