"""`vats tokens issue --ttl`, the expiry in `vats tokens list`, and `vats audit`, against a
live core."""

from __future__ import annotations

import argparse
import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from tests.cli.cli_support import Vats, fields_of, only_line
from vats_cli.audit import ttl


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30m", 1800), ("12h", 43200), ("30d", 2592000), ("7D", 604800)],
)
def test_a_lifetime_is_a_number_and_a_unit(text: str, seconds: int) -> None:
    assert ttl(text).ToTimedelta() == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["30", "0d", "-5m", "1w", "1.5h", "d"])
def test_anything_else_is_no_lifetime(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        ttl(text)


def test_a_token_issued_with_a_ttl_shows_its_expiry(vats: Vats) -> None:
    before = datetime.now(UTC)
    shown = fields_of(vats.ok("tokens", "issue", "--role", "service", "--ttl", "30d"))
    expires = datetime.strptime(shown["expires"], "%Y-%m-%d %H:%M:%SZ").replace(tzinfo=UTC)
    assert before + timedelta(days=30) - timedelta(seconds=1) <= expires
    assert expires <= datetime.now(UTC) + timedelta(days=30)

    listed = vats.ok("tokens", "list")
    assert re.search(rf"^{shown['token']}\s.*\s{re.escape(shown['expires'])}$", listed, re.M)
    assert re.search(r"^tok_\S+\s+admin\s.*\snever$", listed, re.M), listed
    as_json = vats.json("tokens", "list")["tokens"]
    [token] = [t for t in as_json if t["token_id"] == shown["token"]]
    assert token["expire_time"].startswith(expires.strftime("%Y-%m-%dT%H:%M:%S"))


def test_a_bad_ttl_is_a_usage_error(vats: Vats) -> None:
    result = vats("tokens", "issue", "--role", "service", "--ttl", "30x")
    assert result.returncode == 2
    assert "--ttl" in only_line(result.stderr)


def test_audit_lists_who_issued_and_revoked_a_token(vats: Vats) -> None:
    issued = vats.json("tokens", "issue", "--role", "employee", "--employee", "3")
    token_id = issued["token"]["token_id"]
    vats.ok("tokens", "revoke", token_id)

    table = vats.ok("audit", "--action", "token.revoked")
    row = rf"^\d+\s+\S+ \S+\s+token\.revoked\s+tok_\S+\s+admin\s+-\s+ipv4:\S+\s+{token_id}\s+-$"
    assert re.search(row, table, re.M), table
    entries = vats.json("audit", "--action", "token.issued")["entries"]
    [entry] = [e for e in entries if e["target"] == token_id]
    assert entry["actor"]["role"] == "admin"
    assert entry["details"] == {"role": "employee", "employee_id": "3"}


def test_audit_exports_json_lines_oldest_first(vats: Vats) -> None:
    vats.ok("departments", "upsert", "77", "--name", "Audit desk")
    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    out = vats.ok("audit", "--json-lines", "--since", since)
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["entry_id"] for line in lines] == sorted(line["entry_id"] for line in lines)
    [upsert] = [e for e in lines if e["action"] == "department.upserted" and e["target"] == "77"]
    assert upsert["details"] == {"name": "Audit desk"}
    assert set(upsert) == {"entry_id", "at", "action", "actor", "address", "target", "details"}
    assert upsert["actor"]["role"] == "admin" and upsert["actor"]["employee_id"] is None
    # The export itself is the last entry it shows.
    assert lines[-1]["action"] == "audit.exported"
    assert lines[-1]["details"] == {"since": datetime.fromisoformat(since).isoformat()}


def test_audit_is_for_admins_and_known_actions(vats: Vats) -> None:
    refused = vats("audit", token="demo-anna")
    assert refused.returncode == 1
    assert "permission denied" in only_line(refused.stderr)
    unknown = vats("audit", "--action", "channel.deleted")
    assert unknown.returncode == 1
    assert "action" in only_line(unknown.stderr)
