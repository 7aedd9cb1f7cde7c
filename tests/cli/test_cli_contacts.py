"""`vats contacts upsert|list|remove` against a live core."""

from __future__ import annotations

import re
from typing import Any

from telephony.v1 import call_pb2
from tests.cli.cli_support import SERVICE_TOKEN, Pbx, Vats, only_line


def _by_phone(contacts: list[dict[str, Any]], phone: str) -> list[dict[str, Any]]:
    return [c for c in contacts if c["phone"] == phone]


def test_contacts_list_shows_the_seeded_contacts(vats: Vats) -> None:
    out = vats.ok("contacts", "list")

    assert re.search(
        r"^\d+\s+\+74951234567\s+Ivan Smirnov \(OOO Romashka\)\s+\S+ \S+$", out, re.MULTILINE
    ), out
    assert out.splitlines()[0].split() == ["ID", "PHONE", "NAME", "CREATED"]


def test_contacts_upsert_names_a_number_however_it_is_spelt(vats: Vats) -> None:
    out = vats.ok("contacts", "upsert", "--phone", "8 (812) 555-21-21", "--name", "Olga")
    assert re.search(r"^\d+\s+\+78125552121\s+Olga\s", out, re.MULTILINE), out

    renamed = vats.json("contacts", "upsert", "--phone", "+78125552121", "--name", "Olga L")

    contact = renamed["contact"]
    assert (contact["phone"], contact["name"]) == ("+78125552121", "Olga L")
    listed = _by_phone(vats.json("contacts", "list")["contacts"], "+78125552121")
    assert listed == [contact]


def test_a_call_from_a_named_number_shows_the_name(vats: Vats, pbx: Pbx) -> None:
    vats.ok("contacts", "upsert", "--phone", "+7 812 555-31-31", "--name", "Semyon Kotov")

    call = pbx.create_call("88125553131", user_ids=[1])

    assert call.ticket.contact.name == "Semyon Kotov"
    shown = vats.json("calls", "show", str(call.call_id))["call"]
    assert shown["ticket"]["contact"]["name"] == "Semyon Kotov"


def test_contacts_list_gives_every_page_or_the_one_asked_for(vats: Vats) -> None:
    for n in range(3):
        vats.ok("contacts", "upsert", "--phone", f"+7 812 555-40-0{n}", "--name", f"Page {n}")
    everyone = vats.json("contacts", "list")
    assert everyone["next_page_token"] == ""
    ids = [c["contact_id"] for c in everyone["contacts"]]
    assert ids == sorted(ids) and len(ids) >= 4

    first = vats.json("contacts", "list", "--limit", "2")
    assert first["contacts"] == everyone["contacts"][:2]
    second = vats.json("contacts", "list", "--limit", "2", "--page-token", first["next_page_token"])
    assert second["contacts"] == everyone["contacts"][2:4]

    out = vats.ok("contacts", "list", "--limit", "1")
    assert len(out.splitlines()) == 3, out  # header, one contact, the next page's token
    assert out.splitlines()[-1].startswith("more: --page-token ")


def test_contacts_remove_forgets_a_contact_without_calls(vats: Vats) -> None:
    contact = vats.json("contacts", "upsert", "--phone", "+7 812 555-51-51", "--name", "Temp")[
        "contact"
    ]

    out = vats.ok("contacts", "remove", str(contact["contact_id"]))

    assert only_line(out) == f"contact {contact['contact_id']} removed"
    assert _by_phone(vats.json("contacts", "list")["contacts"], "+78125555151") == []
    again = vats("contacts", "remove", str(contact["contact_id"]))
    assert again.returncode == 1
    assert "not found" in only_line(again.stderr)


def test_contacts_remove_refuses_a_contact_with_calls(vats: Vats, pbx: Pbx) -> None:
    call = pbx.create_call("+7 812 555-61-61", direction=call_pb2.DIRECTION_OUTGOING)
    contact_id = call.ticket.contact.contact_id

    result = vats("contacts", "remove", str(contact_id))

    assert result.returncode == 1
    line = only_line(result.stderr)
    assert "has calls" in line and "another name" in line, line
    assert _by_phone(vats.json("contacts", "list")["contacts"], "+78125556161") != []


def test_contacts_upsert_refuses_an_empty_name_or_phone(vats: Vats) -> None:
    no_name = vats("contacts", "upsert", "--phone", "+7 812 555-71-71", "--name", " ")
    no_phone = vats("contacts", "upsert", "--phone", "", "--name", "Nobody")

    assert no_name.returncode == no_phone.returncode == 1
    assert "name: required" in only_line(no_name.stderr)
    assert "phone: required" in only_line(no_phone.stderr)
    assert _by_phone(vats.json("contacts", "list")["contacts"], "+78125557171") == []


def test_contacts_need_an_admin_token(vats: Vats) -> None:
    result = vats("contacts", "list", token=SERVICE_TOKEN)

    assert result.returncode == 1
    assert "permission denied" in only_line(result.stderr)


def test_contacts_usage_errors(vats: Vats) -> None:
    missing = vats("contacts", "upsert", "--phone", "+78125558181")
    bad_id = vats("contacts", "remove", "first")

    assert missing.returncode == bad_id.returncode == 2
    assert "--name" in only_line(missing.stderr)
    assert "first" in only_line(bad_id.stderr)
