"""`vats callbacks ...`, `vats board` and supervisor tokens against a live core."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from telephony.v1 import call_pb2
from tests.cli.cli_support import Pbx, Vats, fields_of

State = call_pb2.Call


def _unique_phone() -> str:
    return "+7916" + str(uuid.uuid4().int)[:7]


def _missed(pbx: Pbx, phone: str, state: call_pb2.Call.State = State.STATE_MISSED) -> int:
    """A call from `phone` shown to Anna (employee 1) that ended unanswered: its id."""
    call = pbx.create_call(phone, user_ids=[1])
    pbx.update_call(call.call_id, state)
    return call.call_id


def _callback_of(vats: Vats, phone: str, *args: str, token: str = "demo-admin") -> dict[str, Any]:
    listed = vats.json("callbacks", "list", *args, token=token)["callbacks"]
    (callback,) = [c for c in listed if c["phone"] == phone]
    return dict(callback)


def test_callbacks_list_counts_the_missed_calls_of_a_number(vats: Vats, pbx: Pbx) -> None:
    phone = _unique_phone()
    _missed(pbx, phone)
    last = _missed(pbx, phone, State.STATE_BUSY)

    callback = _callback_of(vats, phone)
    assert (callback["attempts"], callback["last_call_id"]) == (2, last)
    assert (callback["state"], callback["last_state"], callback["resolution"]) == (
        "open",
        "busy",
        None,
    )
    # Digits grouped the way people read them.
    assert callback["phone_display"] == f"+7 916 {phone[5:8]}-{phone[8:10]}-{phone[10:]}"

    out = vats.ok("callbacks", "list")
    header, *rows = out.splitlines()
    assert header.split()[:4] == ["ID", "STATE", "PHONE", "CONTACT"]
    (row,) = [r for r in rows if callback["phone_display"] in r]
    assert row.split()[:2] == [str(callback["callback_id"]), "open"]
    open_count = vats.json("callbacks", "list")["open_count"]
    assert rows[-1] == f"open: {open_count}" and open_count >= 1


def test_callbacks_of_calls_an_employee_never_saw_are_not_listed_for_it(
    vats: Vats, pbx: Pbx
) -> None:
    phone = _unique_phone()
    _missed(pbx, phone)
    assert _callback_of(vats, phone, token="demo-anna")["attempts"] == 1
    listed = vats.json("callbacks", "list", token="demo-boris")["callbacks"]
    assert phone not in {c["phone"] for c in listed}


def test_callbacks_mark_records_the_employee_and_moves_it_to_resolved(vats: Vats, pbx: Pbx) -> None:
    phone = _unique_phone()
    _missed(pbx, phone)
    callback_id = _callback_of(vats, phone)["callback_id"]

    out = vats.ok("callbacks", "mark", str(callback_id), token="demo-anna")
    shown = fields_of(out)
    assert shown["state"] == "resolved"
    assert re.fullmatch(
        r"called-back \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ Anna Petrova", shown["resolved"]
    )

    open_now = vats.json("callbacks", "list")["callbacks"]
    assert callback_id not in {c["callback_id"] for c in open_now}
    resolved = _callback_of(vats, phone, "--state", "resolved")
    assert (resolved["resolution"], resolved["resolved_by_employee_id"]) == ("called-back", 1)
    assert _callback_of(vats, phone, "--state", "all")["callback_id"] == callback_id


def test_callbacks_mark_by_an_admin_names_the_employee(vats: Vats, pbx: Pbx) -> None:
    phone = _unique_phone()
    _missed(pbx, phone)
    callback_id = _callback_of(vats, phone)["callback_id"]

    marked = vats.json("callbacks", "mark", str(callback_id), "--employee", "2")["callback"]
    assert (marked["resolved_by_name"], marked["state"]) == ("Boris Ivanov", "resolved")


def test_callbacks_mark_of_an_unknown_callback_fails_with_one_line(vats: Vats) -> None:
    result = vats("callbacks", "mark", "987654321")
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and "not found" in result.stderr
    assert result.stderr.count("\n") == 1


def test_board_prints_active_calls_employees_and_todays_figures(vats: Vats, pbx: Pbx) -> None:
    phone = _unique_phone()
    ringing = pbx.create_call(phone, user_ids=[3])

    board = vats.json("board")["board"]
    assert board["timezone"] == "Europe/Moscow"
    assert ringing.call_id in {c["call_id"] for c in board["calls"]}
    figures = {f["channel_id"]: f for f in board["figures"]}
    assert figures[ringing.channel_id]["incoming"] >= 1

    out = vats.ok("board")
    assert "active calls\nCALL" in out and "employees\nID" in out
    assert "today by channel\nCHANNEL" in out
    (row,) = [line for line in out.splitlines() if line.startswith(f"{ringing.call_id} ")]
    assert "ringing" in row and "Vera Sokolova" in row
    pbx.update_call(ringing.call_id, State.STATE_MISSED)


def test_a_supervisor_token_reads_the_board_and_cannot_administer(vats: Vats) -> None:
    issued = vats.json("tokens", "issue", "--role", "supervisor", "--description", "shift lead")
    assert issued["token"]["role"] == "supervisor" and issued["token"]["employee_id"] == 0
    secret = issued["secret"]

    assert vats.json("board", token=secret)["board"]["day"]
    assert "callbacks" in vats.json("callbacks", "list", token=secret)
    refused = vats("channels", "create", "--name", "x", "--department", "1", token=secret)
    assert refused.returncode == 1
    assert "permission denied" in refused.stderr


def test_an_employee_token_does_not_read_the_board(vats: Vats) -> None:
    refused = vats("board", token="demo-anna")
    assert refused.returncode == 1 and "permission denied" in refused.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["callbacks", "list", "--state", "closed"],
        ["callbacks", "list", "--channel", "x"],
        ["callbacks", "mark"],
        ["callbacks", "mark", "0"],
        ["tokens", "issue", "--role", "supervisor", "--employee", "1"],
    ],
    ids=" ".join,
)
def test_bad_usage_exits_2(vats: Vats, args: list[str]) -> None:
    result = vats(*args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ")
