"""HTTP load with wrk (Debian's package) and the multipart Lua script in bench/lua/pbx.lua."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve().parent / "lua" / "pbx.lua"


def ensure_wrk() -> str | None:
    """The path of wrk; installed with apt-get when missing and running as root."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        print(
            "wrk is missing: install it with `sudo apt-get install -y wrk` (HTTP scenarios skipped)"
        )
        return None
    print("installing wrk with apt-get ...")
    if _apt("install", "-y", "wrk") != 0:
        _apt("update")
        _apt("install", "-y", "wrk")
    found = shutil.which("wrk")
    if not found:
        print("wrk could not be installed: `apt-get install -y wrk` (HTTP scenarios skipped)")
    return found


def _apt(*args: str) -> int:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    done = subprocess.run(
        ["apt-get", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        check=False,
    )
    return done.returncode


def wrk_version(exe: str | None) -> str:
    if exe is None:
        return "not installed"
    done = subprocess.run([exe, "-v"], capture_output=True, text=True, check=False)
    first = (done.stdout or done.stderr).strip().splitlines()
    return first[0] if first else "unknown"


def run_wrk(
    exe: str,
    url: str,
    *,
    mode: str,
    prefix: str,
    counts_file: Path,
    connections: int,
    duration: float,
    threads: int = 1,
) -> dict[str, Any]:
    """One wrk run of the PBX script; returns req/s, p50/p99 (ms) and the error counts."""
    argv = [exe, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s"]
    # Requests in flight when wrk stops may never be created: updates leave them out.
    margin = 2 * connections // threads
    argv += ["--timeout", "10s", "-s", str(SCRIPT), url, "--", mode, prefix, str(counts_file)]
    argv.append(str(margin))
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("BENCHJSON "):
            raw = json.loads(line.removeprefix("BENCHJSON "))
            break
    else:
        raise RuntimeError(f"wrk failed (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")
    seconds = raw["duration_us"] / 1e6
    socket_errors = raw["connect"] + raw["read"] + raw["write"] + raw["timeout"]
    return {
        "n": raw["requests"],
        "seconds": seconds,
        "rps": raw["requests"] / seconds if seconds else 0.0,
        "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
        "errors": raw["status"] + socket_errors,
        "non_2xx": raw["status"],
        "repeated": raw["repeated"],
    }
