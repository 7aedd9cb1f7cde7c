"""Everything made before a graceful stop of core and gateway is there when they
start again on the same data directory, as after `make run` is started again."""

from __future__ import annotations

import dataclasses
import queue
import threading
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest

from telephony.v1 import (
    call_pb2,
    call_service_pb2,
    call_service_pb2_grpc,
    channel_service_pb2,
    channel_service_pb2_grpc,
    directory_service_pb2,
    directory_service_pb2_grpc,
)
from tests.cli.cli_support import Vats
from tests.conftest import LiveStack, bearer
from tests.e2e.sse import SSEReader
from tests.recordings.recording_samples import make_wav

pytestmark = pytest.mark.e2e

ADMIN = bearer(LiveStack.admin_token)
PBX_USER = "201"


@dataclasses.dataclass
class Before:
    """What was made and seen before the restart."""

    channel_id: int
    old_key: str
    key: str
    employee_id: int
    group_id: int
    employee_secret: str
    service_secret: str
    revoked_secret: str
    call_ids: list[int]
    recording_url: str
    recording: bytes
    state: dict[str, Any]
    events: list[tuple[int, int, int, int]]
    # The card event Dina saw last before she closed her stream, and what she missed since.
    last_event_id: str
    missed: list[tuple[str, str, int, str]]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    # No VATS_LINK_SECRET: recording links are signed with the secret kept in the data directory.
    stack = LiveStack(tmp_path_factory.mktemp("persistence"), {"VATS_LINK_SECRET": ""})
    try:
        stack.start_core()
        stack.start_gateway()
        yield stack
    finally:
        stack.stop()


