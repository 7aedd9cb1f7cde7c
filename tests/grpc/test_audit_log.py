"""The audit log against a real grpc.aio server: every recorded action leaves exactly
one entry naming the token, role, employee and address it came from; admins alone list
and export it; nothing changes or removes an entry."""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import grpc
import pytest

import vats_rpc
from core.app.audit import Action
from core.model import utc_now
from core.recordings import LinkSigner
from core.server import Core
from telephony.v1 import (
    call_pb2,
    call_service_pb2,
    call_service_pb2_grpc,
    channel_service_pb2_grpc,
    directory_service_pb2_grpc,
)
from telephony.v1 import call_service_pb2 as cs
from telephony.v1 import channel_service_pb2 as ch
from telephony.v1 import directory_service_pb2 as dr
from tests.conftest import bearer
from tests.recordings.recording_samples import pcm_wav

CLIENT = "203.0.113.7"
Metadata = list[tuple[str, str]]


def forwarded(token: str, address: str = CLIENT) -> Metadata:
    """What the gateway sends on a client's behalf: its token and its address."""
    return [*bearer(token), ("x-client-address", address)]


ADMIN = forwarded("demo-admin")
SERVICE = bearer("demo-service")
DEMO = cs.ChannelRef(channel_id=1)


class Stubs:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.calls = call_service_pb2_grpc.CallServiceStub(channel)
        self.channels = channel_service_pb2_grpc.ChannelServiceStub(channel)
        self.directory = directory_service_pb2_grpc.DirectoryServiceStub(channel)

    async def entries(self, **filters: Any) -> list[dr.AuditEntry]:
        found: list[dr.AuditEntry] = []
        token = ""
        while True:
            page = await self.directory.ListAuditEntries(
                dr.ListAuditEntriesRequest(
                    filter=dr.AuditFilter(**filters), page_size=500, page_token=token
                ),
                metadata=bearer("demo-admin"),
            )
            found.extend(page.entries)
            token = page.next_page_token
            if not token:
                return found

    async def export(self) -> list[dr.AuditEntry]:
        stream = self.directory.ExportAuditEntries(
            dr.ExportAuditEntriesRequest(), metadata=bearer("demo-admin")
        )
        return [entry async for batch in stream for entry in batch.entries]

    async def token_id(self, role: int, employee_id: int = 0) -> str:
        listed = await self.directory.ListTokens(dr.ListTokensRequest(), metadata=ADMIN)
        [found] = [
            t.token_id for t in listed.tokens if t.role == role and t.employee_id == employee_id
        ]
        return found


@pytest.fixture
def stubs(channel: grpc.aio.Channel) -> Stubs:
    return Stubs(channel)


Step = Callable[[Stubs], Awaitable[object]]


async def _remove_a_contact(s: Stubs) -> object:
    added = await s.directory.UpsertContact(
        dr.UpsertContactRequest(phone="+7 999 000-00-01", name="Temp"),
        metadata=bearer("demo-admin"),
    )
    return await s.directory.RemoveContact(
        dr.RemoveContactRequest(contact_id=added.contact.contact_id), metadata=ADMIN
    )


async def _revoke_a_token(s: Stubs) -> object:
    issued = await s.directory.IssueToken(
        dr.IssueTokenRequest(role=dr.ROLE_SERVICE), metadata=bearer("demo-admin")
    )
    return await s.directory.RevokeToken(
        dr.RevokeTokenRequest(token_id=issued.token.token_id), metadata=ADMIN
    )


async def _upload(s: Stubs) -> str:
    async def messages() -> AsyncIterator[cs.UploadRecordRequest]:
        yield cs.UploadRecordRequest(
            metadata=cs.UploadRecordRequest.Metadata(channel=DEMO, file_name="call.wav")
        )
        yield cs.UploadRecordRequest(chunk=pcm_wav(0.5, 8000))

    reply = await s.calls.UploadRecord(messages(), metadata=SERVICE)
    return str(reply.recording.recording_id)


