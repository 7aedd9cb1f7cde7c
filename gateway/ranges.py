"""`Range: bytes=...` requests for recordings (one range; anything else is ignored)."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Positions past any recording (and past int64, which core's messages carry) are
# read as this: a range starting there is unsatisfiable, one ending there runs to the end.
_FAR = 2**62
_RANGE = re.compile(r"bytes[ \t]*=[ \t]*([0-9]*)[ \t]*-[ \t]*([0-9]*)", re.IGNORECASE)


class RangeNotSatisfiable(Exception):
    """No byte of the requested range exists (HTTP 416)."""


@dataclass(frozen=True)
class RangeRequest:
    """`bytes=a-b` (first=a, last=b), `bytes=a-` (last None) or `bytes=-n` (first None)."""

    first: int | None
    last: int | None

    @property
    def offset(self) -> int | None:
        """Where to start reading before the size is known (None for a suffix)."""
        return self.first

    @property
    def length(self) -> int:
        """How much to read from offset, zero meaning to the end."""
        if self.first is not None and self.last is not None:
            return min(self.last - self.first + 1, _FAR)
        return 0

    def resolve(self, size: int) -> tuple[int, int]:
        """The inclusive (start, end) of the bytes to send, for a recording of `size` bytes."""
        if self.first is None:
            suffix = self.last or 0
            if suffix == 0 or size == 0:
                raise RangeNotSatisfiable
            return max(0, size - suffix), size - 1
        if self.first >= size:
            raise RangeNotSatisfiable
        last = size - 1 if self.last is None else min(self.last, size - 1)
        return self.first, last


def parse_range(header: str | None) -> RangeRequest | None:
    """The single byte range asked for, or None when the whole body should be sent.

    Malformed, multi-range and non-byte ranges are ignored (RFC 9110 lets a server
    answer them with the whole representation).
    """
    if not header:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        return None
    first, last = _position(match.group(1)), _position(match.group(2))
    if first is None and last is None:
        return None
    if first is not None and last is not None and first > last:
        return None
    return RangeRequest(first, last)


def _position(digits: str) -> int | None:
    if not digits:
        return None
    # Checked by length first: int() of thousands of digits is refused (and slow).
    return _FAR if len(digits.lstrip("0")) > 18 else min(int(digits), _FAR)


def content_range(start: int, end: int, size: int) -> str:
    return f"bytes {start}-{end}/{size}"


def unsatisfied_range(size: int) -> str:
    return f"bytes */{size}"