def post(
    stack: LiveStack,
    key: str,
    fields: dict[str, Any],
    record: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """A multipart form POST, as the PBX sends it."""
    parts: list[tuple[str, Any]] = []
    for name, value in fields.items():
        for item in value if isinstance(value, list) else [value]:
            parts.append((name, (None, str(item))))
    if record is not None:
        parts.append(("audio_record", ("call.wav", record, "audio/wav")))
    return httpx.post(
        f"{stack.http_url}/api/v2/telephony/calls/{key}",
        files=parts,
        headers=headers,
        timeout=30,
    )


def reported(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def card_stream(stack: LiveStack, token: str, last_event_id: str | None = None) -> SSEReader:
    headers = {"Authorization": f"Bearer {token}"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    reader = SSEReader(f"{stack.http_url}/api/v2/telephony/cards/stream", headers)
    assert reader.status == 200, getattr(reader, "body", "")
    return reader


def card_events(reader: SSEReader) -> list[tuple[str, str, int, str]]:
    """Every event the stream sends until it falls quiet."""
    events = []
    while not reader.nothing_more(0.7) or not reader.events.empty():
        while not reader.events.empty():
            event = reader.events.get_nowait()
            card = event.json
            events.append((event.event, event.id or "", card.get("call_id", 0), card.get("reason")))
    return events


def call_events(stack: LiveStack, after_seq: int) -> list[tuple[int, int, int, int]]:
    """WatchCalls replayed from `after_seq` until it falls quiet: (seq, type, call, state)."""
    found: queue.Queue[call_service_pb2.CallEvent | None] = queue.Queue()
    with grpc.insecure_channel(stack.grpc_target) as channel:
        stream = call_service_pb2_grpc.CallServiceStub(channel).WatchCalls(
            call_service_pb2.WatchCallsRequest(after_seq=after_seq), metadata=ADMIN, timeout=30
        )

        def read() -> None:
            try:
                for event in stream:
                    found.put(event)
            except grpc.RpcError:
                pass
            found.put(None)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        events: list[tuple[int, int, int, int]] = []
        try:
            while (event := found.get(timeout=1.0)) is not None:
                events.append((event.seq, event.type, event.call.call_id, event.call.state))
        except queue.Empty:
            pass
        stream.cancel()
        reader.join(timeout=5)
    return events


def stored_state(stack: LiveStack) -> dict[str, Any]:
    """Channels, directory, tokens and calls as core answers them; recording links
    are signed afresh at each answer, so they are left out."""
    with grpc.insecure_channel(stack.grpc_target) as channel:
        channels = channel_service_pb2_grpc.ChannelServiceStub(channel)
        directory = directory_service_pb2_grpc.DirectoryServiceStub(channel)
        calls = call_service_pb2_grpc.CallServiceStub(channel)
        listed = calls.ListCalls(
            call_service_pb2.ListCallsRequest(page_size=500), metadata=ADMIN, timeout=10
        )
        assert not listed.next_page_token
        full = [
            calls.GetCall(
                call_service_pb2.GetCallRequest(call_id=c.call_id), metadata=ADMIN, timeout=10
            ).call
            for c in listed.calls
        ]
        for call in [*listed.calls, *full]:
            for recording in [call.recording, *call.recordings]:
                recording.ClearField("signed_path")
                recording.ClearField("expire_time")
        return {
            "channels": channels.ListChannels(
                channel_service_pb2.ListChannelsRequest(), metadata=ADMIN, timeout=10
            ),
            "departments": directory.ListDepartments(
                directory_service_pb2.ListDepartmentsRequest(), metadata=ADMIN, timeout=10
            ),
            "employees": directory.ListEmployees(
                directory_service_pb2.ListEmployeesRequest(), metadata=ADMIN, timeout=10
            ),
            "groups": directory.ListGroups(
                directory_service_pb2.ListGroupsRequest(), metadata=ADMIN, timeout=10
            ),
            "tokens": directory.ListTokens(
                directory_service_pb2.ListTokensRequest(), metadata=ADMIN, timeout=10
            ),
            "calls": listed,
            "full calls": full,
        }


@pytest.fixture(scope="module")
def before(stack: LiveStack) -> Before:
    """Set up a helpdesk as an administrator would with `vats`, let the PBX report
    calls, then stop core and gateway gracefully and start them again."""
    vats = Vats(stack.grpc_target)
    vats.ok("departments", "upsert", "3", "--name", "Billing")
    vats.ok("employees", "upsert", "5", "--name", "Dina Kuznetsova", "--telephony")
    vats.ok("groups", "upsert", "30", "--name", "Night shift", "--members", "3,5")
    created = vats.json("channels", "create", "--name", "+7 812 000-00-00", "--department", "3")
    channel_id = int(created["channel"]["channel_id"])
    old_key = created["key"]
    key = vats.json("channels", "rotate-key", str(channel_id))["key"]
    assert key != old_key
    vats.ok("channels", "map", str(channel_id), PBX_USER, "5")
    dina = vats.json("tokens", "issue", "--role", "employee", "--employee", "5")["secret"]
    service = vats.json("tokens", "issue", "--role", "service", "--description", "crm sync")
    revoked = vats.json("tokens", "issue", "--role", "service", "--description", "old crm")
    vats.ok("tokens", "revoke", revoked["token"]["token_id"])

    # The event log's first event: the later ones are replayed after it.
    first = reported(
        post(
            stack,
            stack.channel_key,
            {
                "action": "create_call",
                "direction": "incoming",
                "phone": "777777777",
                "user_ids[]": [1],
            },
        )
    )
    cards = card_stream(stack, dina)
    assert cards.nothing_more(), "Dina has no card yet"
    answered = reported(
        post(
            stack,
            key,
            {
                "action": "create_call",
                "direction": "incoming",
                "phone": "+7 812 555-01-02",
                "pbx_call_id": "pbx-answered",
                "pbx_user_ids[]": [PBX_USER],
                "comment": "caller asks about an invoice",
            },
        )
    )
    shown = cards.next()
    assert (shown.event, shown.json["call_id"]) == ("show", answered["call_id"])
    cards.close()

    # Missed by Dina's stream from here on.
    reported(
        post(
            stack,
            key,
            {"action": "update_call", "pbx_call_id": "pbx-answered", "call_status": "in-progress"},
        )
    )
    recording = make_wav(1.5)
    ended = reported(
        post(
            stack,
            key,
            {
                "action": "update_call",
                "pbx_call_id": "pbx-answered",
                "call_status": "answered",
                "comment": "invoice sent again",
            },
            record=recording,
        )
    )
    assert ended["audio_record"]
    ringing = reported(
        post(
            stack,
            key,
            {
                "action": "create_call",
                "direction": "incoming",
                "phone": "+7 812 555-03-04",
                "pbx_call_id": "pbx-ringing",
                "group_ids[]": [30],
            },
            headers={"Idempotency-Key": "ringing-1"},
        )
    )
    resumed = card_stream(stack, dina, last_event_id=shown.id)
    try:
        missed = card_events(resumed)
    finally:
        resumed.close()
    assert [(e[0], e[2]) for e in missed] == [
        ("update", answered["call_id"]),
        ("hide", answered["call_id"]),
        ("show", ringing["call_id"]),
    ]
    download = httpx.get(ended["audio_record"], timeout=10)
    assert download.status_code == 200 and download.content == recording
    events = call_events(stack, after_seq=1)
    assert len(events) == 4, events
    state = stored_state(stack)

    stack.stop()
    assert (stack.data_dir / "vats.db").is_file()
    stack.start_core()
    stack.start_gateway()
    return Before(
        channel_id=channel_id,
        old_key=old_key,
        key=key,
        employee_id=5,
        group_id=30,
        employee_secret=dina,
        service_secret=service["secret"],
        revoked_secret=revoked["secret"],
        call_ids=[first["call_id"], answered["call_id"], ringing["call_id"]],
        recording_url=ended["audio_record"],
        recording=recording,
        state=state,
        events=events,
        last_event_id=shown.id or "",
        missed=missed,
    )


def test_card_stream_resumes_from_a_last_event_id_of_before_the_restart(
    before: Before, stack: LiveStack
) -> None:
    resumed = card_stream(stack, before.employee_secret, last_event_id=before.last_event_id)
    try:
        events = card_events(resumed)
    finally:
        resumed.close()
    assert events[: len(before.missed)] == before.missed
    assert "reset" not in [e[0] for e in events]


def test_event_log_is_kept(before: Before, stack: LiveStack) -> None:
    events = call_events(stack, after_seq=1)
    assert events[: len(before.events)] == before.events


def test_channels_directory_tokens_and_calls_are_kept(before: Before, stack: LiveStack) -> None:
    after = stored_state(stack)
    for name, was in before.state.items():
        assert after[name] == was, name
    channel = next(c for c in after["channels"].channels if c.channel_id == before.channel_id)
    assert dict(channel.pbx_users) == {PBX_USER: before.employee_id}
    assert {e.employee_id for e in after["employees"].employees} >= {before.employee_id}
    group = next(g for g in after["groups"].groups if g.group_id == before.group_id)
    assert list(group.member_employee_ids) == [3, before.employee_id]


def test_calls_keep_their_tickets_histories_comments_and_recordings(
    before: Before, stack: LiveStack
) -> None:
    with grpc.insecure_channel(stack.grpc_target) as channel:
        call = (
            call_service_pb2_grpc.CallServiceStub(channel)
            .GetCall(call_service_pb2.GetCallRequest(call_id=before.call_ids[1]), metadata=ADMIN)
            .call
        )
    state = call_pb2.Call.State
    assert [h.state for h in call.status_history] == [
        state.STATE_RINGING,
        state.STATE_IN_PROGRESS,
        state.STATE_ANSWERED,
    ]
    assert call.user_id == before.employee_id
    assert call.ticket.ticket_id and call.ticket.department_id == 3
    assert call.ticket.executor_employee_id == before.employee_id
    assert call.ticket.contact.phone_e164 == "+78125550102"
    assert [c.text for c in call.ticket.comments] == [
        "caller asks about an invoice",
        "invoice sent again",
    ]
    assert len(call.recordings) == 1 and call.recordings[0].size_bytes == len(before.recording)


def test_recording_links_from_before_the_restart_still_download(before: Before) -> None:
    download = httpx.get(before.recording_url, timeout=10)
    assert download.status_code == 200, download.text
    assert download.content == before.recording


def test_tokens_issued_before_the_restart_work_and_a_revoked_one_stays_revoked(
    before: Before, stack: LiveStack
) -> None:
    stream = card_stream(stack, before.employee_secret)
    stream.close()
    with grpc.insecure_channel(stack.grpc_target) as channel:
        calls = call_service_pb2_grpc.CallServiceStub(channel)
        listed = calls.ListCalls(
            call_service_pb2.ListCallsRequest(), metadata=bearer(before.service_secret)
        )
        assert {c.call_id for c in listed.calls} >= set(before.call_ids)
        with pytest.raises(grpc.RpcError) as refused:
            calls.ListCalls(
                call_service_pb2.ListCallsRequest(), metadata=bearer(before.revoked_secret)
            )
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    refused_stream = SSEReader(
        f"{stack.http_url}/api/v2/telephony/cards/stream",
        {"Authorization": f"Bearer {before.revoked_secret}"},
    )
    refused_stream.close()
    assert refused_stream.status == 401


def test_pbx_reaches_the_channel_by_its_rotated_key_and_not_by_the_old_one(
    before: Before, stack: LiveStack
) -> None:
    update = {"action": "update_call", "pbx_call_id": "pbx-ringing", "call_status": "missed"}
    assert post(stack, before.old_key, update).status_code == 404
    missed = reported(post(stack, before.key, update))
    assert missed["call_id"] == before.call_ids[2] and missed["call_status"] == "missed"


def test_retries_after_the_restart_make_no_duplicate_and_ids_are_not_reused(
    before: Before, stack: LiveStack
) -> None:
    again = reported(
        post(
            stack,
            before.key,
            {
                "action": "create_call",
                "direction": "incoming",
                "phone": "+7 812 555-03-04",
                "pbx_call_id": "pbx-ringing",
                "group_ids[]": [30],
            },
            headers={"Idempotency-Key": "ringing-1"},
        )
    )
    assert again["call_id"] == before.call_ids[2]
    by_pbx_id = reported(
        post(
            stack,
            before.key,
            {
                "action": "create_call",
                "direction": "incoming",
                "phone": "+7 812 555-01-02",
                "pbx_call_id": "pbx-answered",
                "call_status": "answered",
            },
        )
    )
    assert by_pbx_id["call_id"] == before.call_ids[1]
    new = reported(
        post(
            stack,
            before.key,
            {"action": "create_call", "direction": "outgoing", "phone": "+7 812 555-05-06"},
        )
    )
    assert new["call_id"] > max(before.call_ids)
    assert new["ticket_id"] > max(c.ticket.ticket_id for c in before.state["calls"].calls)


def test_the_data_directory_holds_the_database_recordings_and_link_secret(
    before: Before, stack: LiveStack
) -> None:
    assert (stack.data_dir / "vats.db").is_file()
    assert (stack.data_dir / "link-secret").is_file()
    assert [p for p in (stack.data_dir / "recordings").rglob("*") if p.is_file()]