async def _new_call(s: Stubs, **fields: Any) -> int:
    reply = await s.calls.CreateCall(
        cs.CreateCallRequest(
            channel=DEMO, direction=call_pb2.DIRECTION_INCOMING, phone="+78125550199", **fields
        ),
        metadata=SERVICE,
    )
    return int(reply.call.call_id)


async def _download_a_recording(s: Stubs) -> object:
    recording_id = await _upload(s)
    await _new_call(s, user_ids=[1], recording_id=recording_id)
    stream = s.calls.DownloadRecord(
        cs.DownloadRecordRequest(recording_id=recording_id), metadata=forwarded("demo-anna")
    )
    return [message async for message in stream]


async def _mark_a_callback(s: Stubs) -> object:
    call_id = await _new_call(s, user_ids=[2])
    await s.calls.UpdateCall(
        cs.UpdateCallRequest(channel=DEMO, call_id=call_id, state=call_pb2.Call.STATE_MISSED),
        metadata=SERVICE,
    )
    listed = await s.calls.ListCallbacks(
        cs.ListCallbacksRequest(), metadata=bearer("demo-supervisor")
    )
    [callback] = [c for c in listed.callbacks if c.last_call_id == call_id]
    return await s.calls.MarkCalledBack(
        cs.MarkCalledBackRequest(callback_id=callback.callback_id, employee_id=2),
        metadata=forwarded("demo-supervisor"),
    )


async def _export(s: Stubs) -> object:
    stream = s.directory.ExportAuditEntries(dr.ExportAuditEntriesRequest(), metadata=ADMIN)
    return [batch async for batch in stream]


async def _watch_calls(s: Stubs) -> object:
    stream = s.calls.WatchCalls(cs.WatchCallsRequest(), metadata=forwarded("demo-supervisor"))
    # Accepted once its initial metadata arrives: the entry is stored before that.
    opened = await stream.initial_metadata()
    stream.cancel()
    return opened


