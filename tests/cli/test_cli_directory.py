"""`vats employees|groups|departments|tokens ...` against a live core."""

from __future__ import annotations

import re
from typing import Any

from tests.cli.cli_support import Vats, fields_of, only_line


def _by_id(items: list[dict[str, Any]], key: str, value: int | str) -> dict[str, Any]:
    return next(item for item in items if item[key] == value)


def test_employees_list_shows_the_seeded_employees(vats: Vats) -> None:
    out = vats.ok("employees", "list")

    assert re.search(r"^1\s+Anna Petrova\s+yes$", out, re.MULTILINE), out
    assert re.search(r"^4\s+Gleb Orlov\s+no$", out, re.MULTILINE), out


def test_employees_upsert_sets_and_keeps_the_telephony_flag(vats: Vats) -> None:
    vats.ok("employees", "upsert", "501", "--name", "Dina", "--no-telephony")
    listed = vats.json("employees", "list")["employees"]
    assert _by_id(listed, "employee_id", 501) == {
        "employee_id": 501,
        "name": "Dina",
        "telephony": False,
    }

    vats.ok("employees", "upsert", "501", "--name", "Dina K")
    listed = vats.json("employees", "list")["employees"]
    assert _by_id(listed, "employee_id", 501)["telephony"] is False

    upserted = vats.json("employees", "upsert", "501", "--name", "Dina K", "--telephony")
    assert upserted["employee"]["telephony"] is True


def test_employees_upsert_of_a_new_employee_grants_telephony(vats: Vats) -> None:
    out = vats.ok("employees", "upsert", "502", "--name", "Egor")

    assert re.search(r"^502\s+Egor\s+yes$", out, re.MULTILINE), out


def test_groups_upsert_sets_members_and_keeps_them_when_omitted(vats: Vats) -> None:
    out = vats.ok("groups", "upsert", "601", "--name", "Night shift", "--members", "1,3")
    assert re.search(r"^601\s+Night shift\s+1,3$", out, re.MULTILINE), out

    vats.ok("groups", "upsert", "601", "--name", "Night")
    group = _by_id(vats.json("groups", "list")["groups"], "group_id", 601)
    assert (group["name"], group["member_employee_ids"]) == ("Night", [1, 3])

    vats.ok("groups", "upsert", "601", "--name", "Night", "--members", "")
    group = _by_id(vats.json("groups", "list")["groups"], "group_id", 601)
    assert group["member_employee_ids"] == []


def test_groups_list_shows_the_seeded_groups(vats: Vats) -> None:
    out = vats.ok("groups", "list")

    assert re.search(r"^10\s+First line\s+1,2$", out, re.MULTILINE), out


def test_groups_upsert_rejects_a_malformed_member_list(vats: Vats) -> None:
    result = vats("groups", "upsert", "602", "--name", "Bad", "--members", "1,two")

    assert result.returncode == 2
    assert "--members" in only_line(result.stderr)


def test_departments_upsert_then_list(vats: Vats) -> None:
    vats.ok("departments", "upsert", "701", "--name", "VIP")

    out = vats.ok("departments", "list")
    assert re.search(r"^701\s+VIP$", out, re.MULTILINE), out
    assert re.search(r"^1\s+Support$", out, re.MULTILINE), out


def test_tokens_issue_prints_the_secret_once_and_list_never_does(vats: Vats) -> None:
    out = vats.ok(
        "tokens", "issue", "--role", "employee", "--employee", "2", "--description", "desk"
    )

    shown = fields_of(out)
    assert shown["role"] == "employee"
    assert shown["employee"] == "2"
    secret = shown["secret"]
    assert len(secret) >= 16
    listed = vats.ok("tokens", "list")
    assert shown["token"] in listed
    assert secret not in listed
    token = _by_id(vats.json("tokens", "list")["tokens"], "token_id", shown["token"])
    assert (token["role"], token["employee_id"], token["description"]) == (
        "employee",
        2,
        "desk",
    )


def test_an_issued_admin_token_works_until_revoked(vats: Vats) -> None:
    issued = vats.json("tokens", "issue", "--role", "admin", "--description", "ops")
    secret, token_id = issued["secret"], issued["token"]["token_id"]
    assert issued["token"]["role"] == "admin"
    assert vats("departments", "list", token=secret).returncode == 0

    out = vats.ok("tokens", "revoke", token_id)
    assert token_id in out

    result = vats("departments", "list", token=secret)
    assert result.returncode == 1
    assert "unauthenticated" in only_line(result.stderr)


def test_an_employee_token_needs_an_employee(vats: Vats) -> None:
    result = vats("tokens", "issue", "--role", "employee")

    assert result.returncode == 2
    assert "--employee" in only_line(result.stderr)


def test_only_employee_tokens_take_an_employee(vats: Vats) -> None:
    result = vats("tokens", "issue", "--role", "service", "--employee", "1")

    assert result.returncode == 2
    assert "--employee" in only_line(result.stderr)
