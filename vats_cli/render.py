"""Terminal output of the CLI: aligned tables and key/value blocks for people, JSON for
scripts, and the PBX's names for statuses and directions."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

# protobuf ships no type information; the ignore stays harmless where stubs are installed.
from google.protobuf import json_format  # type: ignore[import-untyped, unused-ignore]

from telephony.v1 import call_pb2

# The PBX's names, as on the wire and in the HTTP API.
STATUS_NAMES: dict[str, call_pb2.Call.State] = {
    "ringing": call_pb2.Call.STATE_RINGING,
    "in-progress": call_pb2.Call.STATE_IN_PROGRESS,
    "canceled": call_pb2.Call.STATE_CANCELED,
    "missed": call_pb2.Call.STATE_MISSED,
    "failed": call_pb2.Call.STATE_FAILED,
    "answered": call_pb2.Call.STATE_ANSWERED,
    "busy": call_pb2.Call.STATE_BUSY,
}
DIRECTION_NAMES: dict[str, call_pb2.Direction] = {
    "incoming": call_pb2.DIRECTION_INCOMING,
    "outgoing": call_pb2.DIRECTION_OUTGOING,
}


def status_name(state: int) -> str:
    for name, number in STATUS_NAMES.items():
        if number == state:
            return name
    return "-"


def direction_name(direction: int) -> str:
    for name, number in DIRECTION_NAMES.items():
        if number == direction:
            return name
    return "-"


def timestamp(message: Any, field: str) -> str:
    """A Timestamp field of `message` in UTC, or "-" when it is not set."""
    if not message.HasField(field):
        return "-"
    moment: datetime = getattr(message, field).ToDatetime(tzinfo=UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def duration(message: Any, field: str) -> str:
    if not message.HasField(field):
        return "-"
    seconds = int(getattr(message, field).ToTimedelta().total_seconds())
    if seconds == 0:
        return "-"
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {seconds:02d}s"
    return f"{minutes}m {seconds:02d}s" if minutes else f"{seconds}s"


def size(size_bytes: int) -> str:
    if size_bytes < 1024:
        return f"{size_bytes} B"
    if size_bytes < 1024 * 1024:
        return f"{size_bytes / 1024:.1f} KB"
    return f"{size_bytes / (1024 * 1024):.1f} MB"


def public_url(signed_path: str) -> str:
    """The absolute URL of a signed recording path, as the gateway serves it."""
    base = os.environ.get("VATS_PUBLIC_URL") or (
        "http://" + os.environ.get("VATS_HTTP_ADDR", "127.0.0.1:8080")
    )
    return base.rstrip("/") + signed_path


def message_dict(message: Any) -> dict[str, Any]:
    result: dict[str, Any] = json_format.MessageToDict(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
        unquote_int64_if_possible=True,
    )
    return result


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    cells = [list(headers)] + [[_cell(value) for value in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True))
        for row in cells
    ]
    return "\n".join(line.rstrip() for line in lines)


def fields(pairs: Iterable[tuple[str, object]], indent: str = "") -> str:
    pairs = list(pairs)
    width = max((len(name) for name, _ in pairs), default=0) + 1
    return "\n".join(f"{indent}{(name + ':').ljust(width)} {_cell(value)}" for name, value in pairs)


def _cell(value: object) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return " ".join(str(value).split())


class Output:
    """Where a command's result goes: a text block for people, or the response as JSON."""

    def __init__(self, stream: TextIO, as_json: bool) -> None:
        self._stream = stream
        self.as_json = as_json

    def emit(self, message: Any, text: str) -> None:
        if self.as_json:
            self._write(json.dumps(message_dict(message), ensure_ascii=False, indent=2))
        else:
            self._write(text)

    def emit_data(self, data: dict[str, Any], text: str) -> None:
        """A result made here rather than by core: `data` as JSON, or the text."""
        if self.as_json:
            self._write(json.dumps(data, ensure_ascii=False, indent=2))
        else:
            self._write(text)

    def emit_line(self, message: Any, text: str) -> None:
        """One line per item of a stream: compact JSON or text."""
        if self.as_json:
            self._write(json.dumps(message_dict(message), ensure_ascii=False))
        else:
            self._write(text)

    def _write(self, text: str) -> None:
        self._stream.write(text + "\n")
        self._stream.flush()
