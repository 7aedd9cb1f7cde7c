"""Resident memory of processes, sampled from /proc/<pid>/status (VmRSS, VmHWM) on a thread."""

from __future__ import annotations

import threading
from pathlib import Path


def read_status_kb(pid: int) -> dict[str, int]:
    values: dict[str, int] = {}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return values
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    return values


class RssSampler:
    """Samples VmRSS of each pid every `interval` seconds between start() and stop()."""

    def __init__(self, pids: dict[str, int], interval: float = 0.02) -> None:
        self.pids = pids
        self.interval = interval
        self.before = {name: read_status_kb(pid) for name, pid in pids.items()}
        self.peak_rss = {name: s.get("VmRSS", 0) for name, s in self.before.items()}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for name, pid in self.pids.items():
                rss = read_status_kb(pid).get("VmRSS", 0)
                if rss > self.peak_rss[name]:
                    self.peak_rss[name] = rss

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def stop(self) -> dict[str, dict[str, float]]:
        """Per process, in MB: RSS before, peak RSS, growth, and VmHWM before and after."""
        self._stop.set()
        self._thread.join()
        result = {}
        for name, pid in self.pids.items():
            after = read_status_kb(pid)
            before = self.before[name]
            rss0 = before.get("VmRSS", 0)
            result[name] = {
                "rss_before_mb": rss0 / 1024,
                "rss_peak_mb": self.peak_rss[name] / 1024,
                "growth_mb": (self.peak_rss[name] - rss0) / 1024,
                "hwm_before_mb": before.get("VmHWM", 0) / 1024,
                "hwm_after_mb": after.get("VmHWM", 0) / 1024,
            }
        return result
