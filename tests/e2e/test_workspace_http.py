"""The helpdesk's workspace over HTTP, end to end: calls posted by the PBX become missed-call
callbacks (counted, marked, resolved by an answered call) and the supervisor board's live
calls and figures; every role sees what it may. Real core and gateway processes."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from telephony.v1 import (
    channel_service_pb2,
    channel_service_pb2_grpc,
    directory_service_pb2,
    directory_service_pb2_grpc,
)
from tests.conftest import LiveStack, bearer, running_stack
from tests.e2e.sse import SSEReader

pytestmark = pytest.mark.e2e

ANNA = {"Authorization": "Bearer demo-anna"}
BORIS = {"Authorization": "Bearer demo-boris"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    with running_stack(tmp_path_factory.mktemp("workspace")) as stack:
        yield stack


@pytest.fixture(scope="module")
def admin(stack: LiveStack) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(stack.grpc_target) as channel:
        yield channel


@pytest.fixture(scope="module")
def supervisor(admin: grpc.Channel) -> dict[str, str]:
    """The Authorization header of a supervisor token, issued the way `vats tokens issue` does."""
    directory = directory_service_pb2_grpc.DirectoryServiceStub(admin)
    reply = directory.IssueToken(
        directory_service_pb2.IssueTokenRequest(
            role=directory_service_pb2.ROLE_SUPERVISOR, description="shift lead"
        ),
        metadata=bearer(LiveStack.admin_token),
        timeout=10,
    )
    return {"Authorization": f"Bearer {reply.secret}"}


class Line:
    """A channel of its own for one test: its callbacks and figures are that test's calls."""

    def __init__(self, stack: LiveStack, admin: grpc.Channel) -> None:
        channels = channel_service_pb2_grpc.ChannelServiceStub(admin)
        self.name = f"line-{uuid.uuid4().hex[:8]}"
        reply = channels.CreateChannel(
            channel_service_pb2.CreateChannelRequest(name=self.name, department_id=1),
            metadata=bearer(LiveStack.admin_token),
            timeout=10,
        )
        self.channel_id = reply.channel.channel_id
        self._url = f"{stack.http_url}/api/v2/telephony/calls/{reply.key}"

    def post(self, **fields: Any) -> dict[str, Any]:
        reply = httpx.post(self._url, json=fields, timeout=10)
        assert reply.status_code == 200, reply.text
        return dict(reply.json()["data"])

    def ring(self, phone: str, direction: str = "incoming", **fields: Any) -> int:
        """A new ringing call shown to Anna (unless told otherwise): its id."""
        fields.setdefault("user_ids", [1])
        made = self.post(action="create_call", direction=direction, phone=phone, **fields)
        return int(made["call_id"])

    def status(self, call_id: int, call_status: str, **fields: Any) -> None:
        self.post(action="update_call", call_id=call_id, call_status=call_status, **fields)
        # A moment between changes: wait and talk times are then above zero.
        time.sleep(0.02)

    def miss(self, phone: str, call_status: str = "missed") -> int:
        call_id = self.ring(phone)
        self.status(call_id, call_status)
        return call_id

    def talk(self, phone: str, direction: str = "incoming") -> int:
        call_id = self.ring(phone, direction)
        time.sleep(0.02)
        self.status(call_id, "in-progress", user_id=1)
        self.status(call_id, "answered")
        return call_id


@pytest.fixture
def line(stack: LiveStack, admin: grpc.Channel) -> Line:
    return Line(stack, admin)


def new_phone() -> tuple[str, str]:
    """A Moscow mobile number as a PBX may send it, and as people read it."""
    digits = "".join(random.choices("0123456789", k=7))
    return f"8916{digits}", f"+7 916 {digits[:3]}-{digits[3:5]}-{digits[5:]}"


def instant(text: str) -> datetime:
    """A time of the API (ISO-8601 with 0 to 9 decimals) as a datetime."""
    timestamp = Timestamp()
    timestamp.FromJsonString(text)
    return timestamp.ToDatetime()


def get(stack: LiveStack, path: str, headers: dict[str, str], **params: Any) -> httpx.Response:
    return httpx.get(f"{stack.http_url}{path}", headers=headers, params=params, timeout=10)


def callbacks(
    stack: LiveStack, line: Line, headers: dict[str, str], state: str = "open"
) -> dict[str, Any]:
    reply = get(
        stack, "/api/v2/telephony/callbacks", headers, channel_id=line.channel_id, state=state
    )
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def mark(stack: LiveStack, callback_id: int, headers: dict[str, str]) -> httpx.Response:
    url = f"{stack.http_url}/api/v2/telephony/callbacks/{callback_id}/called-back"
    return httpx.post(url, headers=headers, timeout=10)


