"""How every listing pages: the page size within bounds, one item read beyond it to know
whether more follow, and page tokens a client hands back unchanged (the last item's place,
URL-safe base64 without padding)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

from core.errors import InvalidRequest

MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 50

T = TypeVar("T")


def size(page_size: int) -> int:
    """The page size asked for (0: the default), at most MAX_PAGE_SIZE."""
    if page_size < 0:
        raise InvalidRequest.of({"page_size": "must not be negative"})
    return min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def cut(found: list[T], size: int, token_of: Callable[[T], str]) -> tuple[list[T], str]:
    """A page read with one item more than `size`: its items, and the next page's token
    (made of its last item; "" after the last page)."""
    if len(found) <= size:
        return found, ""
    page = found[:size]
    return page, token_of(page[-1])


def token(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def token_text(token: str) -> str:
    """The text a page token was made of."""
    try:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except ValueError as exc:  # bad base64 or bad UTF-8
        raise not_a_token() from exc


def not_a_token() -> InvalidRequest:
    return InvalidRequest.of({"page_token": "not a token from a previous page"})


def instant(text: str) -> datetime:
    """A time kept in a token (ISO 8601; UTC when it has no offset)."""
    at = datetime.fromisoformat(text)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def id_token(last_id: int, prefix: str = "") -> str:
    return token(f"{prefix}{last_id}")


def id_from_token(page_token: str, prefix: str = "") -> int:
    """The positive id an `id_token` with this prefix was made of."""
    text = token_text(page_token)
    number = text.removeprefix(prefix) if text.startswith(prefix) else ""
    last_id = int(number) if number.isascii() and number.isdigit() else 0
    if last_id <= 0:
        raise not_a_token()
    return last_id
