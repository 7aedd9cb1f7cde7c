"""The CLI's commands: each turns parsed arguments into core requests and prints the answer."""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from collections.abc import Iterable
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

from telephony.v1 import (
    call_pb2,
    call_service_pb2,
    channel_service_pb2,
    directory_service_pb2,
)
from vats_cli import render
from vats_cli.client import CoreClient, CoreError
from vats_cli.render import Output
from vats_settings import table as t
from vocabulary import CARD_EVENT, DIRECTION, ROLE, STATUS


class UsageError(Exception):
    """Arguments that parse but do not make a valid request (exit code 2)."""


class CommandFailed(Exception):
    """A command that works without core and could not be done (exit code 1)."""


class Stopped(BaseException):
    """SIGINT or SIGTERM arrived: the command stops where it is. Like
    KeyboardInterrupt, it passes through `except Exception`."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


# Channels


def channels_create(args: argparse.Namespace, core: CoreClient, out: Output) -> None:
    response = core.create_channel(
        channel_service_pb2.CreateChannelRequest(
            name=args.name, department_id=args.department, key=args.key or ""
        )
    )
    channel = response.channel
    text = render.fields(
        [
            ("channel", channel.channel_id),
            ("name", channel.name),
            ("department", channel.department_id),
            ("key", response.key),
            ("url", response.url),
        ]
    )
    out.emit(response, text + "\nThe key is shown only now; the PBX posts to the URL.")


def channels_list(args: argparse.Namespace, core: CoreClient, out: Output) -> None:
    response = core.list_channels(channel_service_pb2.ListChannelsRequest())
    rows = [
        (
            c.channel_id,
            c.name,
            c.department_id,
            c.enabled,
            len(c.pbx_users),
            render.timestamp(c, "create_time"),
        )
        for c in response.channels
    ]
    headers = ("ID", "NAME", "DEPARTMENT", "ENABLED", "PBX USERS", "CREATED")
    out.emit(response, render.table(headers, rows))


def channels_show(args: argparse.Namespace, core: CoreClient, out: Output) -> None:
    response = core.get_channel(channel_service_pb2.GetChannelRequest(channel_id=args.channel_id))
    out.emit(response, _channel_text(response.channel))


def channels_update(args: argparse.Namespace, core: CoreClient, out: Output) -> None:
    if args.name is None and args.department is None and args.enabled is None:
        raise UsageError("nothing to change: give --name, --department, --enable or --disable")
    # An option not given stays unset (protobuf's constructors skip None): kept as it is.
    request = channel_service_pb2.UpdateChannelRequest(
        channel_id=args.channel_id,
        name=args.name,
        department_id=args.department,
        enabled=args.enabled,
    )
    response = core.update_channel(request)
    out.emit(response, _channel_text(response.channel))


def channels_rotate_key(args: argparse.Namespace, core: CoreClient, out: Output) -> None:
    response = core.rotate_channel_key(
        channel_service_pb2.RotateChannelKeyRequest(channel_id=args.channel_id)
    )
    text = render.fields(
        [("channel", response.channel.channel_id), ("key", response.key), ("url", response.url)]
    )
    out.emit(response, text + "\nThe old key no longer works; give the PBX the new URL.")


def channels_map(args: argparse.Namespace, core: CoreClient, out: Output) -> None:
    response = core.map_pbx_user(
        channel_service_pb2.MapPbxUserRequest(
            channel_id=args.channel_id,
            pbx_user_id=args.pbx_user_id,
            employee_id=args.employee_id,
        )
    )
    out.emit(response, _channel_text(response.channel))


def channels_unmap(args: argparse.Namespace, core: CoreClient, out: Output) -> None:
    response = core.unmap_pbx_user(
        channel_service_pb2.UnmapPbxUserRequest(
            channel_id=args.channel_id, pbx_user_id=args.pbx_user_id
        )
    )
    out.emit(response, _channel_text(response.channel))


def _channel_text(channel: channel_service_pb2.Channel) -> str:
    text = render.fields(
        [
            ("channel", channel.channel_id),
            ("name", channel.name),
            ("department", channel.department_id),
            ("enabled", channel.enabled),
            ("created", render.timestamp(channel, "create_time")),
        ]
    )
    if not channel.pbx_users:
        return text + "\nno PBX users mapped"
    mapping = sorted(channel.pbx_users.items())
    return text + "\n\n" + render.table(("PBX USER", "EMPLOYEE"), mapping)


# Employees, groups, departments


def employees_upsert(args: argparse.Namespace, core: CoreClient, out: Output) -> None:
    telephony = args.telephony
    if telephony is None:
        # The request replaces the whole employee: keep the flag of an existing one.
        known = core.list_employees(directory_service_pb2.ListEmployeesRequest()).employees
        current = [e.telephony for e in known if e.employee_id == args.employee_id]
        telephony = current[0] if current else True
    employee = directory_service_pb2.Employee(
        employee_id=args.employee_id, name=args.name, telephony=telephony
    )
    response = core.upsert_employee(directory_service_pb2.UpsertEmployeeRequest(employee=employee))
    out.emit(response, _employees_table([response.employee]))


def employees_list(args: argparse.Namespace, core: CoreClient, out: Output) -> None:
    response = core.list_employees(directory_service_pb2.ListEmployeesRequest())
    out.emit(response, _employees_table(response.employees))


def _employees_table(employees: Iterable[directory_service_pb2.Employee]) -> str:
    rows = [(e.employee_id, e.name, e.telephony) for e in employees]
    return render.table(("ID", "NAME", "TELEPHONY"), rows)


def groups_upsert(args: argparse.Namespace, core: CoreClient, out: Output) -> None:
    members = args.members
    if members is None:
        # The request replaces the whole group: keep the members of an existing one.
        known = core.list_groups(directory_service_pb2.ListGroupsRequest()).groups
        current = [list(g.member_employee_ids) for g in known if g.group_id == args.group_id]
        members = current[0] if current else []
    group = directory_service_pb2.Group(
        group_id=args.group_id, name=args.name, member_employee_ids=members
    )
    response = core.upsert_group(directory_service_pb2.UpsertGroupRequest(group=group))
    out.emit(response, _groups_table([response.group]))


def groups_list(args: argparse.Namespace, core: CoreClient, out: Output) -> None:
    response = core.list_groups(directory_service_pb2.ListGroupsRequest())
    out.emit(response, _groups_table(response.groups))


def _groups_table(groups: Iterable[directory_service_pb2.Group]) -> str:
    rows = [(g.group_id, g.name, ",".join(str(m) for m in g.member_employee_ids)) for g in groups]
    return render.table(("ID", "NAME", "MEMBERS"), rows)


def departments_upsert(args: argparse.Namespace, core: CoreClient, out: Output) -> None:
    department = directory_service_pb2.Department(department_id=args.department_id, name=args.name)
    response = core.upsert_department(
        directory_service_pb2.UpsertDepartmentRequest(department=department)
    )
    out.emit(response, _departments_table([response.department]))


def departments_list(args: argparse.Namespace, core: CoreClient, out: Output) -> None:
    response = core.list_departments(directory_service_pb2.ListDepartmentsRequest())
    out.emit(response, _departments_table(response.departments))


def _departments_table(departments: Iterable[directory_service_pb2.Department]) -> str:
    return render.table(("ID", "NAME"), [(d.department_id, d.name) for d in departments])


# Tokens


def tokens_issue(args: argparse.Namespace, core: CoreClient, out: Output) -> None:
    if args.role == "employee" and args.employee is None:
        raise UsageError("an employee token needs --employee ID")
    if args.role != "employee" and args.employee is not None:
        raise UsageError(f"--employee applies only to employee tokens, not {args.role}")
    response = core.issue_token(
        directory_service_pb2.IssueTokenRequest(
            role=ROLE.number(args.role),
            employee_id=args.employee or 0,
            description=args.description or "",
            ttl=args.ttl,
        )
    )
    text = render.fields(
        [
            ("token", response.token.token_id),
            ("role", args.role),
            ("employee", response.token.employee_id or None),
            ("expires", _expiry(response.token)),
            ("secret", response.secret),
        ]
    )
    out.emit(response, text + "\nThe secret is shown only now; store it safely.")


def tokens_list(args: argparse.Namespace, core: CoreClient, out: Output) -> None:
    response = core.list_tokens(directory_service_pb2.ListTokensRequest())
    rows = [
        (
            t.token_id,
            _role_name(t.role),
            t.employee_id or None,
            t.description,
            render.timestamp(t, "create_time"),
            _expiry(t),
        )
        for t in response.tokens
    ]
    headers = ("ID", "ROLE", "EMPLOYEE", "DESCRIPTION", "CREATED", "EXPIRES")
    out.emit(response, render.table(headers, rows))


def tokens_revoke(args: argparse.Namespace, core: CoreClient, out: Output) -> None:
    response = core.revoke_token(directory_service_pb2.RevokeTokenRequest(token_id=args.token_id))
    out.emit(response, f"token {args.token_id} revoked")


def _expiry(token: directory_service_pb2.Token, now: datetime | None = None) -> str:
    """When the token expires ("never" for a token without a lifetime), marked once it has:
    core refuses it from that moment on."""
    if not token.HasField("expire_time"):
        return "never"
    shown = render.timestamp(token, "expire_time")
    expired = token.expire_time.ToDatetime(tzinfo=UTC) <= (now or datetime.now(UTC))
    return f"{shown} (expired)" if expired else shown


def _role_name(role: int) -> str:
    return ROLE.name(role) or "-"


# Calls


def calls_list(args: argparse.Namespace, core: CoreClient, out: Output) -> None:
    request = call_service_pb2.ListCallsRequest(
        channel_id=args.channel or 0,
        phone=args.phone or "",
        states=[STATUS.number(name) for name in args.status or []],
        direction=DIRECTION.number(args.direction),
        employee_id=args.employee or 0,
        page_size=args.limit or 0,
        page_token=args.page_token or "",
    )
    if args.since is not None:
        request.create_time_from.FromDatetime(args.since)
    if args.until is not None:
        request.create_time_to.FromDatetime(args.until)
    response = core.list_calls(request)
    rows = [
        (
            c.call_id,
            render.timestamp(c, "create_time"),
            render.direction_name(c.direction),
            c.phone,
            render.status_name(c.state),
            c.channel_name or c.channel_id,
            c.user_id if c.HasField("user_id") else None,
            c.ticket.ticket_id,
        )
        for c in response.calls
    ]
    headers = ("ID", "CREATED", "DIRECTION", "PHONE", "STATUS", "CHANNEL", "EMPLOYEE", "TICKET")
    text = render.table(headers, rows)
    if response.next_page_token:
        text += f"\nmore: --page-token {response.next_page_token}"
    out.emit(response, text)


def calls_show(args: argparse.Namespace, core: CoreClient, out: Output) -> None:
    response = core.get_call(call_service_pb2.GetCallRequest(call_id=args.call_id))
    out.emit(response, _call_text(response.call))


def _call_text(call: call_pb2.Call) -> str:
    ticket = call.ticket
    contact = ticket.contact
    sections = [
        render.fields(
            [
                ("call", call.call_id),
                ("channel", f"{call.channel_name} (#{call.channel_id})"),
                ("direction", render.direction_name(call.direction)),
                ("phone", call.phone),
                ("phone e164", call.phone_e164),
                ("status", render.status_name(call.state)),
                ("employee", call.user_id if call.HasField("user_id") else None),
                ("pbx call id", call.pbx_call_id if call.HasField("pbx_call_id") else None),
                ("pbx user id", call.pbx_user_id if call.HasField("pbx_user_id") else None),
                ("audience", ", ".join(str(e) for e in call.audience_employee_ids)),
                ("created", render.timestamp(call, "create_time")),
                ("answered", render.timestamp(call, "answer_time")),
                ("ended", render.timestamp(call, "end_time")),
                ("talk", render.duration(call, "talk_duration")),
                ("updated", render.timestamp(call, "update_time")),
            ]
        ),
        "status history\n"
        + render.table(
            ("TIME", "STATUS"),
            [
                (render.timestamp(change, "time"), render.status_name(change.state))
                for change in call.status_history
            ],
        ),
        "ticket\n"
        + render.fields(
            [
                ("ticket", ticket.ticket_id),
                ("department", ticket.department_id),
                (
                    "executor",
                    ticket.executor_employee_id
                    if ticket.HasField("executor_employee_id")
                    else None,
                ),
                (
                    "contact",
                    f"{contact.name or '-'} (#{contact.contact_id}, {contact.phone_e164 or '-'})",
                ),
                ("created", render.timestamp(ticket, "create_time")),
            ],
            indent="  ",
        ),
        "comments\n"
        + (
            render.table(
                ("TIME", "AUTHOR", "TEXT"),
                [(render.timestamp(c, "create_time"), c.author, c.text) for c in ticket.comments],
            )
            if ticket.comments
            else "none"
        ),
        "recordings\n"
        + (
            render.table(
                ("ID", "FORMAT", "SIZE", "DURATION", "CREATED", "URL"),
                [
                    (
                        r.recording_id,
                        r.content_type,
                        render.size(r.size_bytes),
                        render.duration(r, "duration"),
                        render.timestamp(r, "create_time"),
                        render.public_url(r.signed_path) if r.signed_path else None,
                    )
                    for r in call.recordings
                ],
            )
            if call.recordings
            else "none"
        ),
    ]
    return "\n\n".join(sections)


# Cards


def cards_watch(args: argparse.Namespace, core: CoreClient, out: Output) -> None:
    request = call_service_pb2.WatchCallCardsRequest(
        employee_id=args.employee or 0, after_seq=args.after_seq
    )
    if not out.as_json and sys.stderr.isatty():
        whose = f"employee {args.employee}" if args.employee else "this token's employee"
        print(f"watching call cards of {whose}; Ctrl-C stops", file=sys.stderr, flush=True)
    try:
        with closing(core.watch_call_cards(request)) as events:
            for event in events:
                out.emit_line(event, _card_event_line(event))
    except (KeyboardInterrupt, Stopped):
        # Being stopped is how a watch ends.
        return
    except CoreError as error:
        if args.employee is None and "employee_id" in error.fields:
            raise UsageError(
                "an admin or service token has no cards of its own: "
                "name the employee with --employee ID"
            ) from None
        raise


def _card_event_line(event: call_service_pb2.CallCardEvent) -> str:
    kind = CARD_EVENT.name(event.type) or "event"
    head = f"#{event.seq} {kind}"
    if not event.HasField("card"):
        return f"{head} ({event.reason})" if event.reason else head
    card = event.card
    parts = [
        head,
        f"call {card.call_id}",
        f"ticket {card.ticket_id}",
        render.status_name(card.state),
        render.direction_name(card.direction),
        card.phone,
    ]
    if card.contact_name:
        parts.append(f'"{card.contact_name}"')
    if card.HasField("user_id"):
        parts.append(f"employee {card.user_id}" + (f" {card.user_name}" if card.user_name else ""))
    parts.append(f"channel {card.channel_name or card.channel_id}")
    if event.reason:
        parts.append(f"({event.reason})")
    return " ".join(parts)


# Operations


def backup(args: argparse.Namespace, out: Output) -> None:
    # Imported here: only this command reads core's files, the others never load core.
    from core.storage.sqlite import DATABASE_FILE, backup_file

    if t.MONGODB_URI.read(os.environ):
        raise CommandFailed(
            "the store is MongoDB (VATS_MONGODB_URI is set): back it up with mongodump "
            "(see the README, Backups)"
        )
    data_dir = Path(t.DATA_DIR.read(os.environ))
    database = data_dir / DATABASE_FILE
    if not database.is_file():
        raise CommandFailed(
            f"no database at {database}: set VATS_DATA_DIR to core's data directory"
        )
    dest = Path(args.file)
    if dest.is_dir():
        raise CommandFailed(f"{dest} is a directory; name the backup file")
    if not dest.parent.is_dir():
        raise CommandFailed(f"no directory {dest.parent} to write {dest.name} in")
    try:
        backup_file(database, dest)
    except ValueError as error:
        raise CommandFailed(str(error)) from None
    except FileNotFoundError:
        raise CommandFailed(f"no database at {database}") from None
    except OSError as error:
        raise CommandFailed(f"cannot write {dest}: {error.strerror or error}") from None
    except sqlite3.Error as error:
        raise CommandFailed(f"backup of {database} failed: {error}") from None
    size = dest.stat().st_size
    recordings = data_dir / "recordings"
    out.emit_data(
        {"database": str(database), "backup": str(dest), "size_bytes": size},
        f"backed up {database} to {dest} ({render.size(size)})\n"
        f"Recordings are files in {recordings}: copy that directory too, after this backup.",
    )
