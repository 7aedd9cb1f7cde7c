"""CPU time of processes (user + system, all threads), read from /proc/<pid>/stat: what one
request costs each process, beside its ceiling's, whatever the machine's load."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process has used so far (0.0 once it is gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    # The fields after the command name, which is in parentheses and may hold spaces.
    fields = text.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


class CpuMeter:
    """CPU seconds each named process used between start() and stop()."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self._start: dict[str, float] = {}
        self.used: dict[str, float] = {}

    def start(self) -> CpuMeter:
        self._start = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        return self

    def stop(self) -> dict[str, float]:
        self.used = {name: cpu_seconds(pid) - self._start[name] for name, pid in self.pids.items()}
        return self.used

    def per_request_ms(self, requests: int) -> dict[str, float]:
        if not requests:
            return {}
        return {name: 1000 * used / requests for name, used in self.used.items()}


def wait_until_idle(
    pids: Iterable[int], *, busy: float = 0.05, window: float = 0.5, limit: float = 20.0
) -> None:
    """Wait until each process uses less than `busy` of a CPU over `window` seconds, or
    `limit` seconds have passed: what a previous load left them doing (closing thousands
    of streams, collecting their garbage) is not timed as part of the next."""
    pids = list(pids)
    ends = time.monotonic() + limit
    while time.monotonic() < ends:
        before = [cpu_seconds(pid) for pid in pids]
        time.sleep(window)
        used = [cpu_seconds(pid) - b for pid, b in zip(pids, before, strict=True)]
        if all(u < busy * window for u in used):
            return
