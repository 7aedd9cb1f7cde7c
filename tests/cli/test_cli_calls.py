"""`vats calls ...` and `vats cards watch` against a live core."""

from __future__ import annotations

import json
import re
import uuid

from telephony.v1 import call_pb2
from tests.cli.cli_support import SERVICE_TOKEN, Pbx, Vats, fields_of, only_line


def _unique_phone() -> str:
    return "+7916" + str(uuid.uuid4().int)[:7]


def test_calls_list_filters_by_phone_and_status(vats: Vats, pbx: Pbx) -> None:
    phone = _unique_phone()
    ringing = pbx.create_call(phone)
    answered = pbx.create_call(phone)
    pbx.update_call(answered.call_id, call_pb2.Call.STATE_ANSWERED)

    both = vats.json("calls", "list", "--phone", phone)["calls"]
    assert [c["call_id"] for c in both] == [answered.call_id, ringing.call_id]
    only = vats.json("calls", "list", "--phone", phone, "--status", "answered,busy")["calls"]
    assert [c["call_id"] for c in only] == [answered.call_id]

    out = vats.ok("calls", "list", "--phone", phone, "--status", "ringing")
    header, *rows = out.splitlines()
    assert header.split()[:5] == ["ID", "CREATED", "DIRECTION", "PHONE", "STATUS"]
    assert len(rows) == 1
    assert rows[0].split()[0] == str(ringing.call_id)
    assert f" {phone} " in rows[0] and " ringing " in rows[0]


def test_calls_list_filters_by_direction_and_time(vats: Vats, pbx: Pbx) -> None:
    phone = _unique_phone()
    outgoing = pbx.create_call(phone, direction=call_pb2.DIRECTION_OUTGOING)
    pbx.create_call(phone, direction=call_pb2.DIRECTION_INCOMING)

    found = vats.json("calls", "list", "--phone", phone, "--direction", "outgoing")["calls"]
    assert [c["call_id"] for c in found] == [outgoing.call_id]
    later = vats.json("calls", "list", "--phone", phone, "--since", "2999-01-01")["calls"]
    assert later == []
    earlier = vats.json("calls", "list", "--phone", phone, "--until", "2000-01-01T00:00:00Z")
    assert earlier["calls"] == []


def test_calls_list_pages_with_limit_and_page_token(vats: Vats, pbx: Pbx) -> None:
    phone = _unique_phone()
    ids = [pbx.create_call(phone).call_id for _ in range(3)]

    first = vats.json("calls", "list", "--phone", phone, "--limit", "2")
    assert [c["call_id"] for c in first["calls"]] == ids[:0:-1]
    assert first["next_page_token"]
    second = vats.json(
        "calls", "list", "--phone", phone, "--limit", "2", "--page-token", first["next_page_token"]
    )
    assert [c["call_id"] for c in second["calls"]] == ids[:1]
    assert second["next_page_token"] == ""

    out = vats.ok("calls", "list", "--phone", phone, "--limit", "2")
    assert f"--page-token {first['next_page_token']}" in out


def test_calls_show_prints_history_ticket_and_comments(vats: Vats, pbx: Pbx) -> None:
    call = pbx.create_call(_unique_phone(), user_ids=[2], comment="first words")
    pbx.update_call(call.call_id, call_pb2.Call.STATE_IN_PROGRESS)
    pbx.update_call(call.call_id, call_pb2.Call.STATE_ANSWERED, comment="all sorted")

    out = vats.ok("calls", "show", str(call.call_id))

    shown = fields_of(out)
    assert shown["call"] == str(call.call_id)
    assert shown["status"] == "answered"
    assert shown["employee"] == "2"
    history = out.split("status history\n", 1)[1].split("\n\n", 1)[0]
    assert [line.split()[-1] for line in history.splitlines()[1:]] == [
        "ringing",
        "in-progress",
        "answered",
    ]
    ticket = out.split("ticket\n", 1)[1]
    assert re.search(rf"^\s+ticket:\s+{call.ticket.ticket_id}$", ticket, re.MULTILINE)
    assert re.search(r"^\s+executor:\s+2$", ticket, re.MULTILINE)
    comments = out.split("comments\n", 1)[1].split("\n\n", 1)[0]
    assert "first words" in comments and "all sorted" in comments
    assert out.rstrip().endswith("recordings\nnone")


def test_calls_show_json_is_the_whole_call(vats: Vats, pbx: Pbx) -> None:
    call = pbx.create_call(_unique_phone(), comment="hello")

    shown = vats.json("calls", "show", str(call.call_id))["call"]

    assert shown["call_id"] == call.call_id
    assert shown["ticket"]["ticket_id"] == call.ticket.ticket_id
    assert [c["text"] for c in shown["ticket"]["comments"]] == ["hello"]
    assert shown["state"] == "ringing"


def test_calls_show_of_an_unknown_call_fails_in_one_line(vats: Vats) -> None:
    result = vats("calls", "show", "987654")

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: ")
    assert "not found" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_cards_watch_prints_a_line_per_event_until_ctrl_c(vats: Vats, pbx: Pbx) -> None:
    phone = _unique_phone()
    call = pbx.create_call(phone, user_ids=[3])
    watch = vats.watch("--employee", "3")
    try:
        shown = watch.wait_for(lambda line: f"call {call.call_id} " in line)
        assert re.match(rf"#\d+ show call {call.call_id} ticket {call.ticket.ticket_id} ", shown)
        assert f" ringing incoming {phone}" in shown

        pbx.update_call(call.call_id, call_pb2.Call.STATE_MISSED)
        hidden = watch.wait_for(lambda line: f"call {call.call_id} " in line and " hide " in line)
        assert "(final)" in hidden
    finally:
        code, stderr = watch.interrupt()
    assert code == 0
    assert "Traceback" not in stderr
    assert "error" not in stderr


def test_cards_watch_json_prints_one_event_object_per_line(vats: Vats, pbx: Pbx) -> None:
    call = pbx.create_call(_unique_phone(), user_ids=[1])
    watch = vats.watch("--employee", "1", "--json")
    try:
        line = watch.wait_for(lambda line: f'"call_id": {call.call_id},' in line)
        event = json.loads(line)
        assert event["type"] == "show"
        assert event["seq"] > 0
        assert event["card"]["ticket_id"] == call.ticket.ticket_id
        assert event["card"]["state"] == "ringing"
        assert event["card"]["direction"] == "incoming"
    finally:
        code, stderr = watch.interrupt()
    assert code == 0
    assert stderr == ""


def test_cards_watch_with_an_admin_token_asks_for_employee(vats: Vats) -> None:
    result = vats("cards", "watch")

    assert result.returncode == 2
    line = only_line(result.stderr)
    assert "--employee ID" in line
    assert "employee_id" not in line


def test_cards_watch_with_a_service_token_asks_for_employee(vats: Vats) -> None:
    result = vats("cards", "watch", token=SERVICE_TOKEN)

    assert result.returncode == 2
    assert "--employee ID" in only_line(result.stderr)
