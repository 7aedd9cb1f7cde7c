"""`vats channels ...` against a live core."""

from __future__ import annotations

import re

from tests.cli.cli_support import PUBLIC_URL, Vats, fields_of


def _demo_channel_id(vats: Vats) -> int:
    channels = vats.json("channels", "list")["channels"]
    return next(c["channel_id"] for c in channels if c["name"] == "+7 495 000-00-00")


def _new_channel(vats: Vats, name: str, key: str = "") -> int:
    args = ["channels", "create", "--name", name, "--department", "1"]
    created = vats.json(*args, *(["--key", key] if key else []))
    return int(created["channel"]["channel_id"])


def test_channels_create_prints_id_key_and_url(vats: Vats) -> None:
    out = vats.ok("channels", "create", "--name", "+7 495 100-00-01", "--department", "2")

    shown = fields_of(out)
    key = shown["key"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{22,}", key), key
    assert shown["url"] == f"{PUBLIC_URL}/api/v2/telephony/calls/{key}"
    listed = vats.json("channels", "list")["channels"]
    assert {"channel_id": int(shown["channel"]), "department_id": 2} in [
        {"channel_id": c["channel_id"], "department_id": c["department_id"]} for c in listed
    ]


def test_channels_create_keeps_a_given_key_and_answers_json(vats: Vats) -> None:
    created = vats.json(
        "channels", "create", "--name", "Given key", "--department", "1", "--key", "given-key-1"
    )

    assert created["key"] == "given-key-1"
    assert created["url"] == f"{PUBLIC_URL}/api/v2/telephony/calls/given-key-1"
    assert created["channel"]["name"] == "Given key"
    assert created["channel"]["enabled"] is True


def test_channels_list_shows_the_seeded_channel_as_a_table(vats: Vats) -> None:
    out = vats.ok("channels", "list")

    header, *rows = out.splitlines()
    assert header.split()[:3] == ["ID", "NAME", "DEPARTMENT"]
    assert any("+7 495 000-00-00" in row and " yes " in row for row in rows)


def test_channels_show_lists_the_pbx_user_mapping(vats: Vats) -> None:
    out = vats.ok("channels", "show", str(_demo_channel_id(vats)))

    assert fields_of(out)["name"] == "+7 495 000-00-00"
    for pbx_user, employee in (("101", 1), ("102", 2), ("103", 3)):
        assert re.search(rf"^{pbx_user}\s+{employee}$", out, re.MULTILINE), out


def test_channels_update_renames_disables_and_enables(vats: Vats) -> None:
    channel_id = str(_new_channel(vats, "Before"))

    updated = vats.json("channels", "update", channel_id, "--name", "After", "--disable")
    assert (updated["channel"]["name"], updated["channel"]["enabled"]) == ("After", False)
    assert vats.json("channels", "show", channel_id)["channel"]["enabled"] is False

    vats.ok("channels", "update", channel_id, "--enable", "--department", "2")
    shown = vats.json("channels", "show", channel_id)["channel"]
    assert (shown["name"], shown["enabled"], shown["department_id"]) == ("After", True, 2)


def test_channels_rotate_key_prints_a_new_key_and_url(vats: Vats) -> None:
    channel_id = str(_new_channel(vats, "Rotating", key="rotating-old-key"))

    out = vats.ok("channels", "rotate-key", channel_id)

    shown = fields_of(out)
    assert shown["key"] not in ("", "rotating-old-key")
    assert shown["url"] == f"{PUBLIC_URL}/api/v2/telephony/calls/{shown['key']}"
    again = vats.json("channels", "rotate-key", channel_id)
    assert again["key"] != shown["key"]


def test_channels_map_and_unmap_a_pbx_user(vats: Vats) -> None:
    channel_id = str(_new_channel(vats, "Mapping"))

    mapped = vats.ok("channels", "map", channel_id, "201", "3")
    assert re.search(r"^201\s+3$", mapped, re.MULTILINE), mapped
    assert vats.json("channels", "show", channel_id)["channel"]["pbx_users"] == {"201": 3}

    vats.ok("channels", "unmap", channel_id, "201")
    assert vats.json("channels", "show", channel_id)["channel"]["pbx_users"] == {}


def test_channels_update_without_a_change_is_a_usage_error(vats: Vats) -> None:
    result = vats("channels", "update", str(_demo_channel_id(vats)))

    assert result.returncode == 2
    assert result.stderr.startswith("error: nothing to change")
    assert len(result.stderr.splitlines()) == 1
