"""Tokens that expire and one-time stream tickets, against a real grpc.aio server.

Time is moved by replacing the token desk's clock, never by waiting for it.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

import vats_rpc
from core.app.tokens import TICKET_TTL
from core.model import utc_now
from core.server import Core
from telephony.v1 import (
    call_pb2,
    call_service_pb2,
    call_service_pb2_grpc,
    directory_service_pb2_grpc,
)
from telephony.v1 import directory_service_pb2 as dr
from tests.conftest import bearer, running_core

DEMO = call_service_pb2.ChannelRef(channel_key="demo-channel-key")
ADMIN = bearer("demo-admin")
SERVICE = bearer("demo-service")
Event = call_service_pb2.CallCardEvent


@pytest.fixture
async def core(tmp_path: Path) -> AsyncIterator[Core]:
    """A core that checks its streams' tokens often, so that tests need not wait."""
    async with running_core(tmp_path, stream_token_check_seconds=0.05) as server:
        yield server


@pytest.fixture
def calls(channel: grpc.aio.Channel) -> call_service_pb2_grpc.CallServiceStub:
    return call_service_pb2_grpc.CallServiceStub(channel)


@pytest.fixture
def directory(channel: grpc.aio.Channel) -> directory_service_pb2_grpc.DirectoryServiceStub:
    return directory_service_pb2_grpc.DirectoryServiceStub(channel)


def ticket(value: str) -> list[tuple[str, str]]:
    return [("authorization", f"Ticket {value}")]


def later(core: Core, delta: timedelta) -> None:
    """From now on core's tokens and tickets see the time `delta` ahead."""
    core.app.tokens.clock = lambda: utc_now() + delta


async def refusal(awaitable: Any) -> vats_rpc.RpcStatus:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await awaitable
    return vats_rpc.RpcStatus.of(caught.value)


async def stream_refusal(stream: Any) -> vats_rpc.RpcStatus:
    async def drain() -> None:
        async for _ in stream:
            pass

    return await refusal(asyncio.wait_for(drain(), 10))


async def new_ticket(
    directory: Any, metadata: list[tuple[str, str]]
) -> dr.IssueStreamTicketResponse:
    reply: dr.IssueStreamTicketResponse = await directory.IssueStreamTicket(
        dr.IssueStreamTicketRequest(), metadata=metadata, timeout=5
    )
    return reply


async def issue(directory: Any, ttl: timedelta | None = None, employee_id: int = 1) -> Any:
    request = dr.IssueTokenRequest(role=dr.ROLE_EMPLOYEE, employee_id=employee_id)
    if ttl is not None:
        lifetime = Duration()
        lifetime.FromTimedelta(ttl)
        request.ttl.CopyFrom(lifetime)
    return await directory.IssueToken(request, metadata=ADMIN, timeout=5)


def watch_cards(calls: Any, metadata: list[tuple[str, str]], employee_id: int = 0) -> Any:
    return calls.WatchCallCards(
        call_service_pb2.WatchCallCardsRequest(employee_id=employee_id), metadata=metadata
    )


async def create_call(calls: Any, user_ids: list[int]) -> call_pb2.Call:
    request = call_service_pb2.CreateCallRequest(
        channel=DEMO, direction=call_pb2.DIRECTION_INCOMING, phone="+74951234567", user_ids=user_ids
    )
    reply = await calls.CreateCall(request, metadata=SERVICE, timeout=5)
    return reply.call


# --- tokens that expire ------------------------------------------------------------------------


async def test_an_expired_token_is_refused_with_token_expired(
    core: Core, directory: directory_service_pb2_grpc.DirectoryServiceStub
) -> None:
    issued = await issue(directory, ttl=timedelta(minutes=30))
    expires = issued.token.expire_time.ToDatetime(tzinfo=utc_now().tzinfo)
    assert timedelta(minutes=29) < expires - utc_now() <= timedelta(minutes=30)
    listed = await directory.ListTokens(dr.ListTokensRequest(), metadata=ADMIN)
    [mine] = [t for t in listed.tokens if t.token_id == issued.token.token_id]
    assert mine.expire_time == issued.token.expire_time
    # The seed's tokens were issued without a lifetime.
    assert not [t for t in listed.tokens if t != mine and t.HasField("expire_time")]
    own = bearer(issued.secret)
    await new_ticket(directory, own)
    later(core, timedelta(minutes=30))
    status = await refusal(new_ticket(directory, own))
    assert (status.code, status.reason) == (grpc.StatusCode.UNAUTHENTICATED, "token_expired")
    # Tokens issued without a lifetime are not touched.
    await new_ticket(directory, bearer("demo-anna"))