def board(stack: LiveStack, headers: dict[str, str]) -> dict[str, Any]:
    reply = get(stack, "/api/v2/telephony/board", headers)
    assert reply.status_code == 200, reply.text
    return dict(reply.json()["data"])


def figures_of(board: dict[str, Any], line: Line) -> dict[str, Any]:
    (figures,) = [f for f in board["figures"] if f["channel_id"] == line.channel_id]
    return dict(figures)


def history(stack: LiveStack, call_id: int) -> dict[str, Any]:
    reply = get(stack, "/api/v2/telephony/history", {"Authorization": "Bearer demo-admin"})
    assert reply.status_code == 200, reply.text
    (call,) = [c for c in reply.json()["data"] if c["call_id"] == call_id]
    return dict(call)


def test_missed_calls_from_one_number_are_one_callback_counting_attempts(
    stack: LiveStack, line: Line, supervisor: dict[str, str]
) -> None:
    phone, shown = new_phone()
    other, _ = new_phone()
    line.miss(phone)
    last = line.miss("+7" + phone[1:], "busy")
    line.miss(other, "canceled")
    answered = line.talk(new_phone()[0])

    listed = callbacks(stack, line, ANNA)
    assert listed["open_count"] == 2 and listed["next_page_token"] is None
    first, second = listed["data"]
    # Oldest waiting first.
    assert first["phone_display"] == shown and second["phone"] == other
    assert (first["attempts"], first["last_call_id"], first["last_status"]) == (2, last, "busy")
    assert (first["state"], first["resolution"], first["resolved_at"]) == ("open", None, None)
    assert first["channel_id"] == line.channel_id and first["channel_name"] == line.name
    assert instant(first["first_missed_at"]) < instant(first["last_missed_at"])
    assert callbacks(stack, line, supervisor) == listed
    # Boris was never shown these calls.
    assert callbacks(stack, line, BORIS) == {"data": [], "next_page_token": None, "open_count": 0}
    # The history shows the same number as people read it, and how long each call waited.
    assert history(stack, answered)["wait_seconds"] > 0
    missed = history(stack, last)
    assert missed["phone_display"] == shown and missed["wait_seconds"] > 0


def test_marking_called_back_records_who_and_when_once(
    stack: LiveStack, line: Line, supervisor: dict[str, str]
) -> None:
    phone, _ = new_phone()
    line.miss(phone)
    (callback,) = callbacks(stack, line, ANNA)["data"]
    callback_id = callback["callback_id"]
    assert mark(stack, callback_id, BORIS).status_code == 404

    marked = mark(stack, callback_id, ANNA)
    assert marked.status_code == 200, marked.text
    resolved = marked.json()["data"]
    assert (resolved["state"], resolved["resolution"]) == ("resolved", "called-back")
    assert (resolved["resolved_by_employee_id"], resolved["resolved_by_name"]) == (
        1,
        "Anna Petrova",
    )
    assert instant(resolved["resolved_at"]) >= instant(callback["last_missed_at"])

    assert callbacks(stack, line, ANNA) == {"data": [], "next_page_token": None, "open_count": 0}
    assert callbacks(stack, line, ANNA, state="resolved")["data"] == [resolved]
    # Marked again, by someone else: the first resolution stands.
    again = mark(stack, callback_id, supervisor)
    assert (again.status_code, again.json()["data"]) == (200, resolved)
    assert mark(stack, 987654321, ANNA).status_code == 404


def test_an_answered_outgoing_call_to_the_number_resolves_its_callback(
    stack: LiveStack, line: Line
) -> None:
    phone, _ = new_phone()
    line.miss(phone)
    outgoing = line.ring(phone, "outgoing")
    # Ringing back is not yet reaching them.
    (still_open,) = callbacks(stack, line, ANNA)["data"]
    assert still_open["state"] == "open"

    line.status(outgoing, "in-progress", user_id=1)

    assert callbacks(stack, line, ANNA)["open_count"] == 0
    (resolved,) = callbacks(stack, line, ANNA, state="all")["data"]
    assert (resolved["resolution"], resolved["resolved_by_call_id"]) == ("answered", outgoing)
    line.status(outgoing, "answered")


