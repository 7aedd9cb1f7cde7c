"""A writer in a process of its own, ended with SIGKILL: what it said was committed must
be there when the database is opened again."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def killed_after(script: str, data_dir: Path) -> Iterator[IO[str]]:
    """Run `script` (`python -c`, with `data_dir` as its argument) and yield what it
    prints; when the block ends, SIGKILL it, and check that SIGKILL is what ended it."""
    with subprocess.Popen(
        [sys.executable, "-c", script, str(data_dir)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        try:
            assert child.stdout is not None
            yield child.stdout
            os.kill(child.pid, signal.SIGKILL)
        finally:
            child.kill()
    assert child.returncode == -signal.SIGKILL
