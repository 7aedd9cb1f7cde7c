"""`vats tokens issue --ttl`, the expiry in `vats tokens list`, and `vats audit`, against a
live core."""

from __future__ import annotations

import argparse
import io
import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from gateway import audit as http_export
from telephony.v1 import directory_service_pb2 as dr
from tests.cli.cli_support import Vats, fields_of, only_line
from vats_cli import audit as cli_export
from vats_cli.audit import ttl
from vats_cli.commands import tokens_list
from vats_cli.render import Output

# RFC 3339 in UTC to the millisecond, with Z: how the log, its exports and core write times.
RFC3339_MS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


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
    moment = datetime.fromisoformat(since)
    written = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    assert lines[-1]["details"] == {"since": written}
    assert all(re.fullmatch(RFC3339_MS, line["at"]) for line in lines)


@pytest.mark.parametrize(
    ("time", "written"),
    [
        ("2026-11-27T13:18:04.189Z", "2026-11-27T13:18:04.189Z"),
        ("2026-11-27T13:18:04Z", "2026-11-27T13:18:04.000Z"),
        ("2026-11-27T16:18:04.189654321+03:00", "2026-11-27T13:18:04.189Z"),
    ],
)
def test_json_lines_are_the_lines_of_the_http_export(time: str, written: str) -> None:
    entry = dr.AuditEntry(
        entry_id=7,
        action="token.issued",
        actor=dr.AuditActor(token_id="tok_0123456789abcdef", role=dr.ROLE_ADMIN),
        address="203.0.113.7 via ipv4:127.0.0.1:50000",
        target="tok_fedcba9876543210",
        details={"role": "employee", "expires_at": "2026-12-27T13:18:04.189Z"},
    )
    entry.time.FromJsonString(time)
    line = cli_export.entry_json(entry)
    assert line == http_export.entry_json(entry)
    assert line["at"] == written


class _Tokens:
    """Core's answer to ListTokens: the CLI's table of it is what is tested."""

    def __init__(self, *tokens: dr.Token) -> None:
        self.tokens = tokens

    def list_tokens(self, _: dr.ListTokensRequest) -> dr.ListTokensResponse:
        return dr.ListTokensResponse(tokens=self.tokens)


def _token(token_id: str, expires: datetime | None) -> dr.Token:
    token = dr.Token(token_id=token_id, role=dr.ROLE_EMPLOYEE, employee_id=1)
    token.create_time.FromDatetime(datetime(2026, 1, 1, tzinfo=UTC))
    if expires is not None:
        token.expire_time.FromDatetime(expires)
    return token


def test_tokens_list_says_which_tokens_have_expired() -> None:
    now = datetime.now(UTC)
    out = io.StringIO()
    core = _Tokens(
        _token("tok_lasting", None),
        _token("tok_valid", now + timedelta(days=1)),
        _token("tok_expired", now - timedelta(minutes=1)),
    )
    tokens_list(argparse.Namespace(), core, Output(out, as_json=False))  # type: ignore[arg-type]
    rows = {line.split()[0]: line for line in out.getvalue().splitlines()[1:]}
    assert rows["tok_lasting"].endswith(" never")
    assert rows["tok_valid"].endswith("Z")
    past = (now - timedelta(minutes=1)).strftime("%Y-%m-%d %H:%M:%SZ")
    assert rows["tok_expired"].endswith(f" {past} (expired)")


def test_audit_is_for_admins_and_known_actions(vats: Vats) -> None:
    refused = vats("audit", token="demo-anna")
    assert refused.returncode == 1
    assert "permission denied" in only_line(refused.stderr)
    unknown = vats("audit", "--action", "channel.deleted")
    assert unknown.returncode == 1
    assert "action" in only_line(unknown.stderr)