# Each recorded action, the request that does it once (with the metadata of the recorded
# request), and who is recorded: the role and employee of its token.
STEPS: dict[Action, tuple[Step, int, int]] = {
    Action.CHANNEL_CREATED: (
        lambda s: s.channels.CreateChannel(
            ch.CreateChannelRequest(name="Line 2", department_id=1), metadata=ADMIN
        ),
        dr.ROLE_ADMIN,
        0,
    ),
    Action.CHANNEL_UPDATED: (
        lambda s: s.channels.UpdateChannel(
            ch.UpdateChannelRequest(channel_id=1, name="Main line"), metadata=ADMIN
        ),
        dr.ROLE_ADMIN,
        0,
    ),
    Action.CHANNEL_KEY_ROTATED: (
        lambda s: s.channels.RotateChannelKey(
            ch.RotateChannelKeyRequest(channel_id=1), metadata=ADMIN
        ),
        dr.ROLE_ADMIN,
        0,
    ),
    Action.PBX_USER_MAPPED: (
        lambda s: s.channels.MapPbxUser(
            ch.MapPbxUserRequest(channel_id=1, pbx_user_id="200", employee_id=3), metadata=ADMIN
        ),
        dr.ROLE_ADMIN,
        0,
    ),
    Action.PBX_USER_UNMAPPED: (
        lambda s: s.channels.UnmapPbxUser(
            ch.UnmapPbxUserRequest(channel_id=1, pbx_user_id="103"), metadata=ADMIN
        ),
        dr.ROLE_ADMIN,
        0,
    ),
    Action.DEPARTMENT_UPSERTED: (
        lambda s: s.directory.UpsertDepartment(
            dr.UpsertDepartmentRequest(department=dr.Department(department_id=3, name="Billing")),
            metadata=ADMIN,
        ),
        dr.ROLE_ADMIN,
        0,
    ),
    Action.EMPLOYEE_UPSERTED: (
        lambda s: s.directory.UpsertEmployee(
            dr.UpsertEmployeeRequest(employee=dr.Employee(employee_id=5, name="Dina")),
            metadata=ADMIN,
        ),
        dr.ROLE_ADMIN,
        0,
    ),
    Action.GROUP_UPSERTED: (
        lambda s: s.directory.UpsertGroup(
            dr.UpsertGroupRequest(
                group=dr.Group(group_id=30, name="Night", member_employee_ids=[1, 3])
            ),
            metadata=ADMIN,
        ),
        dr.ROLE_ADMIN,
        0,
    ),
    Action.CONTACT_UPSERTED: (
        lambda s: s.directory.UpsertContact(
            dr.UpsertContactRequest(phone="8 (812) 555-12-34", name="Olga"), metadata=ADMIN
        ),
        dr.ROLE_ADMIN,
        0,
    ),
    Action.CONTACT_REMOVED: (_remove_a_contact, dr.ROLE_ADMIN, 0),
    Action.TOKEN_ISSUED: (
        lambda s: s.directory.IssueToken(
            dr.IssueTokenRequest(role=dr.ROLE_EMPLOYEE, employee_id=2), metadata=ADMIN
        ),
        dr.ROLE_ADMIN,
        0,
    ),
    Action.TOKEN_REVOKED: (_revoke_a_token, dr.ROLE_ADMIN, 0),
    Action.CALLBACK_MARKED: (_mark_a_callback, dr.ROLE_SUPERVISOR, 0),
    Action.RECORDING_DOWNLOADED: (_download_a_recording, dr.ROLE_EMPLOYEE, 1),
    Action.CALLS_LISTED: (
        lambda s: s.calls.ListCalls(
            cs.ListCallsRequest(phone="+7 495 123-45-67"), metadata=forwarded("demo-anna")
        ),
        dr.ROLE_EMPLOYEE,
        1,
    ),
    Action.CALLBACKS_LISTED: (
        lambda s: s.calls.ListCallbacks(
            cs.ListCallbacksRequest(), metadata=forwarded("demo-boris")
        ),
        dr.ROLE_EMPLOYEE,
        2,
    ),
    Action.CONTACTS_LISTED: (
        lambda s: s.directory.ListContacts(dr.ListContactsRequest(), metadata=ADMIN),
        dr.ROLE_ADMIN,
        0,
    ),
    Action.AUDIT_EXPORTED: (_export, dr.ROLE_ADMIN, 0),
    Action.CALLS_WATCHED: (_watch_calls, dr.ROLE_SUPERVISOR, 0),
    Action.BOARD_READ: (
        lambda s: s.calls.GetBoard(cs.GetBoardRequest(), metadata=forwarded("demo-supervisor")),
        dr.ROLE_SUPERVISOR,
        0,
    ),
}


def test_every_action_has_a_step() -> None:
    assert set(STEPS) == set(Action)


@pytest.mark.parametrize("action", list(Action))
async def test_an_action_leaves_exactly_one_entry_naming_who_and_where(
    stubs: Stubs, action: Action
) -> None:
    step, role, employee_id = STEPS[action]
    assert await stubs.entries(action=action.value) == []
    await step(stubs)
    [entry] = await stubs.entries(action=action.value)
    assert entry.actor.token_id == await stubs.token_id(role, employee_id)
    assert (entry.actor.role, entry.actor.employee_id) == (role, employee_id)
    # The forwarded address, and the peer that forwarded it.
    assert entry.address.startswith(f"{CLIENT} via ipv4:127.0.0.1:")
    assert entry.time.seconds > 0


async def test_entries_say_what_was_done_and_never_a_secret(stubs: Stubs) -> None:
    created = await stubs.channels.CreateChannel(
        ch.CreateChannelRequest(name="Line 2", department_id=2, key="a-secret-channel-key"),
        metadata=ADMIN,
    )
    issued = await stubs.directory.IssueToken(
        dr.IssueTokenRequest(role=dr.ROLE_EMPLOYEE, employee_id=2, description="desk"),
        metadata=ADMIN,
    )
    channel_entry, token_entry = await stubs.entries(
        action="channel.created"
    ) + await stubs.entries(action="token.issued")
    assert channel_entry.target == str(created.channel.channel_id)
    assert dict(channel_entry.details) == {"name": "Line 2", "department_id": "2"}
    assert token_entry.target == issued.token.token_id
    assert dict(token_entry.details) == {
        "role": "employee",
        "employee_id": "2",
        "description": "desk",
    }
    exported = str(await stubs.export())
    assert "a-secret-channel-key" not in exported and issued.secret not in exported