def test_board_figures_match_the_calls_posted(
    stack: LiveStack, line: Line, supervisor: dict[str, str]
) -> None:
    answered_in = line.talk(new_phone()[0])
    line.miss(new_phone()[0])
    line.miss(new_phone()[0], "busy")
    answered_out = line.talk(new_phone()[0], "outgoing")
    phone, shown = new_phone()
    ringing = line.ring(phone)

    now = board(stack, supervisor)
    waits = [history(stack, answered_in)["wait_seconds"]]
    talks = [history(stack, c)["talk_duration_seconds"] for c in (answered_in, answered_out)]
    figures = figures_of(now, line)
    assert figures == {
        "channel_id": line.channel_id,
        "channel_name": line.name,
        "incoming": 4,
        "answered": 1,
        "missed": 2,
        "answer_rate": 0.25,
        "average_wait_seconds": pytest.approx(sum(waits) / len(waits), abs=1e-3),
        "average_talk_seconds": pytest.approx(sum(talks) / len(talks), abs=1e-3),
        "open_callbacks": 2,
    }
    (active,) = [c for c in now["calls"] if c["channel_id"] == line.channel_id]
    assert (active["call_id"], active["call_status"], active["phone_display"]) == (
        ringing,
        "ringing",
        shown,
    )
    assert active["audience"] == [{"employee_id": 1, "name": "Anna Petrova"}]
    assert now["timezone"] == "Europe/Moscow"
    line.status(ringing, "canceled")


def test_board_shows_who_is_on_a_call(
    stack: LiveStack, line: Line, supervisor: dict[str, str]
) -> None:
    call_id = line.ring(new_phone()[0], user_ids=[3])
    line.status(call_id, "in-progress", user_id=3)

    on_call = board(stack, supervisor)
    vera = [e for e in on_call["employees"] if e["employee_id"] == 3]
    assert vera == [
        {"employee_id": 3, "name": "Vera Sokolova", "state": "on-call", "call_id": call_id}
    ]
    (active,) = [c for c in on_call["calls"] if c["call_id"] == call_id]
    assert (active["user_id"], active["user_name"]) == (3, "Vera Sokolova")
    assert active["answered_at"] is not None
    assert history(stack, call_id)["user_name"] == "Vera Sokolova"

    line.status(call_id, "answered")
    after = board(stack, supervisor)
    assert [e["state"] for e in after["employees"] if e["employee_id"] == 3] == ["free"]
    assert call_id not in {c["call_id"] for c in after["calls"]}


def test_board_stream_shows_a_new_ringing_call(
    stack: LiveStack, line: Line, supervisor: dict[str, str]
) -> None:
    phone, shown = new_phone()
    with SSEReader(f"{stack.http_url}/api/v2/telephony/board/stream", supervisor) as reader:
        assert reader.status == 200, getattr(reader, "body", "")
        opening = reader.next()
        assert opening.event == "board" and "figures" in opening.json
        call_id = line.ring(phone)
        deadline = time.monotonic() + 10
        while True:
            event = reader.next(timeout=max(0.1, deadline - time.monotonic()))
            calls = {c["call_id"]: c for c in event.json["calls"]}
            if call_id in calls:
                break
        assert event.event == "board"
        assert (calls[call_id]["call_status"], calls[call_id]["phone_display"]) == (
            "ringing",
            shown,
        )
        assert figures_of(event.json, line)["incoming"] == 1
        line.status(call_id, "missed")


def test_board_stream_takes_a_supervisor_token_from_the_query(
    stack: LiveStack, supervisor: dict[str, str]
) -> None:
    token = supervisor["Authorization"].removeprefix("Bearer ")
    url = f"{stack.http_url}/api/v2/telephony/board/stream?access_token={token}"
    with SSEReader(url) as reader:
        assert reader.status == 200
        assert reader.next().event == "board"


@pytest.mark.parametrize("path", ["/api/v2/telephony/board", "/api/v2/telephony/board/stream"])
def test_an_employee_token_cannot_read_the_board(stack: LiveStack, path: str) -> None:
    reply = get(stack, path, ANNA)
    assert reply.status_code == 403
    assert reply.json()["error"]["code"] == "permission_denied"


def test_a_supervisor_reads_every_call_but_cannot_create_a_channel(
    stack: LiveStack, line: Line, admin: grpc.Channel, supervisor: dict[str, str]
) -> None:
    phone, _ = new_phone()
    call_id = line.ring(phone, user_ids=[2], comment="call me after 5")
    line.status(call_id, "missed")

    seen = get(stack, "/api/v2/telephony/history", supervisor, channel=line.channel_id)
    assert seen.status_code == 200, seen.text
    (call,) = seen.json()["data"]
    assert call["call_id"] == call_id
    assert [c["text"] for c in call["comments"]] == ["call me after 5"]
    assert get(stack, f"/api/v2/telephony/history/{call_id}", supervisor).status_code == 200
    assert callbacks(stack, line, supervisor)["open_count"] == 1

    channels = channel_service_pb2_grpc.ChannelServiceStub(admin)
    token = supervisor["Authorization"].removeprefix("Bearer ")
    with pytest.raises(grpc.RpcError) as refused:
        channels.CreateChannel(
            channel_service_pb2.CreateChannelRequest(name="not mine", department_id=1),
            metadata=bearer(token),
            timeout=10,
        )
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
