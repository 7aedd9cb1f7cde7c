"""`make run`: starts core and gateway for trying vats-bridge out, with the demo seed on the
SQLite store in ./data, prints how to use them, and stops both when it ends (Ctrl-C, SIGTERM,
SIGHUP, even SIGKILL) or when either dies."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from vats_lifetime import LAUNCHER_PID
from vats_settings import table as t

PROJECT_DIR = Path(__file__).resolve().parent.parent
DEMO_SEED = PROJECT_DIR / "seed" / "demo.json"
STOP_GRACE_SECONDS = 10.0
# What ends the launcher and, through it, core and gateway: Ctrl-C, `kill`, and the hangup a
# closing terminal sends to its foreground process group.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class SetupError(Exception):
    """A setting core and gateway cannot be started with; the message says what to set."""


def run_environment(base: Mapping[str, str]) -> dict[str, str]:
    """The children's environment: the caller's, with the demo defaults where unset."""
    env = dict(base)
    env.setdefault("VATS_SEED", str(DEMO_SEED))
    if not env.get("VATS_SERVICE_TOKEN"):
        env["VATS_SERVICE_TOKEN"] = seed_service_token(env["VATS_SEED"])
    # Written out, as the children would take them, for the banner and the readiness checks.
    for setting in (t.DATA_DIR, t.GRPC_ADDR, t.HTTP_ADDR, t.CORE_TARGET, t.PUBLIC_URL):
        env[setting.name] = setting.raw(env) or ""
    # Children's log lines should reach the terminal as they are written.
    env["PYTHONUNBUFFERED"] = "1"
    return env


def seed_service_token(path: str) -> str:
    """The gateway's token towards core: the seed's service token, when it has exactly one."""
    advice = "set VATS_SERVICE_TOKEN to the service token the gateway should use"
    if not path:
        raise SetupError(f"VATS_SEED is empty, so no seed names the gateway's token; {advice}")
    try:
        seed = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise SetupError(
            f"cannot read the seed {path} ({error.strerror or error}) to find the gateway's "
            f"service token; fix VATS_SEED or {advice}"
        ) from None
    except ValueError as error:
        raise SetupError(
            f"cannot read the seed {path} (not JSON: {error}) to find the gateway's service "
            f"token; fix the file or {advice}"
        ) from None
    tokens = seed.get("tokens") if isinstance(seed, dict) else None
    found = {
        t["token"]
        for t in (tokens if isinstance(tokens, list) else [])
        if isinstance(t, dict)
        and t.get("role") == "service"
        and isinstance(t.get("token"), str)
        and t["token"]
    }
    if len(found) == 1:
        return found.pop()
    if not found:
        raise SetupError(
            f"the seed {path} has no service token for the gateway; add one to its tokens "
            f"or {advice}"
        )
    raise SetupError(f"the seed {path} has {len(found)} service tokens; {advice}")


class Child:
    """One child process whose output is passed through, each line prefixed with its name."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        out: TextIO,
        out_lock: threading.Lock,
    ) -> None:
        self.name = name
        self._argv = list(argv)
        self._env = dict(env)
        self._out = out
        self._out_lock = out_lock
        self._process: subprocess.Popen[bytes] | None = None
        self._pump: threading.Thread | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def start(self) -> None:
        """Starts the child; call it from the main thread, which lives as long as the launcher.

        The child ends with the launcher even when the launcher is killed outright: asked
        through its environment, it sets a parent-death signal on itself
        (`vats_lifetime.end_with_launcher`), which Linux sends when the thread that started it
        ends. Not in a `preexec_fn`: that runs between fork and exec in a copy of this process
        whose other threads (the output pumps) vanished holding whatever locks they held, and
        can hang there.
        """
        self._process = subprocess.Popen(
            self._argv,
            env={**self._env, LAUNCHER_PID: str(os.getpid())},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # Its own process group: a Ctrl-C in the terminal reaches only this launcher,
            # which then stops the children in order.
            process_group=0,
        )
        self._pump = threading.Thread(
            target=self._pass_output, name=f"{self.name}-output", daemon=True
        )
        self._pump.start()

    def exit_code(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def stop(self) -> None:
        """SIGTERM, a grace period, then SIGKILL; waits until the output is drained."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.drain()

    def drain(self) -> None:
        if self._pump is not None:
            self._pump.join(timeout=5)

    def _pass_output(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        with self._process.stdout as stream:
            for raw in stream:
                line = raw.decode("utf-8", errors="replace").rstrip("\n")
                with self._out_lock:
                    _write(self._out, f"[{self.name}] {line}\n")


def _write(out: TextIO, text: str) -> None:
    # A closed terminal fails every write (EIO) once it has sent its hangup; the line is lost,
    # but the output is still drained, so that the child never blocks on a full pipe.
    with contextlib.suppress(OSError, ValueError):
        out.write(text)
        out.flush()


def describe_exit(code: int) -> str:
    """How a child ended, from its `returncode`: negative when a signal killed it."""
    if code >= 0:
        return f"with code {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    return f"killed by {name}"


def local_address(addr: str) -> str:
    """An address to reach a server that listens on `addr`, which may be a wildcard."""
    host, _, port = addr.rpartition(":")
    if host in ("", "0.0.0.0"):
        return f"127.0.0.1:{port}"
    if host in ("[::]", "::"):
        return f"[::1]:{port}"
    return addr


def core_is_ready(grpc_addr: str) -> bool:
    with grpc.insecure_channel(local_address(grpc_addr)) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
        except grpc.RpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def gateway_is_ready(http_addr: str) -> bool:
    try:
        with urllib.request.urlopen(
            f"http://{local_address(http_addr)}/healthz", timeout=1.0
        ) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def banner(env: Mapping[str, str]) -> str:
    """How to use what just started, with the channel key and tokens from the seed."""
    seed = _read_seed(env.get("VATS_SEED", ""))
    public = t.PUBLIC_URL.read(env)
    lines = ["", "vats-bridge is running. Ctrl-C stops core and gateway."]
    keys = [c["key"] for c in seed.get("channels", []) if c.get("key")]
    if keys:
        url = f"{public}/api/v2/telephony/calls/{keys[0]}"
        form = (
            "action=create_call",
            "direction=outgoing",
            "phone=777777777",
            "call_status=ringing",
            "comment=start",
        )
        curl = f"curl --location --request POST {_quote(url)} " + " ".join(
            f"--form {_quote(field)}" for field in form
        )
        lines += [
            f"  Channel URL:  {url}",
            "  Report a call as the PBX would:",
            f"    {curl}",
        ]
    else:
        lines.append("  No channel in the seed: create one with `vats channels create`.")
    tokens = seed.get("tokens", [])
    employee_tokens = [t["token"] for t in tokens if t.get("role") == "employee" and t.get("token")]
    agent = f"  Agent page:   {public}/agent"
    lines.append(agent + (f"  (token: {employee_tokens[0]})" if employee_tokens else ""))
    admin_tokens = [t["token"] for t in tokens if t.get("role") == "admin" and t.get("token")]
    if admin_tokens:
        target = env["VATS_CORE_TARGET"]
        lines.append(
            f"  Admin CLI:    VATS_CORE_TARGET={target} VATS_ADMIN_TOKEN={admin_tokens[0]} "
            f"{_cli_command()} channels list"
        )
    lines.append(f"  gRPC:         {env['VATS_GRPC_ADDR']} (telephony.v1, reflection on)")
    if env.get("VATS_MONGODB_URI"):
        lines.append("  Data:         MongoDB (VATS_MONGODB_URI)")
    else:
        lines.append(f"  Data:         {env['VATS_DATA_DIR']} (kept across restarts)")
    lines.append("")
    return "\n".join(lines)


def _quote(text: str) -> str:
    """Single-quotes `text` for a POSIX shell, as the original's examples are written."""
    return "'" + text.replace("'", "'\"'\"'") + "'"


def _read_seed(path: str) -> dict[str, Any]:
    if not path:
        return {}
    try:
        seed = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return seed if isinstance(seed, dict) else {}


def _cli_command() -> str:
    script = Path(sys.executable).parent / "vats"
    if not script.exists():
        return f"{sys.executable} -m vats_cli"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


class Launcher:
    """Runs core and gateway in the foreground until told to stop or until one dies."""

    def __init__(
        self,
        env: Mapping[str, str],
        out: TextIO,
        err: TextIO,
        start_timeout: float,
    ) -> None:
        self._env = dict(env)
        self._out = out
        self._err = err
        self._start_timeout = start_timeout
        self._out_lock = threading.Lock()
        self._stop = threading.Event()
        python = sys.executable
        self._children = [
            Child("core", [python, "-m", "core"], env, out, self._out_lock),
            Child("gateway", [python, "-m", "gateway"], env, out, self._out_lock),
        ]

    def request_stop(self, signum: int = 0, frame: FrameType | None = None) -> None:
        self._stop.set()

    def run(self) -> int:
        Path(self._env["VATS_DATA_DIR"]).mkdir(parents=True, exist_ok=True)
        try:
            for child in self._children:
                child.start()
                self._say(f"started {child.name} (pid {child.pid})")
            if not self._wait_until_ready():
                return 1
            self._say(banner(self._env))
            while not self._stop.wait(0.2):
                if self._dead_child() is not None:
                    return 1
            self._say("stopping core and gateway")
            return 0
        finally:
            # The gateway first, so that it does not report a core that is going away.
            for child in reversed(self._children):
                child.stop()

    def _wait_until_ready(self) -> bool:
        deadline = time.monotonic() + self._start_timeout
        waiting = [child.name for child in self._children]
        while waiting:
            if self._dead_child() is not None:
                return False
            if self._stop.is_set():
                self._say("stopped before core and gateway were ready")
                return False
            if time.monotonic() > deadline:
                self._fail(f"{' and '.join(waiting)} not ready within {self._start_timeout:g} s")
                return False
            # One at a time, in order: the gateway cannot be healthy before core is.
            if self._is_ready(waiting[0]):
                waiting.pop(0)
            else:
                self._stop.wait(0.2)
        return True

    def _is_ready(self, name: str) -> bool:
        if name == "core":
            return core_is_ready(self._env["VATS_GRPC_ADDR"])
        return gateway_is_ready(self._env["VATS_HTTP_ADDR"])

    def _dead_child(self) -> Child | None:
        for child in self._children:
            code = child.exit_code()
            if code is not None:
                child.drain()
                others = [c.name for c in self._children if c is not child]
                self._fail(
                    f"{child.name} exited unexpectedly, {describe_exit(code)}; "
                    f"stopping {' and '.join(others)}"
                )
                return child
        return None

    def _say(self, text: str) -> None:
        with self._out_lock:
            _write(self._out, text + "\n")

    def _fail(self, text: str) -> None:
        with self._out_lock:
            _write(self._out, "")
            _write(self._err, f"error: {text}\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vats_cli.run",
        description=(
            "Start core and gateway in the foreground (demo seed; data in VATS_DATA_DIR, "
            "./data by default, kept across restarts; MongoDB when VATS_MONGODB_URI is set); "
            "Ctrl-C, SIGTERM or SIGHUP stops both, and so does killing this launcher."
        ),
    )
    parser.add_argument(
        "--start-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long to wait for both to be ready [60]",
    )
    args = parser.parse_args(argv)
    try:
        env = run_environment(os.environ)
    except SetupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    launcher = Launcher(env, sys.stdout, sys.stderr, args.start_timeout)
    for signum in STOP_SIGNALS:
        # Started under nohup, it keeps nohup's promise to run on once the terminal closes.
        if signum == signal.SIGHUP and signal.getsignal(signum) == signal.SIG_IGN:
            continue
        signal.signal(signum, launcher.request_stop)
    return launcher.run()


if __name__ == "__main__":
    raise SystemExit(main())
