"""`vats`: the admin command line of vats-bridge, a gRPC client of core (and, for
`vats backup`, a reader of its SQLite file).

Errors are one line on stderr; the exit code is 2 for bad usage and 1 for failed requests.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from types import FrameType
from typing import NoReturn

from vats_cli import audit, commands, contacts, workspace
from vats_cli.client import CoreClient, CoreError
from vats_cli.render import Output
from vats_settings import SettingError
from vats_settings import table as t
from vocabulary import DIRECTION, ROLE, STATUS

DEFAULT_TARGET = t.GRPC_ADDR.initial
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
Handler = Callable[[argparse.Namespace, CoreClient, Output], None]
# A command that works on this machine's files and needs no core.
LocalHandler = Callable[[argparse.Namespace, Output], None]


class Parser(argparse.ArgumentParser):
    """An argument parser that reports a usage error in one line."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see '{self.prog} --help')\n")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    target = args.target or t.CORE_TARGET.read(os.environ)
    token = args.token or t.ADMIN_TOKEN.read(os.environ)
    local: LocalHandler | None = getattr(args, "local", None)
    try:
        with _stopped_by_signals():
            if local is not None:
                local(args, Output(sys.stdout, args.json))
            else:
                handler: Handler = args.handler
                with CoreClient(target, token, args.timeout) as core:
                    handler(args, core, Output(sys.stdout, args.json))
    except commands.UsageError as error:
        print(f"error: {error} (see '{args.prog} --help')", file=sys.stderr)
        return 2
    except (CoreError, commands.CommandFailed, SettingError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except commands.Stopped as stop:
        return 128 + stop.signum
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`vats calls list | head`): stop quietly, and keep the
        # interpreter's final flush from failing on the closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 0


