"""Request parameters as every resource reads them: ids in a path, and a listing's query
string (ids, bounded text, instants, paging). Each query reader returns its parameter's value,
or says in `fields` what is wrong with it, so that one 422 names every bad parameter (`check`).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Protocol

import falcon.asgi
from google.protobuf.timestamp_pb2 import Timestamp

from gateway.errors import GatewayError, invalid_fields

MAX_PAGE_SIZE = 500
MAX_TOKEN_CHARS = 1024
MAX_TEXT_CHARS = 255
INSTANT = "an ISO-8601 date or date-time, e.g. 2026-01-31T09:00:00Z"
_ID = re.compile(r"[1-9][0-9]{0,17}")

# What is wrong with each bad parameter, by name.
Fields = dict[str, str]


class Paged(Protocol):
    """A listing's request: a page size and the token of the page before."""

    page_size: int
    page_token: str


def is_id(raw: str) -> bool:
    """A positive whole number that fits an int64 id (in a query or a path)."""
    return _ID.fullmatch(raw) is not None


def path_id(raw: str, what: str) -> int:
    """The id in a path; one that cannot be an id is not found."""
    if not is_id(raw):
        raise GatewayError(404, "not_found", f"{what} not found")
    return int(raw)


def raw(req: falcon.asgi.Request, name: str) -> str:
    return (req.get_param(name) or "").strip()


def check(fields: Fields) -> None:
    """Refuse the request with one 422 when any parameter was bad."""
    if fields:
        raise invalid_fields(fields)


def text(req: falcon.asgi.Request, name: str, fields: Fields) -> str:
    """A free-text filter, empty when not given."""
    value = raw(req, name)
    if len(value) > MAX_TEXT_CHARS:
        fields[name] = "too long"
        return ""
    return value


def positive_id(req: falcon.asgi.Request, name: str, fields: Fields) -> int:
    """An id filter; 0 (no filter, as in the requests to core) when not given."""
    value = raw(req, name)
    if not value:
        return 0
    if not is_id(value):
        fields[name] = "a positive whole number"
        return 0
    return int(value)


def instant(
    req: falcon.asgi.Request, name: str, fields: Fields, into: Timestamp
) -> datetime | None:
    """An ISO-8601 date or date-time (UTC without an offset), also set `into` a Timestamp."""
    value = raw(req, name)
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
        parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        into.FromDatetime(parsed)
    except (ValueError, OverflowError):
        fields[name] = INSTANT
        return None
    return parsed


def read_page(req: falcon.asgi.Request, request: Paged, fields: Fields) -> None:
    """`page_size` and `page_token` into the request."""
    size = raw(req, "page_size")
    if size and (not size.isdigit() or not 1 <= int(size) <= MAX_PAGE_SIZE):
        fields["page_size"] = f"a whole number from 1 to {MAX_PAGE_SIZE}"
    elif size:
        request.page_size = int(size)
    token = raw(req, "page_token")
    if len(token) > MAX_TOKEN_CHARS:
        fields["page_token"] = "not a token from a previous page"
    elif token:
        request.page_token = token