async def test_a_bad_lifetime_is_refused(
    directory: directory_service_pb2_grpc.DirectoryServiceStub,
) -> None:
    status = await refusal(issue(directory, ttl=timedelta(seconds=-5)))
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [name for name, _ in status.violations] == ["ttl"]


# --- stream tickets ----------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["demo-admin", "demo-service", "demo-supervisor", "demo-anna"])
async def test_every_role_gets_a_ticket_for_a_minute(
    directory: directory_service_pb2_grpc.DirectoryServiceStub, token: str
) -> None:
    before = utc_now()
    reply = await new_ticket(directory, bearer(token))
    assert len(reply.ticket) >= 32
    expires: datetime = reply.expire_time.ToDatetime(tzinfo=before.tzinfo)
    assert before + TICKET_TTL <= expires <= utc_now() + TICKET_TTL


async def test_a_ticket_opens_its_employees_cards_once(
    calls: call_service_pb2_grpc.CallServiceStub,
    directory: directory_service_pb2_grpc.DirectoryServiceStub,
) -> None:
    one = (await new_ticket(directory, bearer("demo-anna"))).ticket
    stream = watch_cards(calls, ticket(one))
    await stream.initial_metadata()
    call = await create_call(calls, user_ids=[1])
    event = await asyncio.wait_for(anext(aiter(stream)), 5)
    assert (event.type, event.card.call_id) == (Event.TYPE_SHOW, call.call_id)
    stream.cancel()
    status = await stream_refusal(watch_cards(calls, ticket(one)))
    assert (status.code, status.reason) == (grpc.StatusCode.UNAUTHENTICATED, "ticket_invalid")


async def test_a_ticket_has_its_tokens_scope_and_no_more(
    calls: call_service_pb2_grpc.CallServiceStub,
    directory: directory_service_pb2_grpc.DirectoryServiceStub,
) -> None:
    anna = bearer("demo-anna")
    others = watch_cards(calls, ticket((await new_ticket(directory, anna)).ticket), employee_id=2)
    assert (await stream_refusal(others)).code == grpc.StatusCode.PERMISSION_DENIED
    every_call = calls.WatchCalls(
        call_service_pb2.WatchCallsRequest(),
        metadata=ticket((await new_ticket(directory, anna)).ticket),
    )
    assert (await stream_refusal(every_call)).code == grpc.StatusCode.PERMISSION_DENIED
    # Not a token: it opens a stream and nothing else.
    unary = calls.ListCalls(
        call_service_pb2.ListCallsRequest(),
        metadata=ticket((await new_ticket(directory, anna)).ticket),
    )
    status = await refusal(unary)
    assert (status.code, status.reason) == (grpc.StatusCode.UNAUTHENTICATED, "ticket_invalid")
    status = await refusal(
        new_ticket(directory, ticket((await new_ticket(directory, anna)).ticket))
    )
    assert status.code == grpc.StatusCode.UNAUTHENTICATED


async def test_an_expired_or_made_up_ticket_is_refused(
    core: Core,
    calls: call_service_pb2_grpc.CallServiceStub,
    directory: directory_service_pb2_grpc.DirectoryServiceStub,
) -> None:
    status = await stream_refusal(watch_cards(calls, ticket("made-up-ticket")))
    assert (status.code, status.reason) == (grpc.StatusCode.UNAUTHENTICATED, "ticket_invalid")
    stale = (await new_ticket(directory, bearer("demo-anna"))).ticket
    later(core, TICKET_TTL)
    status = await stream_refusal(watch_cards(calls, ticket(stale)))
    assert (status.code, status.reason) == (grpc.StatusCode.UNAUTHENTICATED, "ticket_invalid")


