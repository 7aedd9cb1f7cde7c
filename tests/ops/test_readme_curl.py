"""Every curl line in the README runs as written (only the host's port differs) against core
and gateway started like `make run`, from the repository's directory, and gets the status the
README documents: the reply shown in a comment right below a command may start with its HTTP
status (`# 400 {"error": ...}`); a command without one gets 200."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.recordings.formats import AudioFormat, inspect_bytes
from tests.conftest import ROOT, LiveStack

pytestmark = pytest.mark.e2e

README = ROOT / "README.md"
SAMPLE = ROOT / "seed" / "sample-call.wav"
README_HOST = "127.0.0.1:8080"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=.*")
REPLY_STATUS = re.compile(r"#\s*(\d{3})\b")
# Where curl's own output ends and the status this test asks for begins.
MARK = "\n@@status "


@dataclass(frozen=True)
class Example:
    line: int
    command: str
    # The block's variable assignments before the command, e.g. `URL=...`.
    prelude: tuple[str, ...]
    status: int

    @property
    def streams(self) -> bool:
        return "/stream" in self.command


def readme_examples(text: str) -> list[Example]:
    examples = []
    for block in FENCE.finditer(text):
        if block.group(1) not in ("sh", "bash", "shell", ""):
            continue
        first_line = text.count("\n", 0, block.start(2)) + 1
        lines = block.group(2).splitlines()
        prelude: list[str] = []
        i = 0
        while i < len(lines):
            start = i
            command = lines[i]
            while command.endswith("\\") and i + 1 < len(lines):
                i += 1
                command = command[:-1] + " " + lines[i].strip()
            i += 1
            words = shlex.split(command, comments=True)
            if not words:
                continue
            if words[0] == "curl":
                reply = lines[i].strip() if i < len(lines) else ""
                documented = REPLY_STATUS.match(reply)
                status = int(documented.group(1)) if documented else 200
                examples.append(
                    Example(first_line + start, command.strip(), tuple(prelude), status)
                )
            elif words[0] == "export" or (len(words) == 1 and ASSIGNMENT.fullmatch(words[0])):
                prelude.append(command.strip())
    return examples


EXAMPLES = readme_examples(README.read_text(encoding="utf-8"))


def hides_errors(command: str) -> bool:
    words = shlex.split(command, comments=True)
    silent = "--silent" in words or any(re.fullmatch(r"-[A-Za-z]*s[A-Za-z]*", w) for w in words)
    shown = "--show-error" in words or any(re.fullmatch(r"-[A-Za-z]*S[A-Za-z]*", w) for w in words)
    return silent and not shown


def test_the_readme_has_curl_examples_and_none_hides_its_errors() -> None:
    assert len(EXAMPLES) >= 5
    assert [e.line for e in EXAMPLES if hides_errors(e.command)] == []


def test_the_sample_recording_is_what_its_generator_writes_and_core_takes_it(
    tmp_path: Path,
) -> None:
    made = tmp_path / "sample.wav"
    subprocess.run(
        [sys.executable, str(ROOT / "seed" / "make_sample_call.py"), str(made)],
        check=True,
        timeout=30,
    )

    assert made.read_bytes() == SAMPLE.read_bytes()
    info = inspect_bytes(SAMPLE.read_bytes())
    assert info.format is AudioFormat.WAV
    assert info.duration_seconds == pytest.approx(1.0)
    assert info.size < 16 * 1024


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl (.ci/run installs it)")
def test_every_curl_line_of_the_readme_gets_its_documented_status(live_stack: LiveStack) -> None:
    host = live_stack.http_url.removeprefix("http://")
    outcomes = []
    for example in EXAMPLES:
        # Options given right after `curl`, so that the README's own options still win.
        asks = f"curl --write-out {shlex.quote(MARK + '%{http_code}')} "
        asks += "--max-time 3 " if example.streams else "--max-time 60 "
        script = "\n".join([*example.prelude, asks + example.command.removeprefix("curl ")])
        done = subprocess.run(
            ["bash", "-c", script.replace(README_HOST, host)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=90,
        )
        body, _, status = done.stdout.rpartition(MARK)
        # A card stream never ends by itself: curl's --max-time (exit 28) ends it.
        ended = done.returncode == 0 or (example.streams and done.returncode == 28)
        if not ended or status != str(example.status):
            outcomes.append(
                f"README line {example.line}: curl exit {done.returncode}, HTTP {status or '-'} "
                f"(documented {example.status}): {body[:300]!r} {done.stderr[-300:]!r}"
            )
    assert outcomes == []