async def test_a_direct_caller_is_recorded_at_its_peer_address(stubs: Stubs) -> None:
    await stubs.directory.ListContacts(dr.ListContactsRequest(), metadata=bearer("demo-admin"))
    [entry] = await stubs.entries(action="contacts.listed")
    assert entry.address.startswith("ipv4:127.0.0.1:")


async def test_a_refused_request_leaves_no_entry(stubs: Stubs) -> None:
    with pytest.raises(grpc.aio.AioRpcError):
        await stubs.channels.CreateChannel(
            ch.CreateChannelRequest(name="Line", department_id=99), metadata=ADMIN
        )
    with pytest.raises(grpc.aio.AioRpcError):
        await stubs.channels.RotateChannelKey(
            ch.RotateChannelKeyRequest(channel_id=1), metadata=forwarded("demo-anna")
        )
    assert await stubs.entries() == []


@pytest.mark.parametrize("token", ["demo-service", "demo-supervisor", "demo-anna"])
async def test_only_admins_read_the_log(stubs: Stubs, token: str) -> None:
    for attempt in (
        stubs.directory.ListAuditEntries(dr.ListAuditEntriesRequest(), metadata=bearer(token)),
        _drain(
            stubs.directory.ExportAuditEntries(
                dr.ExportAuditEntriesRequest(), metadata=bearer(token)
            )
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await attempt
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def _drain(stream: Any) -> None:
    async for _ in stream:
        pass


async def test_the_log_is_filtered_and_paged(stubs: Stubs) -> None:
    for department_id in range(1, 6):
        await stubs.directory.UpsertDepartment(
            dr.UpsertDepartmentRequest(
                department=dr.Department(department_id=department_id, name=f"D{department_id}")
            ),
            metadata=ADMIN,
        )
    await stubs.calls.ListCalls(cs.ListCallsRequest(), metadata=forwarded("demo-anna"))
    first = await stubs.directory.ListAuditEntries(
        dr.ListAuditEntriesRequest(
            filter=dr.AuditFilter(action="department.upserted"), page_size=2
        ),
        metadata=bearer("demo-admin"),
    )
    assert [e.target for e in first.entries] == ["5", "4"]
    rest = await stubs.directory.ListAuditEntries(
        dr.ListAuditEntriesRequest(
            filter=dr.AuditFilter(action="department.upserted"),
            page_size=2,
            page_token=first.next_page_token,
        ),
        metadata=bearer("demo-admin"),
    )
    assert [e.target for e in rest.entries] == ["3", "2"]
    [anna] = await stubs.entries(employee_id=1)
    assert anna.action == "calls.listed"
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stubs.entries(action="channel.deleted")
    status = vats_rpc.RpcStatus.of(refused.value)
    assert (status.code, [name for name, _ in status.violations]) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        ["action"],
    )


async def test_no_request_changes_or_removes_an_entry(stubs: Stubs) -> None:
    for step, _, _ in STEPS.values():
        await step(stubs)
    before = await stubs.export()
    assert {e.action for e in before} == {a.value for a in Action}
    # The same requests again, and the log's own: what was written stays as it was.
    for step, _, _ in STEPS.values():
        await step(stubs)
    after = await stubs.export()
    assert after[: len(before)] == before
    assert len(after) > len(before)


def test_the_api_has_no_request_that_writes_the_log() -> None:
    audit_methods = {
        f"{service.name}.{method.name}"
        for module in (call_service_pb2, dr)
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
        if "audit" in method.name.lower()
    }
    assert audit_methods == {
        "DirectoryService.ListAuditEntries",
        "DirectoryService.ExportAuditEntries",
    }


# --- who downloads through a signed link --------------------------------------------------------


async def _recorded_call(s: Stubs, employee_id: int = 1) -> tuple[str, int]:
    """A call shown to `employee_id` with a recording: (recording id, call id)."""
    recording_id = await _upload(s)
    return recording_id, await _new_call(s, user_ids=[employee_id], recording_id=recording_id)


async def _link_for(s: Stubs, token: str, call_id: int) -> cs.DownloadRecordRequest:
    """The download the gateway asks core for when the link `token` was handed is opened."""
    reply = await s.calls.GetCall(cs.GetCallRequest(call_id=call_id), metadata=bearer(token))
    parts = urlsplit(reply.call.recording.signed_path)
    query = {name: values[0] for name, values in parse_qs(parts.query).items()}
    return cs.DownloadRecordRequest(
        recording_id=parts.path.rsplit("/", 1)[-1],
        expires=int(query["expires"]),
        token_id=query.get("token", ""),
        signature=query["signature"],
    )


async def _download(s: Stubs, request: cs.DownloadRecordRequest) -> bytes:
    """As the gateway downloads through a signed link: with its own token, for its client."""
    stream = s.calls.DownloadRecord(request, metadata=forwarded("demo-service"))
    return b"".join([m.chunk async for m in stream])


async def test_a_link_is_recorded_as_the_token_it_was_handed_to(stubs: Stubs) -> None:
    recording_id, call_id = await _recorded_call(stubs)
    link = await _link_for(stubs, "demo-anna", call_id)
    anna = await stubs.token_id(dr.ROLE_EMPLOYEE, 1)
    assert link.token_id == anna

    assert await _download(stubs, link)
    [entry] = await stubs.entries(action="recording.downloaded")
    assert (entry.actor.token_id, entry.actor.role, entry.actor.employee_id) == (
        anna,
        dr.ROLE_EMPLOYEE,
        1,
    )
    assert entry.address.startswith(f"{CLIENT} via ipv4:127.0.0.1:")
    assert (entry.target, dict(entry.details)) == (recording_id, {"call_id": str(call_id)})


def _token_of(path: str) -> str:
    return parse_qs(urlsplit(path).query)["token"][0]


async def test_a_cards_link_is_bound_to_the_token_its_stream_was_opened_with(
    stubs: Stubs,
) -> None:
    _, first = await _recorded_call(stubs)
    anna = await stubs.token_id(dr.ROLE_EMPLOYEE, 1)
    other = await _issue_anna_token(stubs)
    expected = {"demo-anna": anna, other.secret: other.token.token_id}
    streams = {
        secret: stubs.calls.WatchCallCards(cs.WatchCallCardsRequest(), metadata=bearer(secret))
        for secret in expected
    }
    for stream in streams.values():
        await stream.initial_metadata()
    # The snapshot of each stream, then the same event's card on both.
    _, second = await _recorded_call(stubs)
    for secret, stream in streams.items():
        seen: dict[int, str] = {}
        while set(seen) != {first, second}:
            event = await stream.read()
            assert isinstance(event, cs.CallCardEvent)
            if event.card.recording_path:
                seen[event.card.call_id] = _token_of(event.card.recording_path)
        stream.cancel()
        assert set(seen.values()) == {expected[secret]}


async def test_a_link_made_for_one_token_does_not_open_with_another(stubs: Stubs) -> None:
    _, call_id = await _recorded_call(stubs)
    link = await _link_for(stubs, "demo-anna", call_id)
    for token_id in (await stubs.token_id(dr.ROLE_SUPERVISOR), ""):
        forged = cs.DownloadRecordRequest()
        forged.CopyFrom(link)
        forged.token_id = token_id
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _download(stubs, forged)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert await stubs.entries(action="recording.downloaded") == []


async def _issue_anna_token(s: Stubs, ttl: timedelta | None = None) -> dr.IssueTokenResponse:
    request = dr.IssueTokenRequest(role=dr.ROLE_EMPLOYEE, employee_id=1)
    if ttl is not None:
        request.ttl.FromTimedelta(ttl)
    return await s.directory.IssueToken(request, metadata=ADMIN)


async def test_a_revoked_tokens_links_stop_working(stubs: Stubs) -> None:
    _, call_id = await _recorded_call(stubs)
    issued = await _issue_anna_token(stubs)
    link = await _link_for(stubs, issued.secret, call_id)
    assert await _download(stubs, link)
    await stubs.directory.RevokeToken(
        dr.RevokeTokenRequest(token_id=issued.token.token_id), metadata=ADMIN
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _download(stubs, link)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "revoked or has expired" in (refused.value.details() or "")


async def test_an_expired_tokens_links_stop_working(stubs: Stubs, core: Core) -> None:
    _, call_id = await _recorded_call(stubs)
    issued = await _issue_anna_token(stubs, ttl=timedelta(hours=1))
    link = await _link_for(stubs, issued.secret, call_id)
    # An hour later by the tokens' clock (the link itself is valid for another day).
    core.app.tokens.clock = lambda: utc_now() + timedelta(hours=1)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _download(stubs, link)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_a_link_bound_to_no_token_is_recorded_as_its_caller(stubs: Stubs) -> None:
    # As links were made before they were bound to a token: valid until they expire.
    recording_id, _ = await _recorded_call(stubs)
    signer = LinkSigner(hashlib.sha256(b"test-link-secret").digest(), 60)
    expires, signature = signer.sign(recording_id, time.time())
    old = cs.DownloadRecordRequest(recording_id=recording_id, expires=expires, signature=signature)
    assert await _download(stubs, old)
    [entry] = await stubs.entries(action="recording.downloaded")
    assert entry.actor.token_id == await stubs.token_id(dr.ROLE_SERVICE)


async def test_a_download_is_recorded_by_its_request_from_the_first_byte(stubs: Stubs) -> None:
    _, call_id = await _recorded_call(stubs)
    link = await _link_for(stubs, "demo-anna", call_id)
    for offset, length in ((100, 0), (0, 100), (100, 50), (2000, 0)):
        ranged = cs.DownloadRecordRequest()
        ranged.CopyFrom(link)
        ranged.offset, ranged.length = offset, length
        assert await _download(stubs, ranged)
    # A play: its start from byte 0, then ranges further on that continue it.
    [entry] = await stubs.entries(action="recording.downloaded")
    assert dict(entry.details) == {"call_id": str(call_id), "length": "100"}


# --- bulk reads that stay open ------------------------------------------------------------------


async def test_a_board_stream_is_one_entry_however_many_boards_it_sends(stubs: Stubs) -> None:
    stream = stubs.calls.WatchBoard(cs.WatchBoardRequest(), metadata=forwarded("demo-supervisor"))
    first = await stream.read()
    assert isinstance(first, cs.WatchBoardResponse)
    call_id = await _new_call(stubs)
    while True:
        board = await stream.read()
        assert isinstance(board, cs.WatchBoardResponse)
        if call_id in [c.call_id for c in board.board.calls]:
            break
    stream.cancel()
    [entry] = await stubs.entries(action="board.read")
    assert entry.actor.token_id == await stubs.token_id(dr.ROLE_SUPERVISOR)
    assert entry.address.startswith(f"{CLIENT} via ipv4:127.0.0.1:")
    assert dict(entry.details) == {"live": "true"}


async def test_a_refused_board_or_calls_stream_leaves_no_entry(stubs: Stubs) -> None:
    refused = [
        stubs.calls.WatchBoard(cs.WatchBoardRequest(), metadata=forwarded("demo-anna")),
        stubs.calls.WatchCalls(cs.WatchCallsRequest(), metadata=forwarded("demo-anna")),
        stubs.calls.WatchCalls(
            cs.WatchCallsRequest(after_seq=-1), metadata=forwarded("demo-supervisor")
        ),
    ]
    for stream in refused:
        with pytest.raises(grpc.aio.AioRpcError):
            await stream.read()
    assert await stubs.entries() == []
