"""Contacts in DirectoryService against a real grpc.aio server: naming a caller's
number, listing and removing contacts, and the name on the calls and cards."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from telephony.v1 import call_pb2, call_service_pb2, call_service_pb2_grpc
from telephony.v1 import directory_service_pb2 as dr
from telephony.v1 import directory_service_pb2_grpc as dr_grpc
from tests.conftest import bearer

ADMIN = bearer("demo-admin")
SERVICE = bearer("demo-service")
DEMO = call_service_pb2.ChannelRef(channel_key="demo-channel-key")
# One the demo seed names (its other, a short number, is left to the phone rules' tests).
SEEDED = {"+74951234567": "Ivan Smirnov (OOO Romashka)"}


@pytest.fixture
def directory(channel: grpc.aio.Channel) -> dr_grpc.DirectoryServiceStub:
    return dr_grpc.DirectoryServiceStub(channel)


@pytest.fixture
def calls(channel: grpc.aio.Channel) -> call_service_pb2_grpc.CallServiceStub:
    return call_service_pb2_grpc.CallServiceStub(channel)


async def upsert(directory: Any, phone: str, name: str) -> dr.PhoneContact:
    request = dr.UpsertContactRequest(phone=phone, name=name)
    return (await directory.UpsertContact(request, metadata=ADMIN, timeout=5)).contact


async def list_all(directory: Any) -> list[dr.PhoneContact]:
    request = dr.ListContactsRequest(page_size=500)
    reply = await directory.ListContacts(request, metadata=ADMIN, timeout=5)
    assert reply.next_page_token == ""
    return list(reply.contacts)


async def create_call(calls: Any, phone: str, **fields: Any) -> call_pb2.Call:
    request = call_service_pb2.CreateCallRequest(
        channel=DEMO, direction=call_pb2.DIRECTION_INCOMING, phone=phone, **fields
    )
    return (await calls.CreateCall(request, metadata=SERVICE, timeout=5)).call


async def refusal(awaitable: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await awaitable
    return caught.value


def violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    status = rpc_status.from_call(error)
    assert status is not None
    found: dict[str, str] = {}
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            found.update({v.field: v.description for v in bad_request.field_violations})
    return found


async def test_the_seeded_contacts_are_listed_with_their_names(
    directory: dr_grpc.DirectoryServiceStub,
) -> None:
    listed = {c.phone: c.name for c in await list_all(directory)}

    assert listed.items() >= SEEDED.items()


async def test_upsert_names_a_number_and_the_listing_shows_it(
    directory: dr_grpc.DirectoryServiceStub,
) -> None:
    contact = await upsert(directory, "+7 812 555-12-34", "  Olga Lebedeva ")

    assert contact.contact_id > 0
    assert (contact.phone, contact.name) == ("+78125551234", "Olga Lebedeva")
    assert contact.HasField("create_time")
    assert contact in await list_all(directory)


async def test_spellings_of_one_number_are_one_contact(
    directory: dr_grpc.DirectoryServiceStub,
) -> None:
    first = await upsert(directory, "8 (812) 555-12-34", "Olga")
    renamed = await upsert(directory, "+78125551234", "Olga Lebedeva")
    again = await upsert(directory, "7 812 5551234", "Olga L.")

    assert renamed.contact_id == again.contact_id == first.contact_id
    assert again.create_time == first.create_time
    named = [c for c in await list_all(directory) if c.phone == "+78125551234"]
    assert [(c.contact_id, c.name) for c in named] == [(first.contact_id, "Olga L.")]


async def test_a_call_from_a_named_number_shows_the_name_on_its_ticket_and_card(
    directory: dr_grpc.DirectoryServiceStub, calls: call_service_pb2_grpc.CallServiceStub
) -> None:
    contact = await upsert(directory, "+7 812 555-12-34", "Olga Lebedeva")

    call = await create_call(calls, "8 812 555 12 34", user_ids=[1])
    assert call.ticket.contact.contact_id == contact.contact_id
    assert call.ticket.contact.name == "Olga Lebedeva"

    cards = calls.WatchCallCards(
        call_service_pb2.WatchCallCardsRequest(employee_id=1), metadata=ADMIN
    )
    try:
        shown = await cards.read()
    finally:
        cards.cancel()
    assert (shown.card.call_id, shown.card.contact_name) == (call.call_id, "Olga Lebedeva")

    # A new name shows on the calls already made from the number.
    await upsert(directory, "+78125551234", "Olga Petrova")
    got = await calls.GetCall(
        call_service_pb2.GetCallRequest(call_id=call.call_id), metadata=ADMIN, timeout=5
    )
    assert got.call.ticket.contact.name == "Olga Petrova"


async def test_a_number_that_called_before_is_named_in_its_existing_contact(
    directory: dr_grpc.DirectoryServiceStub, calls: call_service_pb2_grpc.CallServiceStub
) -> None:
    call = await create_call(calls, "+7 812 555-77-00")
    assert call.ticket.contact.name == ""

    contact = await upsert(directory, "88125557700", "Pavel")

    assert contact.contact_id == call.ticket.contact.contact_id
    unnamed_twins = [c for c in await list_all(directory) if c.phone == "+78125557700"]
    assert [c.name for c in unnamed_twins] == ["Pavel"]


async def test_contacts_are_listed_by_id_a_page_at_a_time(
    directory: dr_grpc.DirectoryServiceStub,
) -> None:
    for n in range(5):
        await upsert(directory, f"+7 812 555-00-0{n}", f"Caller {n}")
    everyone = await list_all(directory)
    ids = [c.contact_id for c in everyone]
    assert ids == sorted(ids) and len(ids) >= 5

    pages: list[list[dr.PhoneContact]] = []
    token = ""
    while True:
        reply = await directory.ListContacts(
            dr.ListContactsRequest(page_size=2, page_token=token), metadata=ADMIN, timeout=5
        )
        pages.append(list(reply.contacts))
        token = reply.next_page_token
        if not token:
            break
    assert all(len(page) == 2 for page in pages[:-1]) and 1 <= len(pages[-1]) <= 2
    assert [c for page in pages for c in page] == everyone


async def test_a_bad_page_is_refused(directory: dr_grpc.DirectoryServiceStub) -> None:
    bad_token = await refusal(
        directory.ListContacts(dr.ListContactsRequest(page_token="nonsense!"), metadata=ADMIN)
    )
    negative = await refusal(
        directory.ListContacts(dr.ListContactsRequest(page_size=-1), metadata=ADMIN)
    )

    assert bad_token.code() == negative.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token" in violations(bad_token)
    assert "page_size" in violations(negative)


async def test_remove_drops_a_contact_and_its_number_may_be_named_again(
    directory: dr_grpc.DirectoryServiceStub,
) -> None:
    contact = await upsert(directory, "+7 812 555-12-34", "Olga")

    removed = await directory.RemoveContact(
        dr.RemoveContactRequest(contact_id=contact.contact_id), metadata=ADMIN, timeout=5
    )

    assert removed == dr.RemoveContactResponse()
    assert contact.contact_id not in [c.contact_id for c in await list_all(directory)]
    again = await refusal(
        directory.RemoveContact(
            dr.RemoveContactRequest(contact_id=contact.contact_id), metadata=ADMIN
        )
    )
    assert again.code() == grpc.StatusCode.NOT_FOUND
    renamed = await upsert(directory, "+78125551234", "Olga again")
    assert renamed.contact_id != contact.contact_id


async def test_a_contact_linked_to_calls_is_not_removed(
    directory: dr_grpc.DirectoryServiceStub, calls: call_service_pb2_grpc.CallServiceStub
) -> None:
    call = await create_call(calls, "+7 812 555-12-34")
    contact_id = call.ticket.contact.contact_id
    await upsert(directory, "+78125551234", "Olga")

    refused = await refusal(
        directory.RemoveContact(dr.RemoveContactRequest(contact_id=contact_id), metadata=ADMIN)
    )

    assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "calls" in (refused.details() or "")
    got = await calls.GetCall(
        call_service_pb2.GetCallRequest(call_id=call.call_id), metadata=ADMIN, timeout=5
    )
    assert (got.call.ticket.contact.contact_id, got.call.ticket.contact.name) == (
        contact_id,
        "Olga",
    )
    assert contact_id in [c.contact_id for c in await list_all(directory)]


@pytest.mark.parametrize(
    ("phone", "name", "field"),
    [
        ("", "Olga", "phone"),
        ("   ", "Olga", "phone"),
        ("no digits", "Olga", "phone"),
        ("+7 812 555-12-34" + "5" * 64, "Olga", "phone"),
        ("+7 812 555\x00-12-34", "Olga", "phone"),
        ("+7 812 555-12-34", "", "name"),
        ("+7 812 555-12-34", " \t ", "name"),
        ("+7 812 555-12-34", "Ol\x00ga", "name"),
        ("+7 812 555-12-34", "O" * 1000, "name"),
    ],
)
async def test_a_bad_contact_is_refused_and_changes_nothing(
    directory: dr_grpc.DirectoryServiceStub, phone: str, name: str, field: str
) -> None:
    before = await list_all(directory)

    refused = await refusal(
        directory.UpsertContact(dr.UpsertContactRequest(phone=phone, name=name), metadata=ADMIN)
    )

    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in violations(refused)
    assert await list_all(directory) == before


async def test_removing_an_unknown_or_no_contact_is_refused(
    directory: dr_grpc.DirectoryServiceStub,
) -> None:
    unknown = await refusal(
        directory.RemoveContact(dr.RemoveContactRequest(contact_id=404), metadata=ADMIN)
    )
    zero = await refusal(directory.RemoveContact(dr.RemoveContactRequest(), metadata=ADMIN))

    assert unknown.code() == grpc.StatusCode.NOT_FOUND
    assert zero.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("token", ["demo-service", "demo-anna"])
async def test_only_admins_manage_contacts(
    directory: dr_grpc.DirectoryServiceStub, token: str
) -> None:
    contact = await upsert(directory, "+7 812 555-12-34", "Olga")
    requests = [
        directory.UpsertContact(
            dr.UpsertContactRequest(phone="+78125551234", name="Mallory"), metadata=bearer(token)
        ),
        directory.ListContacts(dr.ListContactsRequest(), metadata=bearer(token)),
        directory.RemoveContact(
            dr.RemoveContactRequest(contact_id=contact.contact_id), metadata=bearer(token)
        ),
    ]

    for request in requests:
        assert (await refusal(request)).code() == grpc.StatusCode.PERMISSION_DENIED
    assert contact in await list_all(directory)


async def test_contacts_need_a_token(directory: dr_grpc.DirectoryServiceStub) -> None:
    refused = await refusal(directory.ListContacts(dr.ListContactsRequest()))

    assert refused.code() == grpc.StatusCode.UNAUTHENTICATED