async def test_revoking_the_token_ends_the_stream_opened_with_its_ticket(
    calls: call_service_pb2_grpc.CallServiceStub,
    directory: directory_service_pb2_grpc.DirectoryServiceStub,
) -> None:
    issued = await issue(directory)
    one = (await new_ticket(directory, bearer(issued.secret))).ticket
    stream = watch_cards(calls, ticket(one))
    await stream.initial_metadata()
    await directory.RevokeToken(
        dr.RevokeTokenRequest(token_id=issued.token.token_id), metadata=ADMIN
    )
    assert (await stream_refusal(stream)).code == grpc.StatusCode.UNAUTHENTICATED


async def test_a_ticket_of_a_revoked_token_is_refused(
    calls: call_service_pb2_grpc.CallServiceStub,
    directory: directory_service_pb2_grpc.DirectoryServiceStub,
) -> None:
    issued = await issue(directory)
    unused = (await new_ticket(directory, bearer(issued.secret))).ticket
    await directory.RevokeToken(
        dr.RevokeTokenRequest(token_id=issued.token.token_id), metadata=ADMIN
    )
    status = await stream_refusal(watch_cards(calls, ticket(unused)))
    assert (status.code, status.reason) == (grpc.StatusCode.UNAUTHENTICATED, "ticket_invalid")


async def test_a_token_revoked_by_another_core_ends_its_streams(
    core: Core,
    calls: call_service_pb2_grpc.CallServiceStub,
    directory: directory_service_pb2_grpc.DirectoryServiceStub,
) -> None:
    issued = await issue(directory)
    by_token = watch_cards(calls, bearer(issued.secret))
    by_ticket = watch_cards(
        calls, ticket((await new_ticket(directory, bearer(issued.secret))).ticket)
    )
    untouched = watch_cards(calls, bearer("demo-anna"))
    for stream in (by_token, by_ticket, untouched):
        await stream.initial_metadata()

    def revoke_in_the_store() -> None:
        # What a core sharing the database does: this core hears of it only from the store.
        with core.store.unit_of_work() as uow:
            token = uow.tokens.get(issued.token.token_id)
            assert token is not None
            uow.tokens.save(dataclasses.replace(token, revoked_at=utc_now()))
            uow.commit()

    await core.runner.run(revoke_in_the_store)
    assert (await stream_refusal(by_token)).code == grpc.StatusCode.UNAUTHENTICATED
    assert (await stream_refusal(by_ticket)).code == grpc.StatusCode.UNAUTHENTICATED
    call = await create_call(calls, user_ids=[1])
    event = await asyncio.wait_for(anext(aiter(untouched)), 5)
    assert event.card.call_id == call.call_id
    untouched.cancel()


async def test_a_token_that_expires_ends_its_streams(
    core: Core,
    calls: call_service_pb2_grpc.CallServiceStub,
    directory: directory_service_pb2_grpc.DirectoryServiceStub,
) -> None:
    issued = await issue(directory, ttl=timedelta(hours=8))
    stream = watch_cards(calls, ticket((await new_ticket(directory, bearer(issued.secret))).ticket))
    await stream.initial_metadata()
    later(core, timedelta(hours=8))
    assert (await stream_refusal(stream)).code == grpc.StatusCode.UNAUTHENTICATED


async def test_a_supervisors_ticket_opens_the_board_until_the_token_is_revoked(
    calls: call_service_pb2_grpc.CallServiceStub,
    directory: directory_service_pb2_grpc.DirectoryServiceStub,
) -> None:
    refused = calls.WatchBoard(
        call_service_pb2.WatchBoardRequest(),
        metadata=ticket((await new_ticket(directory, bearer("demo-anna"))).ticket),
    )
    assert (await stream_refusal(refused)).code == grpc.StatusCode.PERMISSION_DENIED
    issued = await directory.IssueToken(
        dr.IssueTokenRequest(role=dr.ROLE_SUPERVISOR), metadata=ADMIN, timeout=5
    )
    board = calls.WatchBoard(
        call_service_pb2.WatchBoardRequest(),
        metadata=ticket((await new_ticket(directory, bearer(issued.secret))).ticket),
    )
    first = await asyncio.wait_for(anext(aiter(board)), 5)
    assert first.board.day
    await directory.RevokeToken(
        dr.RevokeTokenRequest(token_id=issued.token.token_id), metadata=ADMIN
    )
    assert (await stream_refusal(board)).code == grpc.StatusCode.UNAUTHENTICATED
