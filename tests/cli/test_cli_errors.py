"""How `vats` fails: one line on stderr, exit code 1 for failed requests and 2 for bad usage."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.cli.cli_support import Vats, channel_service_stand_in, free_port, only_line
from vats_cli.main import main

LEAF_COMMANDS = [
    "channels create",
    "channels list",
    "channels show",
    "channels update",
    "channels rotate-key",
    "channels map",
    "channels unmap",
    "employees upsert",
    "employees list",
    "groups upsert",
    "groups list",
    "departments upsert",
    "departments list",
    "contacts upsert",
    "contacts list",
    "contacts remove",
    "tokens issue",
    "tokens list",
    "tokens revoke",
    "calls list",
    "calls show",
    "cards watch",
]


@pytest.fixture(scope="module")
def slow_core() -> Iterator[str]:
    """A server that answers ListChannels only after two seconds."""

    def list_channels(request: Any, context: Any) -> bytes:
        time.sleep(2)
        return b""

    with channel_service_stand_in(list_channels) as address:
        yield address


def test_unknown_channel_fails_with_one_line(vats: Vats) -> None:
    result = vats("channels", "show", "777777")

    assert result.returncode == 1
    assert result.stdout == ""
    line = only_line(result.stderr)
    assert line.startswith("error: ")
    assert "not found" in line and "777777" in line


def test_a_wrong_token_is_unauthenticated(vats: Vats) -> None:
    result = vats("channels", "list", token="not-a-token")

    assert result.returncode == 1
    assert only_line(result.stderr).startswith("error: unauthenticated")


def test_a_missing_token_says_how_to_pass_one(vats: Vats) -> None:
    result = vats("channels", "list", token=None)

    assert result.returncode == 1
    line = only_line(result.stderr)
    assert line.startswith("error: unauthenticated")
    assert "VATS_ADMIN_TOKEN" in line


def test_an_employee_token_may_not_administer(vats: Vats) -> None:
    result = vats("employees", "list", token="demo-anna")

    assert result.returncode == 1
    assert only_line(result.stderr).startswith("error: permission denied")


def test_field_errors_name_the_field(vats: Vats) -> None:
    result = vats("channels", "create", "--name", "", "--department", "1")

    assert result.returncode == 1
    line = only_line(result.stderr)
    assert line.startswith("error: invalid request: ")
    assert "name: " in line


def test_options_work_before_and_after_the_command(vats: Vats) -> None:
    before = vats("--target", vats.target, "--token", "demo-admin", "--json", "departments", "list")
    after = vats("departments", "list", "--json", "--token", "demo-admin", "--target", vats.target)

    assert before.returncode == after.returncode == 0
    assert before.stdout == after.stdout
    assert '"departments"' in before.stdout


def test_core_down_fails_with_cannot_reach() -> None:
    target = f"127.0.0.1:{free_port()}"

    result = Vats(target)("channels", "list")

    assert result.returncode == 1
    assert result.stdout == ""
    assert only_line(result.stderr) == f"error: cannot reach core at {target}"


def test_cards_watch_with_core_down_fails_with_cannot_reach() -> None:
    target = f"127.0.0.1:{free_port()}"

    result = Vats(target)("cards", "watch", "--employee", "1")

    assert result.returncode == 1
    assert only_line(result.stderr) == f"error: cannot reach core at {target}"


def test_a_slow_core_fails_at_the_deadline(slow_core: str) -> None:
    result = Vats(slow_core)("channels", "list", "--timeout", "0.5")

    # Had the CLI waited for the answer (two seconds away), it would have succeeded.
    assert result.returncode == 1
    assert only_line(result.stderr) == f"error: core at {slow_core} did not answer within 0.5 s"


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["channels"],
        ["nonsense"],
        ["channels", "show"],
        ["channels", "show", "abc"],
        ["channels", "show", "0"],
        ["channels", "create", "--name", "x"],
        ["channels", "update", "1", "--enable", "--disable"],
        ["tokens", "issue", "--role", "root"],
        ["calls", "list", "--status", "ringing,bogus"],
        ["calls", "list", "--since", "yesterday"],
        ["calls", "list", "--limit", "501"],
        ["channels", "list", "--timeout", "0"],
    ],
)
def test_bad_usage_exits_2_with_one_line(args: list[str]) -> None:
    # Nothing listens there: bad usage must be reported before any request.
    result = Vats(f"127.0.0.1:{free_port()}")(*args)

    assert result.returncode == 2
    assert result.stdout == ""
    assert only_line(result.stderr).startswith("error: ")


@pytest.mark.parametrize("command", LEAF_COMMANDS)
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*command.split(), "--help"])

    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: vats {command} ")
    assert "--json" in out and "--token" in out
