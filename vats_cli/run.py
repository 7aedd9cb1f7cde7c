"""`make run`: starts core and gateway for trying vats-bridge out, with the demo seed on the
SQLite store in ./data, prints how to use them, and stops both when it ends (Ctrl-C, SIGTERM,
SIGHUP, even SIGKILL) or when either dies."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from core.app.seed import load_seed
from vats_lifetime import launcher
from vats_lifetime.launcher import DEMO_SEED_WITH_CALLS
from vats_settings import table as t

# How often the launcher looks at its children while waiting.
POLL_SECONDS = 0.2
# What ends the launcher and, through it, core and gateway: Ctrl-C, `kill`, and the hangup a
# closing terminal sends to its foreground process group.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class SetupError(Exception):
    """A setting core and gateway cannot be started with; the message says what to set."""


def run_environment(base: Mapping[str, str]) -> dict[str, str]:
    """The children's environment: the caller's, with the demo defaults where unset."""
    env = dict(base)
    env.setdefault("VATS_SEED", str(DEMO_SEED_WITH_CALLS))
    if not env.get("VATS_SERVICE_TOKEN"):
        env["VATS_SERVICE_TOKEN"] = seed_service_token(env["VATS_SEED"])
    return launcher.stack_environment(env)


def seed_service_token(path: str) -> str:
    """The gateway's token towards core: the seed's service token, when it has exactly one."""
    advice = "set VATS_SERVICE_TOKEN to the service token the gateway should use"
    if not path:
        raise SetupError(f"VATS_SEED is empty, so no seed names the gateway's token; {advice}")
    try:
        seed = load_seed(Path(path))
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


class ForegroundStack(launcher.Stack):
    """Core and gateway tied to this launcher, their output passed through to the terminal,
    each line prefixed with the process's name."""

    def __init__(self, env: Mapping[str, str], out: TextIO, out_lock: threading.Lock) -> None:
        # No log files: the output goes to the terminal.
        super().__init__(Path(env["VATS_DATA_DIR"]), env)
        self._out = out
        self._out_lock = out_lock
        self._pumps: dict[str, threading.Thread] = {}

    def _spawn(self, module: str) -> subprocess.Popen[bytes]:
        process = launcher.spawn(
            launcher.python_module(module), self.env, subprocess.PIPE, tied=True, cwd=None
        )
        pump = threading.Thread(
            target=self._pass_output, args=(module, process), name=f"{module}-output", daemon=True
        )
        pump.start()
        self._pumps[module] = pump
        self.say(f"started {module} (pid {process.pid})")
        return process

    def log(self, module: str) -> str:
        return ""

    def _running(self, module: str) -> bool:
        # Waiting for the gateway ends as soon as core dies, too.
        return self.dead() is None

    def started(self) -> list[str]:
        return [name for name, process in self._processes() if process is not None]

    def dead(self) -> tuple[str, int] | None:
        """The name and exit code of a process that has ended."""
        for name, process in self._processes():
            code = None if process is None else process.poll()
            if code is not None:
                return name, code
        return None

    def _processes(self) -> list[tuple[str, subprocess.Popen[bytes] | None]]:
        return [("core", self.core), ("gateway", self.gateway)]

    def drain(self, *modules: str) -> None:
        """Waits until the output of these processes (all: none named) has been passed on."""
        for name, pump in self._pumps.items():
            if name in modules or not modules:
                pump.join(timeout=5)

    def say(self, text: str) -> None:
        with self._out_lock:
            _write(self._out, text + "\n")

    def _pass_output(self, name: str, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        with process.stdout as stream:
            for raw in stream:
                line = raw.decode("utf-8", errors="replace").rstrip("\n")
                self.say(f"[{name}] {line}")


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
    supervisor_tokens = [
        t["token"] for t in tokens if t.get("role") == "supervisor" and t.get("token")
    ]
    if supervisor_tokens:
        lines.append(f"  Board:        {public}/board  (token: {supervisor_tokens[0]})")
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
        seed = load_seed(Path(path))
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
        self._stack = ForegroundStack(env, out, self._out_lock)

    def request_stop(self, signum: int = 0, frame: FrameType | None = None) -> None:
        self._stop.set()

    def run(self) -> int:
        Path(self._env["VATS_DATA_DIR"]).mkdir(parents=True, exist_ok=True)
        try:
            if not self._start():
                return 1
            self._stack.say(banner(self._env))
            while not self._stop.wait(POLL_SECONDS):
                if self._dead_child():
                    return 1
            self._stack.say("stopping core and gateway")
            return 0
        finally:
            self._stack.stop()
            self._stack.drain()

    def _start(self) -> bool:
        """Starts core, then the gateway, each waited for until it answers."""
        deadline = time.monotonic() + self._start_timeout
        try:
            self._stack.start_core(deadline - time.monotonic(), POLL_SECONDS, self._stop)
            self._stack.start_gateway(deadline - time.monotonic(), POLL_SECONDS, self._stop)
        except launcher.NotStarted as error:
            if error.why == launcher.EXITED:
                self._dead_child()
            elif error.why == launcher.STOPPED:
                self._stack.say("stopped before core and gateway were ready")
            else:
                waiting = "core and gateway" if error.module == "core" else "gateway"
                self._fail(f"{waiting} not ready within {self._start_timeout:g} s")
            return False
        return True

    def _dead_child(self) -> bool:
        dead = self._stack.dead()
        if dead is None:
            return False
        name, code = dead
        # Its last lines first: they may say why.
        self._stack.drain(name)
        text = f"{name} exited unexpectedly, {describe_exit(code)}"
        others = [other for other in self._stack.started() if other != name]
        if others:
            text += f"; stopping {' and '.join(others)}"
        self._fail(text)
        return True

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