@contextmanager
def _stopped_by_signals() -> Iterator[None]:
    """SIGINT and SIGTERM stop the command (commands.Stopped) wherever it waits.

    SIGINT too, although a shell that starts a command in the background
    (`make test &`, a CI script) or nohup hands it on ignored: otherwise nothing
    but SIGKILL would stop a `vats cards watch` started there.
    """
    if threading.current_thread() is not threading.main_thread():
        # Only the main thread may handle signals (main() called from a test's thread).
        yield
        return
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        if stopping:
            # A second signal must not break off the clean-up of the first.
            return
        stopping = True
        raise commands.Stopped(signum)

    previous = {signum: signal.signal(signum, stop) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def build_parser() -> Parser:
    parser = Parser(
        prog="vats",
        description="Administer vats-bridge: channels, directory, tokens, calls and live cards.",
        epilog="Options --target, --token, --timeout and --json also work after a command.",
    )
    _connection_options(parser, defaults=True)
    # The same options once more for every command, so they may follow it too.
    common = Parser(add_help=False)
    _connection_options(common, defaults=False)

    areas = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    _channel_commands(areas, common)
    _directory_commands(areas, common)
    _contact_commands(areas, common)
    _token_commands(areas, common)
    _audit_commands(areas, common)
    _call_commands(areas, common)
    _workspace_commands(areas, common)
    _operations_commands(areas)
    return parser


def _connection_options(parser: argparse.ArgumentParser, defaults: bool) -> None:
    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument(
        "--target",
        default=default(None),
        help=f"core's gRPC address [VATS_CORE_TARGET, else VATS_GRPC_ADDR, else {DEFAULT_TARGET}]",
    )
    parser.add_argument(
        "--token", default=default(None), help="bearer token for core [VATS_ADMIN_TOKEN]"
    )
    parser.add_argument(
        "--timeout",
        type=_positive_float,
        default=default(10.0),
        metavar="SECONDS",
        help="deadline of each request [10]",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="print the response as JSON instead of a table",
    )


def _area(
    areas: argparse._SubParsersAction[Parser], name: str, summary: str
) -> argparse._SubParsersAction[Parser]:
    """An area of commands (`vats channels ...`): where its commands are added."""
    area = areas.add_parser(name, help=summary, description=summary)
    return area.add_subparsers(title="commands", metavar="COMMAND", required=True)


def _command(
    commands_of: argparse._SubParsersAction[Parser],
    name: str,
    handler: Handler,
    summary: str,
    common: Parser,
) -> Parser:
    command = commands_of.add_parser(name, help=summary, description=summary, parents=[common])
    command.set_defaults(handler=handler, prog=command.prog)
    return command


def _paging(command: Parser, limit_help: str) -> None:
    """--limit and --page-token, as every paged listing takes them."""
    command.add_argument("--limit", type=_page_size, metavar="N", help=limit_help)
    command.add_argument("--page-token", metavar="TOKEN", help="the page after a previous listing")


def _channel_commands(areas: argparse._SubParsersAction[Parser], common: Parser) -> None:
    sub = _area(areas, "channels", "PBX channels: their keys, URLs and PBX user mappings")

    create = _command(
        sub,
        "create",
        commands.channels_create,
        "create a channel; prints its key and URL once",
        common,
    )
    create.add_argument("--name", required=True, help="channel name, often its phone number")
    create.add_argument(
        "--department", type=_id, required=True, metavar="ID", help="department of its tickets"
    )
    create.add_argument("--key", help="the channel key to use [a random one]")

    _command(sub, "list", commands.channels_list, "list channels", common)

    show = _command(sub, "show", commands.channels_show, "show a channel and its PBX users", common)
    show.add_argument("channel_id", type=_id, metavar="ID")

    update = _command(
        sub, "update", commands.channels_update, "rename, move or enable/disable a channel", common
    )
    update.add_argument("channel_id", type=_id, metavar="ID")
    update.add_argument("--name", help="the channel's new name")
    update.add_argument(
        "--department", type=_id, metavar="ID", help="where its new tickets are opened"
    )
    enabled = update.add_mutually_exclusive_group()
    enabled.add_argument(
        "--enable",
        dest="enabled",
        action="store_const",
        const=True,
        default=None,
        help="accept the PBX's requests again",
    )
    enabled.add_argument(
        "--disable",
        dest="enabled",
        action="store_const",
        const=False,
        help="refuse the PBX's requests (404) until enabled",
    )

    rotate = _command(
        sub,
        "rotate-key",
        commands.channels_rotate_key,
        "give a channel a new key; the old one stops working",
        common,
    )
    rotate.add_argument("channel_id", type=_id, metavar="ID")

    map_ = _command(sub, "map", commands.channels_map, "map a PBX user id to an employee", common)
    map_.add_argument("channel_id", type=_id, metavar="ID")
    map_.add_argument("pbx_user_id", metavar="PBX_USER")
    map_.add_argument("employee_id", type=_id, metavar="EMPLOYEE_ID")

    unmap = _command(sub, "unmap", commands.channels_unmap, "remove a PBX user mapping", common)
    unmap.add_argument("channel_id", type=_id, metavar="ID")
    unmap.add_argument("pbx_user_id", metavar="PBX_USER")


def _directory_commands(areas: argparse._SubParsersAction[Parser], common: Parser) -> None:
    sub = _area(areas, "employees", "employees who may be shown call cards")
    upsert = _command(
        sub, "upsert", commands.employees_upsert, "create or replace an employee", common
    )
    upsert.add_argument("employee_id", type=_id, metavar="ID")
    upsert.add_argument("--name", required=True)
    upsert.add_argument(
        "--telephony",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="has access to telephony [unchanged; yes for a new employee]",
    )
    _command(sub, "list", commands.employees_list, "list employees", common)

    sub = _area(areas, "groups", "groups of employees, a call's possible audience")
    upsert = _command(sub, "upsert", commands.groups_upsert, "create or replace a group", common)
    upsert.add_argument("group_id", type=_id, metavar="ID")
    upsert.add_argument("--name", required=True)
    upsert.add_argument(
        "--members",
        type=_id_list,
        metavar="ID,ID,...",
        help="member employee ids, comma-separated ('' for none) [unchanged; none for a new group]",
    )
    _command(sub, "list", commands.groups_list, "list groups", common)

    sub = _area(areas, "departments", "departments where call tickets are opened")
    upsert = _command(
        sub, "upsert", commands.departments_upsert, "create or rename a department", common
    )
    upsert.add_argument("department_id", type=_id, metavar="ID")
    upsert.add_argument("--name", required=True)
    _command(sub, "list", commands.departments_list, "list departments", common)


def _contact_commands(areas: argparse._SubParsersAction[Parser], common: Parser) -> None:
    sub = _area(areas, "contacts", "callers' numbers and the names their calls show")
    upsert = _command(
        sub,
        "upsert",
        contacts.contacts_upsert,
        "name a number's contact, creating it when it has none",
        common,
    )
    upsert.add_argument(
        "--phone", required=True, help="the number, in any common notation (one contact per number)"
    )
    upsert.add_argument("--name", required=True, help="shown on its calls' cards and tickets")
    list_ = _command(
        sub, "list", contacts.contacts_list, "list contacts, named or not, by id", common
    )
    _paging(list_, "one page of N contacts, 1..500 [all]")
    remove = _command(
        sub,
        "remove",
        contacts.contacts_remove,
        "remove a contact; refused while calls are linked to it",
        common,
    )
    remove.add_argument("contact_id", type=_id, metavar="ID")


def _token_commands(areas: argparse._SubParsersAction[Parser], common: Parser) -> None:
    sub = _area(areas, "tokens", "access tokens for core and the card stream")
    issue = _command(
        sub, "issue", commands.tokens_issue, "issue a token; prints its secret once", common
    )
    issue.add_argument("--role", required=True, choices=sorted(ROLE.names))
    issue.add_argument(
        "--employee", type=_id, metavar="ID", help="the employee of an employee token"
    )
    issue.add_argument("--description", help="what the token is for")
    issue.add_argument(
        "--ttl",
        type=audit.ttl,
        metavar="LIFETIME",
        help="how long it works: 90s, 30m, 12h, 30d ... [for ever]",
    )
    _command(sub, "list", commands.tokens_list, "list tokens (never their secrets)", common)
    revoke = _command(sub, "revoke", commands.tokens_revoke, "revoke a token at once", common)
    revoke.add_argument("token_id", metavar="TOKEN_ID")


def _audit_commands(areas: argparse._SubParsersAction[Parser], common: Parser) -> None:
    summary = "the audit log: who changed what, who read personal data in bulk (admins)"
    command = _command(areas, "audit", audit.audit_list, summary + "; newest first", common)
    command.add_argument("--action", metavar="ACTION", help="e.g. token.issued, calls.listed")
    command.add_argument("--token-id", metavar="TOKEN_ID", help="done with this token")
    command.add_argument("--employee", type=_id, metavar="ID", help="done by this employee")
    command.add_argument(
        "--since", type=_moment, metavar="TIME", help="at or after (ISO 8601; UTC by default)"
    )
    command.add_argument(
        "--until", type=_moment, metavar="TIME", help="before (ISO 8601; UTC by default)"
    )
    _paging(command, "entries, 1..500 [50]")
    command.add_argument(
        "--json-lines",
        action="store_true",
        help="export every matching entry, oldest first, one JSON object a line",
    )


def _call_commands(areas: argparse._SubParsersAction[Parser], common: Parser) -> None:
    sub = _area(areas, "calls", "calls reported by the PBX, with their tickets")
    list_ = _command(sub, "list", commands.calls_list, "list calls, newest first", common)
    list_.add_argument("--channel", type=_id, metavar="ID", help="calls of this channel")
    list_.add_argument("--phone", help="the other party's number, in any common notation")
    list_.add_argument(
        "--status",
        type=_status_list,
        action="extend",
        metavar="STATUS[,STATUS]",
        help="one or more of: " + ", ".join(STATUS.names),
    )
    list_.add_argument(
        "--direction", choices=sorted(DIRECTION.names), help=" or ".join(DIRECTION.names)
    )
    list_.add_argument(
        "--employee", type=_id, metavar="ID", help="bound to or shown to this employee"
    )
    list_.add_argument(
        "--since",
        type=_moment,
        metavar="TIME",
        help="created at or after (ISO 8601; UTC unless an offset is given)",
    )
    list_.add_argument(
        "--until",
        type=_moment,
        metavar="TIME",
        help="created before (ISO 8601; UTC unless an offset is given)",
    )
    _paging(list_, "calls per page, 1..500 [50]")
    show = _command(
        sub,
        "show",
        commands.calls_show,
        "show a call: status history, ticket, comments, recordings",
        common,
    )
    show.add_argument("call_id", type=_id, metavar="CALL_ID")

    sub = _area(areas, "cards", "live call cards")
    watch = _command(
        sub,
        "watch",
        commands.cards_watch,
        "follow an employee's call cards live, one line per event, until Ctrl-C",
        common,
    )
    watch.add_argument(
        "--employee", type=_id, metavar="ID", help="whose cards [the employee of an employee token]"
    )
    watch.add_argument(
        "--after-seq",
        type=_non_negative_int,
        default=0,
        metavar="SEQ",
        help="replay events after this sequence number [0: current cards first]",
    )


def _workspace_commands(areas: argparse._SubParsersAction[Parser], common: Parser) -> None:
    sub = _area(areas, "callbacks", "missed incoming numbers waiting to be called back")
    list_ = _command(
        sub,
        "list",
        workspace.callbacks_list,
        "list callbacks: open ones oldest waiting first, resolved ones latest first",
        common,
    )
    list_.add_argument(
        "--state",
        choices=tuple(workspace.STATES_BY_CHOICE),
        default="open",
        help="which callbacks [open]",
    )
    list_.add_argument("--channel", type=_id, metavar="ID", help="callbacks of this channel")
    _paging(list_, "callbacks per page, 1..500 [50]")
    mark = _command(
        sub,
        "mark",
        workspace.callbacks_mark,
        "record that a number was called back (one already resolved stays as it is)",
        common,
    )
    mark.add_argument("callback_id", type=_id, metavar="ID")
    mark.add_argument(
        "--employee",
        type=_id,
        metavar="ID",
        help="who called back [the employee of an employee token; none for other tokens]",
    )
    _command(
        areas,
        "board",
        workspace.board,
        "the supervisor board once: active calls, employees' states, today's figures",
        common,
    )


def _operations_commands(areas: argparse._SubParsersAction[Parser]) -> None:
    summary = "copy the SQLite database to FILE; safe while core runs"
    backup = areas.add_parser(
        "backup",
        help=summary,
        description=(
            f"{summary}. The database is VATS_DATA_DIR/vats.db (VATS_DATA_DIR: ./data when "
            "unset); recordings are files beside it in VATS_DATA_DIR/recordings: copy that "
            "directory after the backup. On MongoDB (VATS_MONGODB_URI set) use mongodump."
        ),
    )
    backup.add_argument(
        "file", metavar="FILE", help="where the copy goes (an existing file is replaced whole)"
    )
    backup.set_defaults(local=commands.backup, prog=backup.prog)


def _id(text: str) -> int:
    value = _int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"not a positive id: {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    return value


def _page_size(text: str) -> int:
    value = _int(text)
    if not 1 <= value <= 500:
        raise argparse.ArgumentTypeError(f"not within 1..500: {text!r}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def _id_list(text: str) -> list[int]:
    return [_id(part.strip()) for part in text.split(",") if part.strip()]


def _status_list(text: str) -> list[str]:
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in STATUS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown status {text!r}; expected: " + ", ".join(STATUS.names)
        )
    return names


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
