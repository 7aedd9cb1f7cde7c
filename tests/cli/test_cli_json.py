"""`vats ... --json` names statuses, directions, event types, roles and formats as the
HTTP API does (`in-progress`, `incoming`, `show`), never by the proto's enum names."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

from telephony.v1 import call_pb2
from tests.cli.cli_support import Pbx, Vats, wav_bytes

PROTO_ENUM_NAME = re.compile(r"(STATE|DIRECTION|TYPE|ROLE|FORMAT)_[A-Z0-9_]+")


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _assert_no_proto_enum_names(data: Any) -> None:
    leaked = [text for text in _strings(data) if PROTO_ENUM_NAME.fullmatch(text)]
    assert leaked == [], data


def _answered_call_with_recording(pbx: Pbx) -> call_pb2.Call:
    recording = pbx.upload_recording(wav_bytes(), "call.wav")
    phone = "+7916" + str(uuid.uuid4().int)[:7]
    call = pbx.create_call(phone, user_ids=[1], recording_id=recording.recording_id)
    pbx.update_call(call.call_id, call_pb2.Call.STATE_IN_PROGRESS)
    return pbx.update_call(call.call_id, call_pb2.Call.STATE_ANSWERED)


def test_calls_show_json_names_status_direction_history_and_format(vats: Vats, pbx: Pbx) -> None:
    call = _answered_call_with_recording(pbx)

    shown = vats.json("calls", "show", str(call.call_id))

    _assert_no_proto_enum_names(shown)
    answered = shown["call"]
    assert (answered["state"], answered["direction"]) == ("answered", "incoming")
    assert [change["state"] for change in answered["status_history"]] == [
        "ringing",
        "in-progress",
        "answered",
    ]
    assert answered["recording"]["format"] == "wav"
    assert [r["format"] for r in answered["recordings"]] == ["wav"]


def test_calls_list_json_names_status_and_direction(vats: Vats, pbx: Pbx) -> None:
    phone = "+7916" + str(uuid.uuid4().int)[:7]
    outgoing = pbx.create_call(phone, direction=call_pb2.DIRECTION_OUTGOING)
    pbx.update_call(outgoing.call_id, call_pb2.Call.STATE_IN_PROGRESS)

    listed = vats.json("calls", "list", "--phone", phone)

    _assert_no_proto_enum_names(listed)
    [call] = listed["calls"]
    assert (call["state"], call["direction"]) == ("in-progress", "outgoing")
    assert [change["state"] for change in call["status_history"]] == ["ringing", "in-progress"]


def test_cards_watch_json_names_type_status_and_direction(vats: Vats, pbx: Pbx) -> None:
    call = pbx.create_call("+7916" + str(uuid.uuid4().int)[:7], user_ids=[3])
    watch = vats.watch("--employee", "3", "--json")
    try:
        shown = json.loads(watch.wait_for(lambda line: f'"call_id": {call.call_id},' in line))
        pbx.update_call(call.call_id, call_pb2.Call.STATE_BUSY)
        hidden = json.loads(
            watch.wait_for(lambda line: f'"call_id": {call.call_id},' in line and "hide" in line)
        )
    finally:
        code, stderr = watch.interrupt()
    assert (code, stderr) == (0, "")

    _assert_no_proto_enum_names([shown, hidden])
    assert shown["type"] == "show"
    assert (shown["card"]["state"], shown["card"]["direction"]) == ("ringing", "incoming")
    assert (hidden["type"], hidden["reason"], hidden["card"]["state"]) == ("hide", "final", "busy")


def test_tokens_issue_and_list_json_name_the_role(vats: Vats) -> None:
    issued = vats.json("tokens", "issue", "--role", "service", "--description", "json names")

    _assert_no_proto_enum_names(issued)
    assert issued["token"]["role"] == "service"
    listed = vats.json("tokens", "list")
    _assert_no_proto_enum_names(listed)
    roles = {t["token_id"]: t["role"] for t in listed["tokens"]}
    assert roles[issued["token"]["token_id"]] == "service"
    assert {"admin", "service", "employee"} <= set(roles.values())


def test_directory_channel_and_contact_json_has_no_proto_enum_names(vats: Vats) -> None:
    for command in (
        ["channels", "list"],
        ["employees", "list"],
        ["groups", "list"],
        ["departments", "list"],
        ["contacts", "list"],
    ):
        _assert_no_proto_enum_names(vats.json(*command))
