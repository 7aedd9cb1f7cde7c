"""`vats audit` and token lifetimes: who changed what and who read personal data in bulk,
from where and when; `--ttl` for tokens that expire."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterable
from datetime import timedelta

from google.protobuf.duration_pb2 import Duration

from telephony.v1 import directory_service_pb2
from vats_cli import render
from vats_cli.client import CoreClient
from vats_cli.render import Output
from vats_rpc.audit import entry_json
from vocabulary import ROLE

_TTL = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def ttl(text: str) -> Duration:
    """A lifetime such as `90s`, `30m`, `12h` or `30d` (an argparse type)."""
    found = _TTL.fullmatch(text.strip().lower())
    if found is None or int(found[1]) == 0:
        raise argparse.ArgumentTypeError(
            f"not a lifetime: {text!r}; a positive number with s, m, h or d, e.g. 30d"
        )
    lifetime = Duration()
    lifetime.FromTimedelta(timedelta(**{_UNITS[found[2]]: int(found[1])}))
    return lifetime


def _filter(args: argparse.Namespace) -> directory_service_pb2.AuditFilter:
    message = directory_service_pb2.AuditFilter(
        action=args.action or "", token_id=args.token_id or "", employee_id=args.employee or 0
    )
    if args.since is not None:
        message.since.FromDatetime(args.since)
    if args.until is not None:
        message.until.FromDatetime(args.until)
    return message


def audit_list(args: argparse.Namespace, core: CoreClient, out: Output) -> None:
    if args.json_lines:
        _export(args, core, out)
        return
    response = core.list_audit_entries(
        directory_service_pb2.ListAuditEntriesRequest(
            filter=_filter(args), page_size=args.limit or 0, page_token=args.page_token or ""
        )
    )
    text = _entries_table(response.entries)
    if response.next_page_token:
        text += f"\nmore: --page-token {response.next_page_token}"
    out.emit(response, text)


def _export(args: argparse.Namespace, core: CoreClient, out: Output) -> None:
    """Every matching entry, oldest first, one JSON object a line."""
    request = directory_service_pb2.ExportAuditEntriesRequest(filter=_filter(args))
    for batch in core.export_audit_entries(request):
        for entry in batch.entries:
            out.write_line(json.dumps(entry_json(entry), ensure_ascii=False))


def _details(entry: directory_service_pb2.AuditEntry) -> str:
    return " ".join(f"{key}={value}" for key, value in sorted(entry.details.items()))


def _entries_table(entries: Iterable[directory_service_pb2.AuditEntry]) -> str:
    rows = [
        (
            e.entry_id,
            render.timestamp(e, "time"),
            e.action,
            e.actor.token_id,
            ROLE.name(e.actor.role),
            e.actor.employee_id or None,
            e.address,
            e.target,
            _details(e),
        )
        for e in entries
    ]
    headers = ("ID", "TIME", "ACTION", "TOKEN", "ROLE", "EMPLOYEE", "ADDRESS", "TARGET", "DETAILS")
    return render.table(headers, rows)
