"""Sampling profiles of running processes with py-spy, summed up as top self/inclusive frames.

py-spy is optional: without it (or without ptrace rights) the profile is skipped with a note.
"""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

# "function (path/to/file.py:123)"
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?):(?P<line>\d+)\)$")


def py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    if local.exists():
        return str(local)
    return shutil.which("py-spy")


def py_spy_version() -> str:
    exe = py_spy()
    if exe is None:
        return "not installed"
    done = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False)
    return done.stdout.strip() or "unknown"


class Recorder:
    """py-spy record on one pid for `seconds`, raw (collapsed) output."""

    def __init__(self, name: str, pid: int, seconds: float, out_dir: Path, rate: int = 200) -> None:
        self.name = name
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        self.out = out_dir / f"profile-{slug}.txt"
        self.proc: subprocess.Popen[bytes] | None = None
        exe = py_spy()
        if exe is None:
            return
        argv = [exe, "record", "-p", str(pid), "-d", str(max(1, round(seconds))), "-r", str(rate)]
        argv += ["-f", "raw", "-o", str(self.out), "--nonblocking"]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def finish(self) -> Profile | None:
        if self.proc is None:
            return None
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None
        if self.proc.returncode != 0 or not self.out.exists():
            print(f"  py-spy on {self.name} failed: {err.decode(errors='replace')[-300:]}")
            return None
        return Profile.parse(self.name, self.out.read_text(errors="replace"))


@dataclass
class Profile:
    name: str
    samples: int = 0
    self_counts: collections.Counter[str] = field(default_factory=collections.Counter)
    total_counts: collections.Counter[str] = field(default_factory=collections.Counter)
    site_counts: collections.Counter[str] = field(default_factory=collections.Counter)

    @classmethod
    def parse(cls, name: str, raw: str) -> Profile:
        profile = cls(name)
        for line in raw.splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            frames = [_short(f) for f in stack.split(";") if f]
            if not frames:
                continue
            profile.samples += count
            profile.self_counts[frames[-1]] += count
            for frame in set(frames):
                profile.total_counts[frame] += count
            profile.site_counts[_call_site(frames)] += count
        return profile

    def top_self(self, n: int = 12) -> list[tuple[str, float]]:
        return [(f, 100 * c / self.samples) for f, c in self.self_counts.most_common(n)]

    def top_own_code(self, n: int = 15) -> list[tuple[str, float]]:
        """Inclusive share of the project's own functions (core/, gateway/), entry points aside."""
        own = [(f, c) for f, c in self.total_counts.most_common() if _is_own(f)]
        return [(f, 100 * c / self.samples) for f, c in own[:n]]

    def top_call_sites(self, n: int = 12) -> list[tuple[str, float]]:
        """Samples by the innermost project function and what it was calling."""
        return [(f, 100 * c / self.samples) for f, c in self.site_counts.most_common(n)]

    def top_files(self, n: int = 10) -> list[tuple[str, float]]:
        """Self time summed per library or project package."""
        by_area: collections.Counter[str] = collections.Counter()
        for frame, count in self.self_counts.items():
            by_area[_area(frame)] += count
        return [(a, 100 * c / self.samples) for a, c in by_area.most_common(n)]


_ENTRY_POINTS = ("/__main__.py:", "core/server.py:main")


def _is_own(frame: str) -> bool:
    return frame.startswith(("core/", "gateway/")) and not any(e in frame for e in _ENTRY_POINTS)


def _call_site(frames: list[str]) -> str:
    own = [i for i, f in enumerate(frames) if _is_own(f)]
    if not own:
        return "(outside project code: event loop, I/O, gRPC) " + frames[-1]
    last = own[-1]
    callee = frames[last + 1] if last + 1 < len(frames) else "(itself)"
    return f"{frames[last]} -> {callee}"


def _short(frame: str) -> str:
    """`func (.../site-packages/pkg/mod.py:12)` -> `pkg/mod.py:func`; project files relative."""
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    path = match["file"]
    for marker in ("site-packages/", "/lib/python3."):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker.startswith("/lib"):
                path = "stdlib/" + path.split("/", 1)[-1]
            break
    else:
        for top in ("core/", "gateway/", "bench/", "telephony/"):
            index = path.find("/" + top)
            if index >= 0:
                path = path[index + 1 :]
                break
    return f"{path}:{match['func']}"


def _area(frame: str) -> str:
    path = frame.split(":", 1)[0]
    head = path.split("/", 1)[0]
    if head in ("core", "gateway"):
        return path
    return head
