"""`vats contacts ...`: the names shown for callers' numbers on call cards and tickets."""

from __future__ import annotations

import argparse
from collections.abc import Iterable

from telephony.v1 import directory_service_pb2
from vats_cli import render
from vats_cli.client import CoreClient
from vats_cli.render import Output

# The most core gives in one page.
_LARGEST_PAGE = 500


def contacts_upsert(args: argparse.Namespace, core: CoreClient, out: Output) -> None:
    response = core.upsert_contact(
        directory_service_pb2.UpsertContactRequest(phone=args.phone, name=args.name)
    )
    out.emit(response, _contacts_table([response.contact]))


def contacts_list(args: argparse.Namespace, core: CoreClient, out: Output) -> None:
    if args.limit is not None or args.page_token is not None:
        response = core.list_contacts(
            directory_service_pb2.ListContactsRequest(
                page_size=args.limit or 0, page_token=args.page_token or ""
            )
        )
        text = _contacts_table(response.contacts)
        if response.next_page_token:
            text += f"\nmore: --page-token {response.next_page_token}"
        out.emit(response, text)
        return
    everyone = directory_service_pb2.ListContactsResponse()
    token = ""
    while True:
        page = core.list_contacts(
            directory_service_pb2.ListContactsRequest(page_size=_LARGEST_PAGE, page_token=token)
        )
        everyone.contacts.extend(page.contacts)
        token = page.next_page_token
        if not token:
            break
    out.emit(everyone, _contacts_table(everyone.contacts))


def contacts_remove(args: argparse.Namespace, core: CoreClient, out: Output) -> None:
    response = core.remove_contact(
        directory_service_pb2.RemoveContactRequest(contact_id=args.contact_id)
    )
    out.emit(response, f"contact {args.contact_id} removed")


def _contacts_table(contacts: Iterable[directory_service_pb2.PhoneContact]) -> str:
    rows = [(c.contact_id, c.phone, c.name, render.timestamp(c, "create_time")) for c in contacts]
    return render.table(("ID", "PHONE", "NAME", "CREATED"), rows)
