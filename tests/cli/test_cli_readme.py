"""The README's `vats` commands: every one it shows exists and parses as written, and
its admin guide shows every command there is."""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex

import pytest

from tests.cli.cli_support import PROJECT_DIR
from vats_cli.main import build_parser

README = (PROJECT_DIR / "README.md").read_text(encoding="utf-8")
ADMIN_GUIDE_HEADING = "## Admin guide (`vats`)"
# The ways the README starts the CLI.
LAUNCHERS = (["vats"], [".venv/bin/vats"], ["python", "-m", "vats_cli"])
SHELL_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=\S*")


def _code_blocks(text: str) -> list[str]:
    return re.findall(r"^```[^\n]*\n(.*?)^```", text, re.MULTILINE | re.DOTALL)


def _vats_argv(line: str) -> list[str] | None:
    """The arguments of a shell line that runs the CLI, or None for another line."""
    # A command substitution is one word to the CLI: `vats-$(date +%F).db`.
    words = shlex.split(re.sub(r"\$\([^)]*\)", "SUBST", line), comments=True)
    while words and SHELL_ASSIGNMENT.fullmatch(words[0]):
        words.pop(0)
    for launcher in LAUNCHERS:
        if words[: len(launcher)] == launcher:
            return words[len(launcher) :]
    return None


def _shell_lines(block: str) -> list[str]:
    return block.replace("\\\n", " ").splitlines()


def _readme_commands(text: str) -> list[list[str]]:
    found = []
    for block in _code_blocks(text):
        for line in _shell_lines(block):
            argv = _vats_argv(line)
            if argv is not None:
                found.append(argv)
    return found


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _leaf_commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[str]:
    subcommands = _subcommands(parser)
    if not subcommands:
        return [" ".join(path)]
    leaves: list[str] = []
    for name, sub in subcommands.items():
        leaves.extend(_leaf_commands(sub, (*path, name)))
    return leaves


def _command_of(argv: list[str]) -> str | None:
    """The command that `argv` names (`channels show`), or None when there is none."""
    parser: argparse.ArgumentParser = build_parser()
    path: list[str] = []
    words = [word for word in argv if not word.startswith("-")]
    while subcommands := _subcommands(parser):
        if not words or words[0] not in subcommands:
            return None
        path.append(words.pop(0))
        parser = subcommands[path[-1]]
    return " ".join(path)


def _parse_error(argv: list[str]) -> str | None:
    """What the CLI says about `argv` when it is not a valid command line."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            build_parser().parse_args(argv)
        except SystemExit as exit_info:
            return stderr.getvalue().strip() or f"exit {exit_info.code}"
    return None


README_COMMANDS = _readme_commands(README)


def test_the_readme_shows_vats_commands() -> None:
    # Guards the extraction itself: an empty list would pass everything below.
    assert len(README_COMMANDS) >= 10
    assert ["calls", "show", "42"] in README_COMMANDS


@pytest.mark.parametrize("argv", README_COMMANDS, ids=" ".join)
def test_every_command_line_in_the_readme_parses(argv: list[str]) -> None:
    assert _parse_error(argv) is None


def test_every_command_named_inline_in_the_readme_exists() -> None:
    spans = re.findall(r"`((?:vats|python -m vats_cli) [^`]+)`", README)
    assert spans, "no inline vats commands found"
    unknown = [span for span in spans if _command_of(_vats_argv(span) or []) is None]
    assert unknown == []


def test_the_admin_guide_shows_every_command() -> None:
    guide = README.split(ADMIN_GUIDE_HEADING, 1)[1].split("\n## ", 1)[0]
    shown = {_command_of(argv) for argv in _readme_commands(guide)}

    missing = [command for command in _leaf_commands(build_parser()) if command not in shown]

    assert missing == []


def test_a_command_line_that_does_not_exist_is_caught() -> None:
    # The checks above would pass a README of typos if these did not fail.
    assert _parse_error(["channels", "delete", "2"]) is not None
    assert _parse_error(["calls", "show"]) is not None
    assert _command_of(["groups", "remove", "3"]) is None
    assert _vats_argv("VATS_DATA_DIR=./data vats backup x.db  # note") == ["backup", "x.db"]
