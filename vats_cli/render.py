"""Terminal output of the CLI: aligned tables and key/value blocks for people, JSON for
scripts, and the HTTP API's names for statuses, directions and the other enums."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

# protobuf ships no type information; the ignore stays harmless where stubs are installed.
from google.protobuf import json_format  # type: ignore[import-untyped, unused-ignore]
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from vats_settings import table as t
from vocabulary import DIRECTION, STATUS, wire_name


def status_name(state: int) -> str:
    return STATUS.name(state) or "-"


def direction_name(direction: int) -> str:
    return DIRECTION.name(direction) or "-"


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
    return t.PUBLIC_URL.read(os.environ) + signed_path


def message_dict(message: Any) -> dict[str, Any]:
    """A response as JSON for scripts, with enums named as in the HTTP API."""
    data: dict[str, Any] = json_format.MessageToDict(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
        unquote_int64_if_possible=True,
        use_integers_for_enums=True,
    )
    return _name_enums(message.DESCRIPTOR, data)


def _name_enums(descriptor: Descriptor, data: dict[str, Any]) -> dict[str, Any]:
    for field in descriptor.fields:
        if field.name in data:
            data[field.name] = _field_value(field, data[field.name])
    return data


def _field_value(field: FieldDescriptor, value: Any) -> Any:
    entry = field.message_type
    if entry is not None and entry.GetOptions().map_entry:
        item = entry.fields_by_name["value"]
        return {key: _single_value(item, v) for key, v in value.items()}
    if isinstance(value, list):
        return [_single_value(field, v) for v in value]
    return _single_value(field, value)


def _single_value(field: FieldDescriptor, value: Any) -> Any:
    if field.enum_type is not None and isinstance(value, int):
        return wire_name(field.enum_type, value)
    message = field.message_type
    if message is None or not isinstance(value, dict):
        return value
    # Well-known types (times, durations) have JSON forms of their own and no enums.
    if message.full_name.startswith("google.protobuf."):
        return value
    return _name_enums(message, value)


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

    def write_line(self, text: str) -> None:
        """One line as it is (JSON lines that are neither a table nor a response)."""
        self._write(text)

    def _write(self, text: str) -> None:
        self._stream.write(text + "\n")
        self._stream.flush()
